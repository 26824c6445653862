"""`sparsedd export --run`: a pruned model with its weights' positions, and load_pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import run_process

import sparsedd
from sparsedd.components import from_dict
from sparsedd.config_files import load_yaml_file
from sparsedd.errors import CheckpointError
from sparsedd.export.pruned import dense_state, sparse_tensors
from sparsedd.models.base import InputSpec, create_model
from sparsedd.store import checkpoint as ckpt
from sparsedd.training.prune import full_masks


def _round_model(out: Path, run_id: str, k: int) -> torch.nn.Module:
    """The model as the run left it after round ``k``, rebuilt from its checkpoint."""
    folder = out / "runs" / run_id
    cfg = from_dict(load_yaml_file(folder / "config.yaml"))
    model = create_model(cfg, InputSpec(1, 8, 4))
    tensors, _ = ckpt.load_tensors(folder / f"round_{k:03d}.safetensors")
    ckpt.restore(folder, tensors, model, full_masks(model))
    return model.eval()


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (16, 1, 8, 8), generator=g).float() / 255 - 0.5) / 0.3


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_export_round_trips_to_identical_logits(trained, tmp_path, fmt: str) -> None:
    out, run_id = trained
    path = tmp_path / f"model-{fmt}.safetensors"
    proc = run_process(
        "export", str(out), "--run", run_id[:6], "--round", "2", "-o", str(path), "--format", fmt
    )
    assert proc.returncode == 0, proc.stderr
    assert f"run {run_id} round 2" in proc.stdout and "dense" in proc.stdout
    model = sparsedd.load_pruned(path)
    assert not model.training
    expected = _round_model(out, run_id, 2)(_images())
    assert torch.equal(model(_images()), expected)
    meta = sparsedd.pruned_metadata(path)
    assert meta["round"] == 2 and meta["input"]["num_classes"] == 4
    assert meta["input"]["mean"] == [0.5] and meta["config"]["dim"] == 16


def test_sparse_file_holds_only_surviving_weights_and_is_smaller(trained, tmp_path) -> None:
    out, run_id = trained
    sparse, dense = tmp_path / "s.safetensors", tmp_path / "d.safetensors"
    for path, fmt in ((sparse, "sparse"), (dense, "dense")):
        cmd = ["export", str(out), "--run", run_id, "-o", str(path), "--format", fmt]
        assert run_process(*cmd).returncode == 0
    tensors, _ = ckpt.load_tensors(sparse)
    round_tensors, _ = ckpt.load_tensors(out / "runs" / run_id / "round_002.safetensors")
    mask = round_tensors["mask.blocks.0.to_qkv.weight"]
    values = tensors["sparse.blocks.0.to_qkv.weight.values"]
    assert values.numel() == int(mask.sum()) < mask.numel() * 0.2  # 84% pruned by round 2
    assert "dense.blocks.0.to_qkv.weight" not in tensors
    assert "dense.pos_embedding" in tensors and "dense.head.0.weight" in tensors  # never pruned
    assert sparse.stat().st_size < dense.stat().st_size
    parts = ("values", "col_indices", "crow_indices")
    csr_bytes = sum(_nbytes(tensors[f"sparse.blocks.0.to_qkv.weight.{p}"]) for p in parts)
    assert csr_bytes < 0.5 * _nbytes(mask.float())


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def test_csr_round_trip_of_conv_weights_keeps_positions_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 3, 3, 3, generator=g)
    mask = torch.rand(weight.shape, generator=g) < 0.3
    mask[2] = False  # an empty row
    weight = weight * mask
    weight[mask.nonzero()[0].unbind()] = 0.0  # a surviving weight that happens to be zero
    stored = sparse_tensors({"c.weight": weight, "c.bias": torch.ones(6)}, {"c.weight": mask})
    assert stored["sparse.c.weight.values"].numel() == int(mask.sum())
    assert stored["sparse.c.weight.col_indices"].dtype == torch.int16
    state = dense_state(stored, {"c.weight": list(weight.shape)})
    assert torch.equal(state["c.weight"], weight) and torch.equal(state["c.bias"], torch.ones(6))


def test_export_refuses_bad_requests_in_one_line(trained, tmp_path) -> None:
    out, run_id = trained
    cases = [
        (["--run", "zzzz", "-o", "m.safetensors"], "is not a run"),
        (["--run", run_id, "--round", "7", "-o", "m.safetensors"], "it finished rounds 0..2"),
        (["--run", run_id, "-o", "m.pt"], "must end in .safetensors"),
        (["--round", "1", "-o", "t.csv"], "give --run ID too"),
        (["--run", run_id, "--table", "stats", "-o", "m.safetensors"], "leave it out"),
    ]
    for args, message in cases:
        proc = run_process(
            "export", str(out), *[a if "." not in a else str(tmp_path / a) for a in args]
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr
    assert not list(tmp_path.iterdir())


def test_table_export_still_works_without_run(trained, tmp_path) -> None:
    out, _ = trained
    proc = run_process("export", str(out), "-o", str(tmp_path / "rounds.csv"))
    assert proc.returncode == 0 and "wrote 3 rows" in proc.stdout


def test_load_pruned_refuses_a_file_that_is_not_an_export(trained) -> None:
    out, run_id = trained
    with pytest.raises(CheckpointError, match="not a model written by"):
        sparsedd.load_pruned(out / "runs" / run_id / "round_001.safetensors")


def test_runs_recorded_before_the_input_metadata_export_from_the_dataset(trained, tmp_path) -> None:
    import shutil

    from sparsedd.export.pruned import export_pruned

    out, run_id = trained
    copy = tmp_path / "out"
    shutil.copytree(out / "runs", copy / "runs")
    round_path = copy / "runs" / run_id / "round_002.safetensors"
    tensors, meta = ckpt.load_tensors(round_path)
    del meta["input"]
    ckpt.save_tensors(round_path, tensors, meta)
    export_pruned(copy, run_id, 2, tmp_path / "m.safetensors")
    info = sparsedd.pruned_metadata(tmp_path / "m.safetensors")["input"]
    assert info == {
        "channels": 1,
        "image_size": 8,
        "num_classes": 4,
        "mean": [0.5],
        "std": [0.3],
        "classes": ["0", "1", "2", "3"],
    }
