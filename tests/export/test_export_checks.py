"""load_pruned checks every field and tensor of an export before building the model: one
CheckpointError (a UserError: one line from the CLI) naming the field, and nothing built."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from support import assert_refused_unchanged

import sparsedd
from sparsedd.errors import CheckpointError
from sparsedd.export.pruned import export_pruned
from sparsedd.store import checkpoint as ckpt

WEIGHT = "sparse.blocks.0.to_qkv.weight"
Tensors = dict[str, torch.Tensor]
Meta = dict[str, Any]


@pytest.fixture(scope="module")
def export(trained, tmp_path_factory) -> Path:
    out, run_id = trained
    path = tmp_path_factory.mktemp("export") / "model.safetensors"
    export_pruned(out, run_id, 2, path)
    return path


def _set(meta: Meta, dotted: str, value: Any) -> None:
    parent, _, key = dotted.partition(".")  # shapes.blocks.0.to_qkv.weight: one level down
    if key:
        meta[parent][key] = value
    else:
        meta[parent] = value


def meta_edit(dotted: str, value: Any) -> Callable[[Tensors, Meta], None]:
    return lambda tensors, meta: _set(meta, dotted, value)


def tensor_edit(key: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    def edit(tensors: Tensors, meta: Meta) -> None:
        tensors[key] = change(tensors[key].clone())

    return edit


def _nan(t: torch.Tensor) -> torch.Tensor:
    t[0] = float("nan")
    return t


def _negative(t: torch.Tensor) -> torch.Tensor:
    t[0] = -1
    return t


def _too_large(t: torch.Tensor) -> torch.Tensor:
    t[-1] = 10_000
    return t


def _shift_rows(t: torch.Tensor) -> torch.Tensor:
    t[1] = t[-1] + 1
    return t


def _column_twice(tensors: Tensors, meta: Meta) -> None:
    """The second entry of the first row holding two names the first one's column again."""
    crow, col = tensors[f"{WEIGHT}.crow_indices"], tensors[f"{WEIGHT}.col_indices"].clone()
    row = int(((crow[1:] - crow[:-1]) >= 2).nonzero()[0])
    start = int(crow[row])
    col[start + 1] = col[start]
    tensors[f"{WEIGHT}.col_indices"] = col


CASES = {
    # metadata: wrong types and absurd sizes
    "shapes not a mapping": (meta_edit("shapes", [1, 2]), "field 'shapes' must be a mapping"),
    "shape of a weight wrong": (
        meta_edit("shapes.blocks.0.to_qkv.weight", [48, 999]),
        "field 'shapes' gives blocks.0.to_qkv.weight the shape",
    ),
    "shape naming no weight": (meta_edit("shapes.nothing", [1]), "names 'nothing'"),
    "input not a mapping": (meta_edit("input", "8x8"), "field 'input' must be a mapping"),
    "image size text": (
        meta_edit("input.image_size", "8"),
        "field 'input.image_size' must be an integer",
    ),
    "absurd image size": (meta_edit("input.image_size", 10**9), "'input.image_size'"),
    "absurd classes": (meta_edit("input.num_classes", 10**12), "'input.num_classes'"),
    "negative channels": (meta_edit("input.channels", -3), "'input.channels'"),
    "std of zero": (meta_edit("input.std", [0.0]), "'input.std' must be a list of 1 positive"),
    "mean beyond float32": (meta_edit("input.mean", [1e308]), "'input.mean' must lie within"),
    "std that is 0 in float32": (meta_edit("input.std", [1e-320]), "'input.std' must lie in"),
    "std absurdly large": (meta_edit("input.std", [1e30]), "'input.std' must lie in"),
    "mean of wrong length": (meta_edit("input.mean", [0.1, 0.2]), "'input.mean'"),
    "class names too few": (meta_edit("input.classes", ["a"]), "'input.classes' must list 4"),
    "config not a mapping": (meta_edit("config", "vit"), "field 'config' must be a mapping"),
    "config value absurd": (meta_edit("config.dim", 10**30), "field 'config' is not valid"),
    "config key unknown": (meta_edit("config.dimm", 3), "field 'config' is not valid"),
    "round text": (meta_edit("round", "2"), "field 'round'"),
    # tensors
    "column index out of range": (
        tensor_edit(f"{WEIGHT}.col_indices", _too_large),
        "col_indices' holds an index outside 0..15",
    ),
    "negative column index": (
        tensor_edit(f"{WEIGHT}.col_indices", _negative),
        "col_indices' holds an index outside",
    ),
    "float column indices": (
        tensor_edit(f"{WEIGHT}.col_indices", lambda t: t.float()),
        "col_indices' must be a vector of integers, not torch.float32",
    ),
    "a column named twice in a row": (
        _column_twice,
        "col_indices' must rise strictly within each row; row",
    ),
    "row pointers past the end": (
        tensor_edit(f"{WEIGHT}.crow_indices", _shift_rows),
        "crow_indices' must rise from 0",
    ),
    "NaN in a sparse weight": (tensor_edit(f"{WEIGHT}.values", _nan), "holds NaN or infinite"),
    "NaN in a dense tensor": (
        tensor_edit("dense.pos_embedding", lambda t: t.fill_(float("nan"))),
        "'dense.pos_embedding' holds NaN",
    ),
    "float64 values": (
        tensor_edit(f"{WEIGHT}.values", lambda t: t.double()),
        "is torch.float64, the model takes torch.float32",
    ),
    "dense tensor of another shape": (
        tensor_edit("dense.pos_embedding", lambda t: t[:, :1]),
        "'dense.pos_embedding' has shape",
    ),
    "values missing": (
        lambda tensors, meta: tensors.pop(f"{WEIGHT}.values"),
        f"'{WEIGHT}.values' is missing",
    ),
    "an extra tensor": (
        lambda tensors, meta: tensors.update({"dense.extra": torch.zeros(1)}),
        "'dense.extra' is not part of the model",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_pruned_refuses_each_damaged_field(export, tmp_path, case: str) -> None:
    edit, needle = CASES[case]
    tensors, meta = ckpt.load_tensors(export)
    meta = copy.deepcopy(meta)
    edit(tensors, meta)
    damaged = tmp_path / "damaged.safetensors"
    ckpt.save_tensors(damaged, tensors, meta)
    with pytest.raises(CheckpointError) as info:
        sparsedd.load_pruned(damaged)
    message = str(info.value)
    assert needle in message and str(damaged) in message, message
    assert "\n" not in message


def test_the_untouched_export_loads(export) -> None:
    model = sparsedd.load_pruned(export)
    assert not model.training


def test_predict_cli_refuses_a_damaged_export_in_one_line(export, tmp_path, capsys) -> None:
    tensors, meta = ckpt.load_tensors(export)
    tensors[f"{WEIGHT}.col_indices"] = tensors[f"{WEIGHT}.col_indices"].float()
    damaged = tmp_path / "damaged.safetensors"
    ckpt.save_tensors(damaged, tensors, meta)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (8, 8), 40).save(image)
    assert_refused_unchanged(
        tmp_path, ["predict", str(damaged), str(image)], ["col_indices", "export it again"], capsys
    )


def test_predict_reads_a_grayscale_model_and_names_its_classes(export, tmp_path) -> None:
    from PIL import Image

    paths = []
    for i, size in enumerate([(8, 8), (31, 17)]):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", size, (30 * i, 200, 90)).save(paths[-1])  # converted to L (1 channel)
    assert sparsedd.pruned_metadata(export)["preprocess"]["color_mode"] == "L"
    found = sparsedd.predict(export, paths)
    assert [p for p, _ in found] == [str(p) for p in paths]
    assert all(name in {"0", "1", "2", "3"} for _, name in found)


def test_export_refuses_and_removes_a_file_that_reads_back_damaged(
    trained,
    tmp_path,
    monkeypatch,
) -> None:
    out, run_id = trained
    real_save = ckpt.save_tensors

    def save_damaged(path, tensors, meta) -> None:
        tensors = dict(tensors)
        tensors[f"{WEIGHT}.values"] = tensors[f"{WEIGHT}.values"].double()  # a faulty writer
        real_save(path, tensors, meta)

    monkeypatch.setattr(ckpt, "save_tensors", save_damaged)
    target = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match="float64"):
        export_pruned(out, run_id, 2, target)
    assert not target.exists()


