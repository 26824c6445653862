"""dataset=imagefolder: the user's own images, decoded once, cached, and checked for changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from support import run_process

import sparsedd.data.imagefolder as imagefolder
from sparsedd.config import Config
from sparsedd.data.datasets import load_dataset
from sparsedd.errors import DataError

COLOURS = {"cat": (250, 10, 10), "dog": (10, 250, 10), "emu": (10, 10, 250)}


def write_folder(root: Path, per_class: dict[str, int], size: tuple[int, int] = (20, 24)) -> None:
    """Solid-colour images, one colour per class, as PNG and JPEG files."""
    for split, n in per_class.items():
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ext = "png" if i % 2 else "jpg"
                Image.new("RGB", size, colour).save(folder / f"{i}.{ext}")


def cfg_for(root: Path, **kw) -> Config:
    return Config(dataset="imagefolder", data_dir=str(root), image_size=16, **kw)


def test_images_are_resized_labelled_by_class_folder_and_cached(tmp_path) -> None:
    write_folder(tmp_path, {"train": 4, "test": 2})
    data = load_dataset(cfg_for(tmp_path))
    assert data.train_x.shape == (12, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (6, 3, 16, 16) and data.num_classes == 3
    assert data.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for x, y in zip(data.train_x, data.train_y, strict=True):
        colour = torch.tensor(list(COLOURS.values())[int(y)], dtype=torch.float)
        assert (x.float().mean(dim=(1, 2)) - colour).abs().max() < 3  # JPEG is lossy
    assert imagefolder.cache_path(tmp_path, 16).is_file()
    assert data.mean[0] == pytest.approx((250 + 10 + 10) / 3 / 255, abs=0.01)


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch) -> None:
    write_folder(tmp_path, {"train": 2, "test": 1})
    first = load_dataset(cfg_for(tmp_path))

    def no_decoding(*args, **kw):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(imagefolder, "decode_images", no_decoding)
    second = load_dataset(cfg_for(tmp_path))
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)


def test_a_changed_folder_is_decoded_again(tmp_path) -> None:
    write_folder(tmp_path, {"train": 2, "test": 1})
    assert len(load_dataset(cfg_for(tmp_path)).train_y) == 6
    Image.new("RGB", (20, 24), (0, 0, 0)).save(tmp_path / "train" / "cat" / "new.png")
    data = load_dataset(cfg_for(tmp_path))
    assert len(data.train_y) == 7
    # Same name, other contents and size: the manifest notices it too.
    Image.new("RGB", (40, 40), (255, 255, 255)).save(tmp_path / "train" / "cat" / "new.png")
    again = load_dataset(cfg_for(tmp_path))
    assert not torch.equal(again.train_x, data.train_x)


def test_another_image_size_gets_its_own_cache(tmp_path) -> None:
    write_folder(tmp_path, {"train": 1, "test": 1})
    assert load_dataset(cfg_for(tmp_path)).image_size == 16
    cfg = Config(dataset="imagefolder", data_dir=str(tmp_path), image_size=8)
    assert load_dataset(cfg).image_size == 8


def test_unreadable_images_are_named_in_one_error(tmp_path) -> None:
    write_folder(tmp_path, {"train": 2, "test": 1})
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "test" / "emu" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_dataset(cfg_for(tmp_path))
    message = str(err.value)
    assert "2 image(s)" in message and "\n" not in message
    assert "train/dog/broken.png" in message and "test/emu/empty.jpg" in message
    assert not imagefolder.cache_path(tmp_path, 16).exists()


def test_layout_problems_are_refused(tmp_path) -> None:
    write_folder(tmp_path, {"train": 1})
    with pytest.raises(DataError, match="no test/ folder"):
        load_dataset(cfg_for(tmp_path))
    (tmp_path / "test" / "owl").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folders that train/ lacks \(owl\)"):
        load_dataset(cfg_for(tmp_path))


def test_cli_runs_on_an_image_folder_and_reports_bad_images_in_one_line(tmp_path) -> None:
    data = tmp_path / "data"
    write_folder(data, {"train": 8, "test": 2})
    base = ["run", "--preset", "tiny", "-q"]
    sets = ["dataset=imagefolder", f"data_dir={data}", "image_size=8", "val_size=4", "rounds=1"]
    args = [*base, *(x for s in sets for x in ("--set", s)), "--out", str(tmp_path / "out")]
    proc = run_process(*args, check=True)
    assert proc.stderr.count("round") == 2
    (data / "test" / "cat" / "bad.png").write_bytes(b"\x89PNG broken")
    args[-1] = str(tmp_path / "fresh")  # a finished run is skipped without loading its data
    proc = run_process(*args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "test/cat/bad.png" in proc.stderr


def test_image_size_is_refused_for_datasets_it_does_not_resize() -> None:
    from sparsedd.components import validate
    from sparsedd.errors import ConfigError

    with pytest.raises(ConfigError, match="read only with dataset=imagefolder"):
        validate(Config(dataset="synthetic", image_size=64))
    assert validate(Config(dataset="imagefolder", image_size=64)).image_size == 64
