"""Totality, proven by random damage: whatever a results database, label file or image folder
holds, the tool answers with a table or one ``sparsedd: error:`` line (exit 2), never a
traceback.

The results database is a real one (one finished `tiny` run, built once for the module);
hypothesis damages a copy of it at random (any column of any table set to a value of any SQL
type, a run's config or a round's layer densities replaced by random JSON: wrong types,
nesting, sizes, missing keys) and runs one reading command on it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from support import assert_one_error_line, run_cli

from sparsedd.components import resolve_config
from sparsedd.data.imagefolder import load_imagefolder
from sparsedd.data.label_files import read_human_labels
from sparsedd.errors import UserError
from sparsedd.store.schema import EVAL_FIELDS, PROVENANCE_FIELDS, ROUND_FIELDS
from sparsedd.training.experiment import Experiment

SETTINGS = settings(
    max_examples=int(os.environ.get("SPARSEDD_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding two finished `tiny` runs (two seeds: a curve with a spread)."""
    out = tmp_path_factory.mktemp("props") / "out"
    for seed in (0, 1):
        Experiment(resolve_config("tiny", assignments=[f"seed={seed}"]), out).run()
    return out


# ---------------------------------------------------------------- values

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
sql_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
    json_values.map(json.dumps),
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Every column of the three tables, as the store defines them (a new column is damaged too).
TABLE_COLUMNS = {
    "runs": ["run_id", "config", "created"],
    "rounds": ["run_id", *ROUND_FIELDS, "layer_density", *PROVENANCE_FIELDS, *EVAL_FIELDS],
    "epochs": ["run_id", "round", "epoch", "train_loss", "train_acc"],
}


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, tuple]:
    """One UPDATE statement (with its parameters) that damages the database."""
    kind = draw(st.sampled_from(["column", "config-key", "config", "density", "deep"]))
    if kind == "column":
        table = draw(st.sampled_from(sorted(TABLE_COLUMNS)))
        column = draw(st.sampled_from(TABLE_COLUMNS[table]))
        where = draw(st.sampled_from(["", " WHERE rowid = 1", " WHERE rowid % 2 = 0"]))
        return f"UPDATE {table} SET {column} = ?{where}", (draw(sql_values),)
    if kind == "config-key":
        key = draw(st.sampled_from(["model", "noise", "weight_decay", "seed", "epochs", "rounds"]))
        if draw(st.booleans()):
            return f"UPDATE runs SET config = json_remove(config, '$.{key}')", ()
        value = json.dumps(draw(json_values))
        return f"UPDATE runs SET config = json_set(config, '$.{key}', json(?))", (value,)
    if kind == "config":
        return "UPDATE runs SET config = ? WHERE rowid = 1", (json.dumps(draw(json_values)),)
    if kind == "density":
        value = json.dumps(draw(json_values))
        return "UPDATE rounds SET layer_density = ?", (value,)
    depth = draw(st.integers(min_value=1, max_value=3000))
    column = draw(st.sampled_from(["runs.config", "rounds.layer_density"]))
    table, name = column.split(".")
    return f"UPDATE {table} SET {name} = ?", (nested(depth),)


COMMANDS = {
    "results": lambda out: ["results", str(out)],
    "results-json": lambda out: ["results", str(out), "--format", "json"],
    "analyze": lambda out: ["analyze", str(out)],
    "plot": lambda out: ["plot", str(out)],
    "report": lambda out: ["report", str(out)],
    "export": lambda out: ["export", str(out), "-o", str(out / "rounds.csv")],
    "export-stats": lambda out: ["export", str(out), "--table", "stats", "-o", str(out / "s.csv")],
    "status": lambda out: ["status", str(out)],
}


def assert_table_or_one_line(code: int, out: str, err: str) -> None:
    """Exit 0 with output, or exit 2 with one error line; never a traceback."""
    assert "Traceback" not in err, err
    if code == 0:
        assert out.strip() or err.strip(), "a command that succeeds says something"
        return
    assert code == 2, (code, err)
    assert_one_error_line(err, [])