# ---------------------------------------------------------------- predict on odd names and files


def _png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_predict_escapes_control_characters_in_names_and_paths(export, tmp_path, capsys) -> None:
    from PIL import Image
    from support import run_cli

    tensors, meta = ckpt.load_tensors(export)
    meta = copy.deepcopy(meta)
    meta["input"]["classes"] = ["a\tb", "c\x1b[31m", "d\ne", "f"]
    model = tmp_path / "named.safetensors"
    ckpt.save_tensors(model, tensors, meta)
    images = []
    for i in range(8):
        images.append(tmp_path / f"im\tg{i}.png")
        Image.new("L", (8, 8), 30 * i).save(images[-1])
    code, out, err = run_cli(["predict", str(model), *map(str, images)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(images) and "\x1b" not in out
    assert all(line.count("\t") == 1 for line in lines)
    assert lines[0].startswith(str(tmp_path / "im\\tg0.png") + "\t")
    assert {line.split("\t")[1] for line in lines} <= {"a\\tb", "c\\x1b[31m", "d\\ne", "f"}


def test_predict_refuses_a_fifo_and_a_huge_image_as_training_would(export, tmp_path, capsys):
    import os

    from support import assert_one_error_line, run_cli

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, _, err = run_cli(["predict", str(export), str(fifo)], capsys)  # a read would hang
    assert code == 2
    assert_one_error_line(err, ["not regular files", "pipe.png"])
    fifo.unlink()
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_claiming(20_000, 20_000))
    err = assert_refused_unchanged(
        tmp_path, ["predict", str(export), str(huge)], ["64,000,000 pixels", "20000×20000"], capsys
    )
    assert "cannot be read" not in err
    big = tmp_path / "big.png"  # 144 megapixels: under Pillow's own bound, over training's
    big.write_bytes(_png_header_claiming(12_000, 12_000))
    assert_refused_unchanged(
        tmp_path, ["predict", str(export), str(big)], ["64,000,000 pixels", "12000×12000"], capsys
    )


def test_predict_to_a_full_stdout_ends_in_one_line(export, tmp_path) -> None:
    import subprocess
    import sys

    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 40).save(image)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "sparsedd", "predict", str(export), str(image)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    err = proc.stderr
    assert proc.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot write to standard output" in err
