"""A teacher given as a model and its weights: ``teacher=MODEL:PATH.safetensors`` (a registered
model) or ``timm:NAME:PATH.safetensors``, loaded with safetensors, checked, in the run id."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support import run_cli

from sparsedd.components import resolve_config, run_id
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, create_model
from sparsedd.teacher_ref import teacher_identity

SPEC = InputSpec(1, 8, 4)  # the tiny preset's synthetic data


def cfg_of(*assignments: str):
    return resolve_config("tiny", assignments=assignments)


def write_lenet(path: Path, seed: int, classes: int = 4, **meta: str) -> dict[str, torch.Tensor]:
    """A LeNet for the synthetic data (``classes`` outputs), its weights drawn from ``seed``
    and scaled up (a confident teacher), saved as a plain safetensors state dict."""
    torch.manual_seed(seed)
    model = create_model(cfg_of(), InputSpec(1, 8, classes))
    state = {k: (v * 3).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta or None)
    return state


def _rows(out: Path, cfg) -> list[tuple]:
    from sparsedd.training.experiment import Experiment

    rows = Experiment(cfg, out).run()
    return [(r["round"], r["test_acc"], r["test_loss"], r["train_acc"]) for r in rows]


def test_a_registered_model_and_its_checkpoint_teach_a_run(tmp_path: Path) -> None:
    """The checkpoint's weights are the teacher's (not the fresh model's); another checkpoint
    trains another student; the run trains no default teacher."""
    from sparsedd.store.results import ResultsStore
    from sparsedd.training.teacher import default_teacher_id, load_teacher

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    state = write_lenet(a, seed=1, dataset="synthetic")
    write_lenet(b, seed=2)
    cfg_a = cfg_of("remedy=distill", "rounds=1", "epochs=1", f"teacher=lenet:{a}")
    teacher = load_teacher(cfg_a, tmp_path, SPEC)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in state.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    rows_a = _rows(tmp_path / "a", cfg_a)
    rows_b = _rows(
        tmp_path / "b", cfg_of("remedy=distill", "rounds=1", "epochs=1", f"teacher=lenet:{b}")
    )
    assert len(rows_a) == 2 and rows_a != rows_b
    assert ResultsStore(tmp_path / "a").rounds_done(default_teacher_id(cfg_a)) == set()


def test_the_checkpoint_and_its_model_name_enter_the_run_id(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "copy" / "a.safetensors"
    write_lenet(a, seed=1)
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    id_a = run_id(cfg_of("remedy=distill", f"teacher=lenet:{a}"))
    assert id_a == run_id(cfg_of("remedy=distill", f"teacher=lenet:{b}"))  # same bytes
    assert id_a != run_id(cfg_of("remedy=distill", f"teacher={a}"))  # not an export
    assert id_a != run_id(cfg_of("remedy=distill", f"teacher=vgg-like:{a}"))  # another model
    write_lenet(b, seed=2)
    assert id_a != run_id(cfg_of("remedy=distill", f"teacher=lenet:{b}"))  # other weights


@pytest.mark.parametrize(
    ("classes", "meta", "says"),
    [
        (10, {}, "10 classes, not 4"),
        (4, {"dataset": "mnist"}, "dataset mnist, not synthetic"),
        (4, {"channels": "3"}, "3×8² inputs, not 1×8²"),
    ],
)
def test_a_checkpoint_of_other_data_is_refused_in_one_line(
    tmp_path: Path, capsys, classes: int, meta: dict[str, str], says: str
) -> None:
    path = tmp_path / "t.safetensors"
    write_lenet(path, seed=1, classes=classes, **meta)
    args = ["run", "-p", "tiny", "--out", str(tmp_path / "out"), "-q", "--set", "remedy=distill"]
    code, _, err = run_cli([*args, "--set", f"teacher=lenet:{path}"], capsys)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "out" / "runs").exists()


def test_a_checkpoint_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    """A pickle is never loaded, even named .safetensors."""
    from sparsedd.training.teacher import load_teacher

    path = tmp_path / "t.safetensors"
    path.write_bytes(pickle.dumps({"fc1.weight": [1.0]}))
    cfg = cfg_of("remedy=distill", f"teacher=lenet:{path}")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_teacher(cfg, tmp_path, SPEC)


def test_weights_of_another_model_are_refused_in_one_line(tmp_path: Path) -> None:
    from sparsedd.training.teacher import load_teacher

    path = tmp_path / "t.safetensors"
    save_file({"other.weight": torch.zeros(4, 64)}, str(path))
    cfg = cfg_of("remedy=distill", f"teacher=lenet:{path}")
    with pytest.raises(ConfigError, match="not a state dict of model lenet") as info:
        load_teacher(cfg, tmp_path, SPEC)
    assert "\n" not in str(info.value)


def test_a_timm_teacher_without_timm_says_to_install_it(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import sparsedd.models.timm_models as timm_models

    monkeypatch.setattr(timm_models, "timm_available", lambda: False)
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    args = ["run", "-p", "tiny", "--out", str(tmp_path / "out"), "-q", "--set", "remedy=distill"]
    code, _, err = run_cli([*args, "--set", f"teacher=timm:test_vit:{path}"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "config key 'teacher'" in err and "needs the timm package; pip install" in err


def test_a_timm_teacher_loads_its_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    from sparsedd.training.teacher import load_teacher

    cfg = cfg_of("model=timm:test_vit", "patch_size=4")
    torch.manual_seed(3)
    model = create_model(cfg, SPEC)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    student = cfg_of("remedy=distill", f"teacher=timm:test_vit:{path}")
    # The teacher is built with the run's keys: the run is a LeNet, so patch_size is set for it.
    teacher = load_teacher(dataclasses.replace(student, patch_size=4), tmp_path, SPEC)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(teacher(x), model.eval()(x))


def test_a_file_rewritten_with_its_size_and_mtime_gets_a_new_digest(tmp_path: Path) -> None:
    """The digest cache is keyed on path, mtime and size: a recent rewrite that keeps both (a
    coarse timestamp tick) must be hashed again, not answered from the cache."""
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(4)}, str(path))
    stamp = path.stat().st_mtime_ns
    before = teacher_identity(f"lenet:{path}")
    save_file({"w": torch.ones(4)}, str(path))
    os.utime(path, ns=(stamp, stamp))
    assert teacher_identity(f"lenet:{path}") != before
