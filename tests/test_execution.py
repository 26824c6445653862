"""precision=auto and compile=auto resolve by the device; --batch-lambdas is refused (removed)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support import run_cli

from sparsedd.cli import main as cli_main
from sparsedd.config import parse_assignment
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, create_model
from sparsedd.presets import preset_config
from sparsedd.training import execution
from sparsedd.training.prune import full_masks
from sparsedd.training.trainer import Trainer

CPU = torch.device("cpu")
SMALL_VIT = dict(patch_size=4, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16)


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given feature flags."""

    def set_flags(*names: str) -> None:
        monkeypatch.setattr(execution, "cpu_flags", lambda: frozenset(names))

    return set_flags


def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(flags) -> None:
    flags("avx512f", "avx2")
    assert execution.resolve_precision("auto", CPU) == "fp32"
    flags("avx512f", "avx512_bf16")
    assert execution.resolve_precision("auto", CPU) == "bf16"
    flags("amx_tile", "amx_bf16")
    assert execution.resolve_precision("auto", CPU) == "bf16"
    assert execution.resolve_precision("fp32", CPU) == "fp32"
    assert execution.resolve_precision("bf16", CPU) == "bf16"


def test_auto_compile_only_for_bf16_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(execution, "has_cpp_compiler", lambda: True)
    assert execution.resolve_compile(None, "bf16", CPU) is True
    assert execution.resolve_compile(None, "fp32", CPU) is False
    assert execution.resolve_compile(None, "bf16", torch.device("cuda")) is False
    assert execution.resolve_compile(False, "bf16", CPU) is False
    assert execution.resolve_compile(True, "fp32", CPU) is True
    monkeypatch.setattr(execution, "has_cpp_compiler", lambda: False)
    assert execution.resolve_compile(None, "bf16", CPU) is False


def test_config_takes_auto_for_precision_and_compile() -> None:
    assert parse_assignment("precision=auto") == ("precision", "auto")
    assert parse_assignment("compile=auto") == ("compile", None)
    assert parse_assignment("compile=true") == ("compile", True)
    with pytest.raises(ConfigError, match="true, false or auto"):
        parse_assignment("compile=maybe")
    demo = preset_config("demo")
    assert (demo.precision, demo.compile) == ("auto", None)


def _trainer(**overrides) -> Trainer:
    cfg = dataclasses.replace(preset_config("demo"), **SMALL_VIT, **overrides)
    model = create_model(cfg, InputSpec(1, 8, 4))
    return Trainer(model, full_masks(model), cfg, CPU)


def test_trainer_follows_the_resolved_precision_and_compile(flags, monkeypatch) -> None:
    monkeypatch.setattr(execution, "has_cpp_compiler", lambda: True)
    flags("avx2")
    plain = _trainer()
    assert plain.precision == "fp32" and plain.forward is plain.model
    with plain.autocast():
        assert not torch.is_autocast_enabled("cpu")
    flags("avx512_bf16")
    fast = _trainer()
    assert fast.precision == "bf16" and fast.forward is not fast.model  # compiled lazily
    with fast.autocast():
        assert torch.is_autocast_enabled("cpu")


def test_compiled_bf16_training_stays_near_eager_fp32() -> None:
    """The demo's default path on a bf16 CPU (compiled) trains as the fp32 eager path does."""
    x = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 4, (48,))
    losses = {}
    for name, precision, compiled in (("eager", "fp32", False), ("compiled", "bf16", True)):
        torch.manual_seed(0)
        trainer = _trainer(precision=precision, compile=compiled, batch_size=16, lr=1e-3)
        trainer.refresh_masks()
        losses[name] = [
            trainer.train_epoch(x, y, epoch, False, (0.5,), (0.25,), epoch * 3, 9).loss
            for epoch in range(3)
        ]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=3e-2)
    assert losses["eager"][-1] < losses["eager"][0]  # it trained


@pytest.mark.parametrize("flag", ["--batch-lambdas", "--no-batch-lambdas"])
def test_batched_lambdas_was_removed_and_says_so_in_one_line(tmp_path, capsys, flag) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", "-p", "tiny", flag, "--out", str(out)], capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "--batch-lambdas was removed" in err and "drop the option" in err
    assert not out.exists()  # refused before anything is written
    option = next(p for p in cli_main.cli.commands["run"].params if p.name == "batch_lambdas")
    assert option.hidden