@SETTINGS
@given(damage=damages(), command=st.sampled_from(sorted(COMMANDS)))
def test_damaged_database_never_gives_a_traceback(database, capsys, damage, command) -> None:
    sql, params = damage
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(database, out)
        conn = sqlite3.connect(out / "results.sqlite")
        try:
            conn.execute(sql, params)
            conn.commit()
        except sqlite3.Error:  # e.g. a NOT NULL or primary key constraint: damage elsewhere
            conn.execute("UPDATE rounds SET sparsity = ?", (params[0] if params else "x",))
            conn.commit()
        finally:
            conn.close()
        code, stdout, err = run_cli(COMMANDS[command](out), capsys)
        assert_table_or_one_line(code, stdout, err)


# ---------------------------------------------------------------- label files

N_TRAIN, CLASSES = 64, 4
TRAIN_LABELS = torch.arange(N_TRAIN) % CLASSES


def npy_with_header(shape: tuple, dtype: str, payload: bytes) -> bytes:
    """A .npy file whose header says ``shape`` and ``dtype``, followed by ``payload``."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


@st.composite
def label_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes) of a label file: random bytes, lying headers, texts, nearly right."""
    kind = draw(st.sampled_from(["bytes", "npy-header", "text", "valid-ish"]))
    if kind == "bytes":
        suffix = draw(st.sampled_from([".npy", ".txt", ".pt", ".pth"]))
        return suffix, draw(st.binary(max_size=300))
    if kind == "npy-header":
        shape = tuple(draw(st.lists(st.integers(0, 2**62), max_size=3)))
        dtype = draw(st.sampled_from(["<i8", "<u8", "<i2", "|u1", "<f8", "|O", "|b1", ">i4"]))
        return ".npy", npy_with_header(shape, dtype, draw(st.binary(max_size=600)))
    if kind == "text":
        tokens = st.one_of(st.integers(-(10**30), 10**30).map(str), st.text(max_size=6))
        return ".txt", "\n".join(draw(st.lists(tokens, max_size=80))).encode("utf-8", "replace")
    labels = draw(st.lists(st.integers(-2, 2**40), min_size=N_TRAIN - 1, max_size=N_TRAIN + 1))
    dtype = draw(st.sampled_from([np.int64, np.uint64, np.int8, np.float32]))
    path = Path(tempfile.mkdtemp()) / "x.npy"
    np.save(path, np.array(labels).astype(dtype))
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return ".npy", data


@SETTINGS
@given(entry=label_files(), link=st.sampled_from(["file", "dangling", "empty"]))
def test_any_label_file_is_read_or_refused_in_one_line(entry, link) -> None:
    suffix, data = entry
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"labels{suffix}"
        if link == "dangling":
            path.symlink_to(Path(tmp) / "gone")
        else:
            path.write_bytes(data if link == "file" else b"")
        try:
            labels = read_human_labels(str(path), tmp, None, TRAIN_LABELS, CLASSES)
        except UserError as err:
            assert "\n" not in str(err).strip()
        else:
            assert labels.shape == (N_TRAIN,) and labels.dtype == torch.int64
            assert int(labels.min()) >= 0 and int(labels.max()) < CLASSES


# ---------------------------------------------------------------- image folders


def png_claiming(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


image_files = st.one_of(
    st.just("good"),
    st.just("zero-bytes"),
    st.just("dangling"),
    st.just("folder"),
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),  # a header that lies
    st.binary(max_size=200),
)


def _put(path: Path, what: object) -> None:
    if what == "good":
        Image.new("RGB", (5, 7), (len(path.name) * 20 % 256, 0, 0)).save(path, format="PNG")
    elif what == "zero-bytes":
        path.write_bytes(b"")
    elif what == "dangling":
        path.symlink_to(path.parent / "nowhere.png")
    elif what == "folder":
        path.mkdir()
    elif isinstance(what, tuple):
        path.write_bytes(png_claiming(*what))
    else:
        path.write_bytes(what)


@SETTINGS
@given(
    layout=st.dictionaries(
        st.sampled_from(["train/a", "train/b", "train/c", "test/a", "test/b", "test/z"]),
        st.lists(image_files, max_size=3),
        max_size=6,
    )
)
def test_any_image_folder_is_loaded_or_refused_in_one_line(layout) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder, files in layout.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i, what in enumerate(files):
                _put(root / folder / f"{i}.png", what)
        cfg = resolve_config("tiny", assignments=["dataset=imagefolder", f"data_dir={tmp}"])
        try:
            data = load_imagefolder(cfg)
        except UserError as err:
            assert "\n" not in str(err).strip()
        else:
            assert data.num_classes >= 2 and len(data.train_y) > 0
        assert not [p for p in root.rglob("*.tmp")]
