"""Every checkpoint load checks that the file is this run's, of this round: metadata, tensor names,
dtypes, masks and finite weights. A foreign or tampered checkpoint is refused with one line and
nothing is written; a deleted run folder is recomputed; leftovers of killed writes are removed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from support import (
    TINY,
    assert_one_error_line,
    assert_refused_unchanged,
    run_cli,
    tiny_folder,
)

from sparsedd.components import resolve_config
from sparsedd.store.results import ResultsStore
from sparsedd.training.experiment import Experiment


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["sparsedd"])
    return load_file(str(path)), meta


def _meta(**changes: Any) -> Callable[[Path], None]:
    """Rewrite the progress file's metadata (a value of ... removes the key)."""

    def damage(path: Path) -> None:
        tensors, meta = _read(path)
        for key, value in changes.items():
            if value is ...:
                meta.pop(key, None)
            else:
                meta[key] = value
        save_file(tensors, str(path), metadata={"sparsedd": json.dumps(meta)})

    return damage


def _raw_meta(text: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        save_file(load_file(str(path)), str(path), metadata={"sparsedd": text})

    return damage


def _tensor(key_part: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    def damage(path: Path) -> None:
        tensors, meta = _read(path)
        key = next(k for k in tensors if k.startswith(key_part))
        tensors[key] = change(tensors[key])
        save_file(tensors, str(path), metadata={"sparsedd": json.dumps(meta)})

    return damage


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _extra_tensor(path: Path) -> None:
    tensors, meta = _read(path)
    tensors["mask.not_a_layer"] = torch.ones(3, dtype=torch.bool)
    save_file(tensors, str(path), metadata={"sparsedd": json.dumps(meta)})


def _all_pruned(path: Path) -> None:
    tensors, meta = _read(path)
    for key in tensors:
        if key.startswith("mask."):
            tensors[key] = torch.zeros_like(tensors[key])
    save_file(tensors, str(path), metadata={"sparsedd": json.dumps(meta)})


PROGRESS_CASES = {
    "epoch-99": (_meta(epoch=99), "epoch 99"),
    "epoch-negative": (_meta(epoch=-5), "epoch -5"),
    "epoch-text": (_meta(epoch="x"), "epoch 'x'"),
    "epoch-float": (_meta(epoch=0.5), "epoch 0.5"),
    "no-epoch": (_meta(epoch=...), "epoch None"),
    "no-run-id": (_meta(run_id=...), "belongs to run None"),
    "nested-run-id": (_meta(run_id={"a": [1, 2]}), "belongs to run"),
    "no-round": (_meta(round=...), "round None"),
    "round-text": (_meta(round="1"), "round '1'"),
    "round-ahead": (_meta(round=5), "round 5"),
    "seconds-text": (_meta(seconds="x"), "seconds"),
    "seconds-negative": (_meta(seconds=-3.0), "seconds"),
    "deep-nesting": (_raw_meta("[" * 100000 + "]" * 100000), "corrupt"),
    "meta-not-object": (_raw_meta("[1, 2]"), "corrupt metadata"),
    "weight-nan": (_tensor("model.", _nan), "non-finite"),
    "weight-float64": (_tensor("model.", lambda t: t.double()), "torch.float64"),
    "mask-uint8": (_tensor("mask.", lambda t: t.to(torch.uint8)), "torch.uint8"),
    "mask-all-pruned": (_all_pruned, "sparsity 100"),
    "unknown-tensor": (_extra_tensor, "mask.not_a_layer"),
}


ROUND_CASES = {
    "round-other-round": (_meta(round=1), "round 1"),
    "round-no-run-id": (_meta(run_id=...), "belongs to run None"),
    "round-weight-inf": (_tensor("model.", lambda t: t.fill_(float("inf"))), "non-finite"),
    "round-mask-pruned": (_all_pruned, "sparsity 100"),
}
# Which file each case damages; with round_000 damaged, the progress file is removed so that
# resuming has to start from round_000.
CASES = {
    **{name: ("progress.safetensors", case) for name, case in PROGRESS_CASES.items()},
    **{name: ("round_000.safetensors", case) for name, case in ROUND_CASES.items()},
}


def _partial_copy(source: Path, out: Path, keep_progress: bool) -> Path:
    """A copy of the partial results (its run folder returned), with or without progress."""
    shutil.copytree(source, out)
    if not keep_progress:
        (tiny_folder(out) / "progress.safetensors").unlink()
    return tiny_folder(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tampered_checkpoint_is_refused(
    name: str,
    tmp_path: Path,
    partial_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, (damage, needle) = CASES[name]
    out = tmp_path / "out"
    folder = _partial_copy(partial_results, out, keep_progress=target == "progress.safetensors")
    damage(folder / target)
    assert_refused_unchanged(tmp_path, [*TINY, "--out", str(out)], [target, needle], capsys)


def test_round_checkpoint_copied_from_another_run_is_refused(
    tmp_path: Path,
    partial_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """round_000 of seed 1's run put in place of seed 0's: used silently before."""
    other = Experiment(resolve_config("tiny", None, ["seed=1", "rounds=0"]), tmp_path / "other")
    other.run()
    out = tmp_path / "out"
    folder = _partial_copy(partial_results, out, keep_progress=False)
    shutil.copy(other.folder / "round_000.safetensors", folder / "round_000.safetensors")
    needles = ["round_000.safetensors", f"belongs to run '{other.id}'"]
    assert_refused_unchanged(out, [*TINY, "--out", str(out)], needles, capsys)


# ---------------------------------------------------------------- dead ends


def _rows(out: Path) -> list[tuple]:
    rows = ResultsStore(out, create=False).round_rows()
    return [(r["round"], r["sparsity"], r["test_acc"], r["train_acc"]) for r in rows]


def test_deleted_run_folder_is_recomputed(
    tmp_path: Path,
    finished_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The rows are dropped (one line says so) and recomputed: the same numbers again."""
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    before = _rows(out)
    shutil.rmtree(tiny_folder(out))
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "dropped the recorded rounds" in line]
    assert len(notes) == 1 and "dropped the recorded rounds 0..2" in notes[0], err
    assert _rows(out) == before
    assert (tiny_folder(out) / "round_002.safetensors").exists()


def test_deleted_round_checkpoint_recomputes_from_the_last_one_left(
    tmp_path: Path,
    partial_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    shutil.copytree(partial_results, out)
    (tiny_folder(out) / "progress.safetensors").unlink()
    (tiny_folder(out) / "round_000.safetensors").unlink()
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 0, err
    assert "dropped the recorded rounds 0..0" in err
    assert [r[0] for r in _rows(out)] == [0, 1, 2]


def test_leftover_temporary_files_are_removed(
    tmp_path: Path,
    partial_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    shutil.copytree(partial_results, out)
    leftovers = [tiny_folder(out) / f".{n}.abc123.tmp" for n in ("progress.safetensors", "x")]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in leftovers)
    assert not list(out.rglob("*.tmp"))


def test_output_name_that_is_not_utf8_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = Path(os.fsdecode(bytes(tmp_path) + b"/out\xff"))
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 2, err
    assert_one_error_line(err, ["not valid UTF-8", "--out"])
    assert list(tmp_path.iterdir()) == []
