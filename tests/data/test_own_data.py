"""Own data, first try: a folder of images of any size → run → analyze → export best →
predict on the raw image files, which gives exactly the test accuracy the run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datafiles import SHAPES, write_shapes
from support import assert_refused_unchanged, run_cli

import sparsedd
from sparsedd.store.results import ResultsStore


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root)
    return root


OWN_DATA = ["run", "--set", "dataset=imagefolder", "-q"]
# Only to keep the test short (the dense round keeps the preset's 30 epochs; 18 rounds of 15).
SHORT = ["--set", "rounds=2", "--set", "epochs=5"]


def test_imagefolder_needs_no_other_setting(shapes, tmp_path, capsys) -> None:
    args = [*OWN_DATA, "--set", f"data_dir={shapes}", "--out", str(tmp_path), "--dry-run"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "starting from preset own-data" in err and "error" not in err
    assert "1 new; 300 epochs left of 300" in out, out


def test_folder_to_prediction_reproduces_the_recorded_accuracy(shapes, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    args = [*OWN_DATA, "--set", f"data_dir={shapes}", *SHORT, "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (row,) = {r["run_id"]: r for r in ResultsStore(out, create=False).round_rows()}.items()
    run_id = row[0]
    rows = [r for r in ResultsStore(out, create=False).round_rows() if r["run_id"] == run_id]
    assert rows[0]["val_size"] == 15  # a tenth of the 150 training images, from the data
    assert rows[0]["image_size"] == 32 and rows[0]["model"] == "vit"

    code, text, err = run_cli(["analyze", str(out), "--format", "json"], capsys)
    assert code == 0, err
    (curve,) = json.loads(text)
    (per_run,) = curve["runs"]
    val = {r["round"]: r["val_acc"] for r in rows}
    best = per_run["best_round"]
    assert best == max(k for k in val if val[k] == max(val.values()))
    code, text, _ = run_cli(["analyze", str(out)], capsys)
    assert "rounds per run" in text and run_id in text

    model = tmp_path / "best.safetensors"
    args = ["export", str(out), "--run", run_id[:6], "--round", "best", "-o", str(model)]
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"--round best: round {best} of run {run_id}" in text
    meta = sparsedd.pruned_metadata(model)
    assert meta["round"] == best and meta["input"]["classes"] == list(SHAPES)
    prep = meta["preprocess"]
    assert prep["resize"] == [32, 32] and prep["resize_filter"] == "bilinear"
    assert prep["color_mode"] == "RGB" and prep["mean"] == meta["input"]["mean"]

    images = sorted(str(p) for p in (shapes / "test").rglob("*.*") if p.suffix in (".png", ".jpg"))
    code, text, err = run_cli(["predict", str(model), *images], capsys)
    assert code == 0, err
    lines = [line.split("\t") for line in text.strip().splitlines()]
    assert [path for path, _ in lines] == images
    correct = sum(Path(path).parent.name == name for path, name in lines)
    recorded = next(r["test_acc"] for r in rows if r["round"] == best)
    assert correct == round(recorded * len(images))  # recorded as a float32 mean
    assert recorded > 0.5  # the shapes are learnable: a broken pipeline would sit near 1/3
    assert sparsedd.predict(model, images) == [tuple(pair) for pair in lines]


def test_predict_refuses_an_unreadable_image_in_one_line(shapes, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    args = [
        *OWN_DATA,
        "--set",
        f"data_dir={shapes}",
        "--set",
        "rounds=0",
        "--set",
        "dense_epochs=1",
    ]
    assert run_cli([*args, "--out", str(out)], capsys)[0] == 0
    model = tmp_path / "m.safetensors"
    run_id = next((out / "runs").iterdir()).name
    assert run_cli(["export", str(out), "--run", run_id, "-o", str(model)], capsys)[0] == 0
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert_refused_unchanged(
        tmp_path, ["predict", str(model), str(bad)], ["broken.png", "cannot be read"], capsys
    )
    assert_refused_unchanged(
        tmp_path,
        ["export", str(out), "--run", run_id, "--round", "dip", "-o", str(model)],
        ["shows no sparse double descent", "--round best"],
        capsys,
    )


def test_a_missing_folder_is_the_only_line(tmp_path, capsys) -> None:
    args = [*OWN_DATA, "--set", f"data_dir={tmp_path / 'none'}", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(
        tmp_path, args, ["has no train/ folder", "one sub-folder per class"], capsys
    )
