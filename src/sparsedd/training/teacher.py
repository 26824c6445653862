"""The teacher of a distilled run (``remedy=distill``): which model, checked, loaded, frozen.

By default the teacher is the dense round of the same run without a remedy (same model, data,
noisy labels, seed and λ): the run that ``--grid remedy=none,distill`` trains beside it, so the
two share it; a missing one is trained first (its round 0 only). ``teacher`` may instead name
a run id in the same results folder, an exported ``.safetensors`` (read by the loader that
``sparsedd.export`` registers in :data:`TEACHER_FILES`, a layer above this one), or a registered
or timm model and its checkpoint (``training.teacher_checkpoint``). A teacher made for another
dataset, class count or input shape is refused in one line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsedd.components import from_dict, run_id
from sparsedd.config import DEFAULTS, Config
from sparsedd.config_files import load_yaml_file
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, create_model
from sparsedd.registry import Registry
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.results import RunStore
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.teacher_ref import parse_teacher
from sparsedd.training.teacher_checkpoint import check_teacher_output, load_checkpoint_teacher

#: A loader of a teacher file: path → (the model, its recorded config as a mapping, its input
#: meta with channels, image_size, num_classes). Registered by file suffix.
TeacherFile = Callable[[Path], tuple[nn.Module, dict[str, Any], dict[str, Any]]]
TEACHER_FILES: Registry[TeacherFile] = Registry("teacher file format")

_REMEDY_KEYS = ("remedy", "kd_alpha", "kd_temperature", "teacher", "label_smoothing")


def teacher_config(cfg: Config) -> Config:
    """The default teacher's run: ``cfg`` without a remedy, its dense round only."""
    reset = {key: getattr(DEFAULTS, key) for key in _REMEDY_KEYS}
    return dataclasses.replace(cfg, rounds=0, **reset)


def default_teacher_id(cfg: Config) -> str:
    """The run id of ``cfg``'s default teacher (the same run without a remedy)."""
    return run_id(teacher_config(cfg))


def default_teacher(
    cfg: Config, out_dir: str | Path, store: RunStore, train: Callable[[Config], None]
) -> nn.Module:
    """``cfg``'s default teacher, frozen: the dense round of the same run without a remedy,
    read from ``out_dir``; ``train(teacher_cfg)`` trains it first where it is not recorded."""
    tcfg = teacher_config(cfg)
    tid = run_id(tcfg)
    if (
        0 not in store.rounds_done(tid)
        or not ResultsFolder(out_dir).run(tid).round_file(0).is_file()
    ):
        train(tcfg)
    model, _, _ = load_run_teacher(out_dir, tid)
    return frozen(model)


def load_run_teacher(out_dir: str | Path, teacher: str) -> tuple[nn.Module, dict, dict]:
    """The dense round of run ``teacher`` in ``out_dir``: (model, its config, its input)."""
    files = ResultsFolder(out_dir).run(teacher)
    path = files.round_file(0)
    if not path.is_file() or not files.config.is_file():
        raise ConfigError(
            f"config key 'teacher': run {teacher} has no dense round in {out_dir}; train it "
            f"there first (its round 0) or give an exported .safetensors"
        )
    recorded = load_yaml_file(files.config)
    tensors, meta = ckpt.load_tensors(path)
    ckpt.check_meta(path, meta, teacher, 0)
    spec = InputSpec(**{k: meta["input"][k] for k in ("channels", "image_size", "num_classes")})
    with torch.random.fork_rng():  # building initializes weights: leave the caller's RNG alone
        model = create_model(from_dict(recorded), spec)
    masks = {k[len("mask.") :]: v for k, v in tensors.items() if k.startswith("mask.")}
    ckpt.restore(path, tensors, model, masks)
    return model, recorded, meta["input"]


def load_teacher(cfg: Config, out_dir: str | Path, spec: InputSpec) -> nn.Module:
    """The teacher ``cfg.teacher`` names (a run id, an exported file, or a model and its
    checkpoint), checked against the student's dataset and input, in eval mode with gradients
    off."""
    name = cfg.teacher
    if name is None:
        raise ValueError("load_teacher needs cfg.teacher; the default one is trained by the run")
    ref = parse_teacher(name)
    if ref.kind == "run":
        model, recorded, given = load_run_teacher(out_dir, name)
    elif ref.kind == "checkpoint":
        model, recorded, given = load_checkpoint_teacher(ref, cfg, spec)
    else:
        assert ref.path is not None
        model, recorded, given = TEACHER_FILES.get(ref.path.suffix)(ref.path)
    check_teacher(name, recorded, given, cfg, spec)
    if ref.kind == "checkpoint":
        check_teacher_output(name, model, spec)
    return frozen(model)


def check_teacher(
    name: str, recorded: dict[str, Any], given: dict[str, Any], cfg: Config, spec: InputSpec
) -> None:
    """ConfigError (one line) for a teacher of another dataset, class count or input shape."""
    theirs = (recorded.get("dataset"), given.get("num_classes"))
    shape = (given.get("channels"), given.get("image_size"))
    problems = []
    if theirs[0] != cfg.dataset:
        problems.append(f"dataset {theirs[0]}, not {cfg.dataset}")
    if theirs[1] != spec.num_classes:
        problems.append(f"{theirs[1]} classes, not {spec.num_classes}")
    if shape != (spec.channels, spec.image_size):
        problems.append(f"{shape[0]}×{shape[1]}² inputs, not {spec.channels}×{spec.image_size}²")
    if problems:
        raise ConfigError(
            f"config key 'teacher': {name} was trained for {'; '.join(problems)}; give a "
            f"teacher of this run's data (or leave teacher unset: the run trains its own)"
        )


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter's gradient off."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
