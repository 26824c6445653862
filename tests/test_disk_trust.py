"""Issue 28: nothing read from disk is trusted on metadata; every count has a bound and every
read an end; folders under --out are checked as found; output cannot be turned against the
terminal. Each case failed (silently mixed data, a hang, a traceback or misleading advice)
before its fix."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from datafiles import IDX_NAMES, idx_bytes, write_idx_dataset
from PIL import Image
from support import TINY, assert_one_error_line, assert_refused_unchanged, run_cli

from sparsedd.data import datasets as data_module
from sparsedd.data.datasets import load_dataset
from sparsedd.errors import DataError

# ---------------------------------------------------------------- dataset files in data_dir


def _fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    root = tmp_path / "data"
    return root, write_idx_dataset(root, gz=True)


def _fashion_cfg(root: Path):
    return tiny_config(dataset="fashion-mnist", data_dir=str(root), download=False, val_size=0)


def test_an_edited_dataset_file_replaces_its_decompressed_copy(tmp_path, monkeypatch) -> None:
    root, arrays = _fashion(tmp_path, monkeypatch)
    first = load_dataset(_fashion_cfg(root))
    assert np.array_equal(first.train_y.numpy(), arrays[IDX_NAMES[1]])
    edited = (arrays[IDX_NAMES[1]] + 1) % 10  # every label changed
    (root / f"{IDX_NAMES[1]}.gz").write_bytes(gzip.compress(idx_bytes(edited)))
    again = load_dataset(_fashion_cfg(root))
    assert np.array_equal(again.train_y.numpy(), edited)


def test_a_resume_sees_an_edited_dataset_file(tmp_path, monkeypatch, capsys) -> None:
    root, arrays = _fashion(tmp_path, monkeypatch)
    sets = [f"data_dir={root}", "dataset=fashion-mnist", "download=false", "val_size=0"]
    args = [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(tmp_path / "out")]
    code, _, err = run_cli([*args, "--set", "rounds=0"], capsys)
    assert code == 0, err
    edited = (arrays[IDX_NAMES[1]] + 1) % 10
    (root / f"{IDX_NAMES[1]}.gz").write_bytes(gzip.compress(idx_bytes(edited)))
    code, _, err = run_cli([*args, "--set", "rounds=1"], capsys)
    assert code == 2, err
    assert "other data" in err


def test_an_unreadable_dataset_copy_is_not_called_corrupt(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data"
    write_idx_dataset(root / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    target = root / "FashionMNIST" / "raw" / IDX_NAMES[1]
    target.chmod(0)
    if os.access(target, os.R_OK):
        pytest.skip("running as a user who reads mode-000 files")
    with pytest.raises(DataError) as err:
        load_dataset(_fashion_cfg(root))
    assert "cannot read" in str(err.value) and "corrupt" not in str(err.value)
    assert "delete" not in str(err.value)


def test_a_fifo_as_a_dataset_file_is_refused_at_once(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data"
    write_idx_dataset(root / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    target = root / "FashionMNIST" / "raw" / IDX_NAMES[1]
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset(_fashion_cfg(root))


# ---------------------------------------------------------------- image folders


def _images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 3) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (80 * c, 10 * i, 0)).save(folder / f"{i}.bmp")
    return root


def _image_cfg(root: Path):
    return tiny_config(dataset="imagefolder", data_dir=str(root), image_size=8, val_size=1)


def test_images_replaced_with_size_and_time_kept_are_decoded_again(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    first = load_dataset(_image_cfg(root))
    # another picture, same size in bytes (BMP), the old modification time put back
    target = root / "train" / "cat" / "0.bmp"
    stamp = target.stat()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(target)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert target.stat().st_size == stamp.st_size
    again = load_dataset(_image_cfg(root))
    assert not np.array_equal(first.train_x.numpy(), again.train_x.numpy())
    assert int(again.train_x[0].min()) == 255  # the new, white picture


def test_a_symlink_loop_in_a_class_folder_is_refused(tmp_path, capsys) -> None:
    root = _images(tmp_path / "imgs")
    (root / "train" / "cat" / "again").symlink_to(".")
    with pytest.raises(DataError, match="again is a symlink that loops back"):
        load_dataset(_image_cfg(root))


def test_a_symlinked_folder_that_does_not_loop_is_followed_once(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    extra = _images(tmp_path / "more", ("cat",), n=2) / "train" / "cat"
    (root / "train" / "cat" / "more").symlink_to(extra)
    assert len(load_dataset(_image_cfg(root)).train_y) == 6 + 2


def test_a_fifo_among_training_images_is_refused_not_opened(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    os.mkfifo(root / "train" / "dog" / "pipe.png")
    with pytest.raises(DataError, match=r"not regular files .*pipe\.png"):
        load_dataset(_image_cfg(root))


def test_control_characters_in_image_names_are_escaped_in_errors(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    (root / "train" / "dog" / "x\x1b[31m.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        load_dataset(_image_cfg(root))
    assert "\x1b" not in str(err.value) and "x\\x1b[31m.png" in str(err.value)
