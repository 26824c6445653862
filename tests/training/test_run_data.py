"""A run knows its data: images, labels and noise draw are recorded in its folder and a resume
on changed data is refused in one line (rounds trained on different data never mix)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import TINY, assert_refused_unchanged, run_cli

from sparsedd.store.results import ResultsStore

FIX = ["start a new run", "another --out"]


def _images(root: Path, per_class: int, shade: int = 0) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (120 * c + shade, 9 * i, 50)).save(folder / f"{i}.png")
    return root


def _run(root: Path, out: Path, rounds: int, *extra: str) -> list[str]:
    sets = [f"data_dir={root}", "dataset=imagefolder", "image_size=8", "val_size=2"]
    sets += [f"rounds={rounds}", "noise=0.25", *extra]
    return [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(out)]


def _rounds(out: Path) -> list[int]:
    return [r["round"] for r in ResultsStore(out, create=False).round_rows()]


def test_images_added_after_a_run_are_refused_on_resume(tmp_path, capsys) -> None:
    root = _images(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    code, _, err = run_cli(_run(root, out, 1), capsys)
    assert code == 0, err
    recorded = json.loads(next(out.glob("runs/*/data.json")).read_text())
    assert recorded["described"]["train_images"] == 12
    for i in range(6, 10):  # four more images of one class
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "train" / "cat" / f"{i}.png")
    needles = ["trained on other data", "the images", "12 training images then, 16 now", *FIX]
    assert_refused_unchanged(out, _run(root, out, 3), needles, capsys)
    assert _rounds(out) == [0, 1]


def test_data_dir_pointing_elsewhere_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(_run(_images(tmp_path / "a", 6), out, 1), capsys)
    assert code == 0, err
    other = _images(tmp_path / "b", 6, shade=7)  # as many images, other pixels
    assert_refused_unchanged(out, _run(other, out, 2), ["the images", *FIX], capsys)


def test_data_dir_moved_with_the_same_images_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(_run(_images(tmp_path / "a", 6), out, 1), capsys)
    assert code == 0, err
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    code, _, err = run_cli(_run(tmp_path / "moved", out, 2), capsys)
    assert code == 0, err
    assert _rounds(out) == [0, 1, 2]


def _human(tmp: Path, labels: np.ndarray, rounds: int) -> list[str]:
    np.save(tmp / "labels.npy", labels)
    sets = ["noise=0", "noise_kind=human", f"noise_file={tmp / 'labels.npy'}", f"rounds={rounds}"]
    return [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(tmp / "out")]


def test_edited_noise_file_is_refused_on_resume(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 1024)
    code, _, err = run_cli(_human(tmp_path, labels, 1), capsys)
    assert code == 0, err
    labels[:100] = (labels[:100] + 1) % 4
    needles = ["trained on other data", "noisy labels", *FIX]
    args = _human(tmp_path, labels, 2)
    assert_refused_unchanged(tmp_path / "out", args, needles, capsys)


def test_unchanged_data_resumes_and_a_run_from_before_data_json_is_checked(
    tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--set", "rounds=1", "--out", str(out)], capsys)
    assert code == 0, err
    data_file = next(out.glob("runs/*/data.json"))
    data_file.unlink()  # as a folder from before data.json: labels.safetensors is compared
    code, _, err = run_cli([*TINY, "--set", "rounds=2", "--out", str(out)], capsys)
    assert code == 0, err
    assert data_file.is_file() and _rounds(out) == [0, 1, 2]


def test_older_run_folder_with_other_labels_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--set", "rounds=1", "--out", str(out)], capsys)
    assert code == 0, err
    folder = next(out.glob("runs/*"))
    (folder / "data.json").unlink()
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "labels.safetensors")
    tensors["noisy_label"] = (tensors["noisy_label"] + 1) % 4  # another noise draw
    save_file(tensors, folder / "labels.safetensors")
    args = [*TINY, "--set", "rounds=2", "--out", str(out)]
    assert_refused_unchanged(out, args, ["noisy labels", *FIX], capsys)


@pytest.mark.parametrize("text", ["", "[1, 2]", "{" * 5000])
def test_damaged_data_json_is_one_line(tmp_path, capsys, text) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--set", "rounds=1", "--out", str(out)], capsys)
    assert code == 0, err
    next(out.glob("runs/*/data.json")).write_text(text)
    args = [*TINY, "--set", "rounds=2", "--out", str(out)]
    # deleting it would let the run resume on changed data unchecked: the advice is to move
    # the run away (issue 28)
    err = assert_refused_unchanged(out, args, ["data.json", "damaged", "move"], capsys)
    assert "delete" not in err
