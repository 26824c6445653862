"""A teacher given as a model and its weights (``teacher=MODEL:PATH.safetensors`` or
``timm:NAME:PATH.safetensors``): built for the run's data, loaded from safetensors only.

The model is built as ``create_model`` builds the run's own (its keys are the run's; those it
does not read keep their defaults), then the file's state dict is loaded strictly. A file need
not say what it was trained on; where its safetensors metadata does (``dataset``,
``num_classes``, ``channels``, ``image_size``), that is checked against the run like any other
teacher; its class count is also read from its last Linear layer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import InputSpec, create_model
from sparsedd.teacher_ref import TeacherRef

#: Metadata keys of a checkpoint's header that say what it was trained for (all optional).
INPUT_KEYS = ("channels", "image_size", "num_classes")


def load_checkpoint_teacher(
    ref: TeacherRef, cfg: Config, spec: InputSpec
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model, what it was trained on, its input) of a model-and-checkpoint teacher; the
    dataset and input default to the run's where the file does not say (``check_teacher``
    compares them)."""
    assert ref.model is not None and ref.path is not None
    tensors, header = read_checkpoint(ref.value, ref.path)
    with torch.random.fork_rng():  # building initializes weights: leave the caller's RNG alone
        model = create_model(dataclasses.replace(cfg, model=ref.model), spec)
    given = {"channels": spec.channels, "image_size": spec.image_size}
    given["num_classes"] = _classes_of(model, tensors, spec.num_classes)
    for key in INPUT_KEYS:
        if key in header:
            given[key] = _int_field(ref.value, header, key)
    recorded = {"dataset": header.get("dataset", cfg.dataset)}
    fits = given == dataclasses.asdict(spec) and recorded["dataset"] == cfg.dataset
    if fits:  # else check_teacher refuses it in its own words, before a shape mismatch would
        _load_state(ref, model, tensors)
    return model, recorded, given


def read_checkpoint(name: str, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and header metadata of a safetensors file; ConfigError if it is not one."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else "unreadable"
        raise ConfigError(
            f"config key 'teacher': {name} is not a readable safetensors file ({first}); save "
            f"the model's state dict with safetensors.torch.save_file"
        ) from None
    return tensors, header


def _int_field(name: str, header: dict[str, str], key: str) -> int:
    try:
        return int(header[key])
    except ValueError:
        raise ConfigError(
            f"config key 'teacher': {name}'s metadata {key}={header[key]!r} is not a whole "
            f"number; write it as one, or leave it out"
        ) from None


def _classes_of(model: nn.Module, tensors: dict[str, torch.Tensor], default: int) -> int:
    """The rows of the checkpoint's last Linear weight (the classes it predicts)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in reversed(linears):
        weight = tensors.get(f"{name}.weight")
        if weight is not None and weight.dim() == 2:
            return int(weight.shape[0])
    return default


def _load_state(ref: TeacherRef, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """The checkpoint's weights into ``model``, strictly; ConfigError (one line) if they do
    not fit."""
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:200] if lines else "no detail"
        raise ConfigError(
            f"config key 'teacher': {ref.path} is not a state dict of model {ref.model} built "
            f"with this run's keys for its data ({detail}); give that model's checkpoint, or "
            f"set the model keys it was built with"
        ) from None


def check_teacher_output(name: str, model: nn.Module, spec: InputSpec) -> None:
    """ConfigError unless the teacher maps a batch of the run's images to one logit per class
    (its header may not have said what input it takes)."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, spec.channels, spec.image_size, spec.image_size))
    except Exception as err:  # any failure of a foreign model on our input shape
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"config key 'teacher': {name} cannot take this run's {spec.channels}×"
            f"{spec.image_size}² images ({first}); give a teacher of this run's data"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        raise ConfigError(
            f"config key 'teacher': {name} does not give {spec.num_classes} logits per image; "
            f"give a teacher of this run's data"
        )
