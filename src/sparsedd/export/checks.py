"""Checks of an exported model file, field by field and tensor by tensor, before it is built.

``check_export`` refuses, with one ``CheckpointError`` naming the field or tensor, metadata of
the wrong type or of absurd size, a config that is not valid, tensors the model does not have
(or lacks), shapes or dtypes other than the model's, non-finite values and CSR indices that
are not integers, are negative, out of range, out of order or repeated within a row, and
normalisation values that are not finite or not in a range pixels can have (as float32). The
model's expected tensors come from building it on PyTorch's ``meta`` device, which allocates
no memory.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sparsedd.components import from_dict
from sparsedd.config import Config
from sparsedd.errors import CheckpointError, UserError
from sparsedd.models.base import InputSpec, create_model

FORMATS = ("sparse", "dense")
CSR_PARTS = ("crow_indices", "col_indices", "values")
#: Bounds on the input metadata: wider than any real dataset, small enough to build safely.
MAX_CHANNELS = 16
MAX_IMAGE_SIZE = 4096
MAX_CLASSES = 100_000
INDEX_DTYPES = (torch.int16, torch.int32, torch.int64)
#: Normalisation bounds (after float32 conversion): pixels scaled to 0..1 have a mean in 0..1
#: and a std under 1; beyond these, every input becomes inf, 0 or NaN to the model.
MAX_ABS_MEAN = 100.0
STD_RANGE = (1e-4, 100.0)


class ExportProblem(CheckpointError):
    """One field or tensor of an exported model file that cannot be used."""


def _fail(label: str, what: str) -> ExportProblem:
    return ExportProblem(
        f"{label} is not a usable model: {what}; export it again with `sparsedd export --run`"
    )


def _int_in(label: str, field: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(
            label, f"field {field!r} must be an integer in {low}..{high}, not {_short(value)}"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(label: str, field: str, value: Any, n: int, positive: bool = False) -> list[float]:
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(type(v) in (int, float) and math.isfinite(v) for v in value)
    ok = ok and (not positive or all(v > 0 for v in value))
    if not ok:
        kind = "positive finite numbers" if positive else "finite numbers"
        raise _fail(label, f"field {field!r} must be a list of {n} {kind}, not {_short(value)}")
    return value


def check_input(label: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``input`` field: image channels and size, classes, mean, std, class names."""
    info = meta.get("input")
    if not isinstance(info, dict):
        raise _fail(label, f"field 'input' must be a mapping, not {_short(info)}")
    channels = _int_in(label, "input.channels", info.get("channels"), 1, MAX_CHANNELS)
    _int_in(label, "input.image_size", info.get("image_size"), 1, MAX_IMAGE_SIZE)
    classes = _int_in(label, "input.num_classes", info.get("num_classes"), 1, MAX_CLASSES)
    mean = _numbers(label, "input.mean", info.get("mean"), channels)
    std = _numbers(label, "input.std", info.get("std"), channels, positive=True)
    _check_normalisation(label, mean, std)
    names = info.get("classes")
    if names is not None and not (
        isinstance(names, list) and len(names) == classes and all(isinstance(n, str) for n in names)
    ):
        raise _fail(label, f"field 'input.classes' must list {classes} class names")
    return info


def _check_normalisation(label: str, mean: list[float], std: list[float]) -> None:
    """Mean and std as the model will see them (float32) are in a range pixels can have."""
    mean32 = torch.tensor(mean, dtype=torch.float64).to(torch.float32).tolist()
    std32 = torch.tensor(std, dtype=torch.float64).to(torch.float32).tolist()
    if not all(math.isfinite(v) and abs(v) <= MAX_ABS_MEAN for v in mean32):
        raise _fail(
            label,
            f"field 'input.mean' must lie within ±{MAX_ABS_MEAN:g} (pixels are scaled to "
            f"0..1), not {_short(mean)}",
        )
    low, high = STD_RANGE
    if not all(math.isfinite(v) and low <= v <= high for v in std32):
        raise _fail(
            label,
            f"field 'input.std' must lie in {low:g}..{high:g} as float32 (pixels are scaled "
            f"to 0..1), not {_short(std)}",
        )


def check_meta_fields(label: str, meta: dict[str, Any]) -> Config:
    """Every metadata field but the tensors' shapes; returns the validated config."""
    for field, kind in (("config", dict), ("shapes", dict), ("run_id", str)):
        if not isinstance(meta.get(field), kind):
            what = "a mapping" if kind is dict else "text"
            raise _fail(label, f"field {field!r} must be {what}, not {_short(meta.get(field))}")
    _int_in(label, "round", meta.get("round"), 0, 10_000)
    if meta.get("format", "sparse") not in FORMATS:
        raise _fail(label, f"field 'format' must be one of {', '.join(FORMATS)}")
    check_input(label, meta)
    try:
        return from_dict(meta["config"])
    except UserError as err:
        raise _fail(label, f"field 'config' is not valid ({err})") from None


def expected_state(cfg: Config, info: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state dict as shapes and dtypes only (built on the meta device)."""
    spec = InputSpec(info["channels"], info["image_size"], info["num_classes"])
    with torch.random.fork_rng():  # building initializes weights: leave the caller's RNG alone
        try:
            with torch.device("meta"):
                model: nn.Module = create_model(cfg, spec)
        except UserError:
            raise
        except Exception:  # a model whose construction computes on its weights: build it
            model = create_model(cfg, spec)
    return model.state_dict()


def check_shapes(label: str, shapes: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """The ``shapes`` field names weights of the model, each with the model's own shape."""
    for name, shape in shapes.items():
        if name not in state:
            raise _fail(label, f"field 'shapes' names {_short(name)}, which the model lacks")
        if shape != list(state[name].shape):
            raise _fail(
                label,
                f"field 'shapes' gives {name} the shape {_short(shape)}, "
                f"the model's is {list(state[name].shape)}",
            )


def check_tensors(
    label: str,
    tensors: dict[str, torch.Tensor],
    shapes: dict[str, list[int]],
    state: dict[str, torch.Tensor],
) -> None:
    """Every tensor is one the model has, with its shape and dtype, finite; CSR is sound."""
    sparse = {n for n in shapes if any(f"sparse.{n}.{p}" in tensors for p in CSR_PARTS)}
    known = {f"dense.{n}" for n in state} | {f"sparse.{n}.{p}" for n in sparse for p in CSR_PARTS}
    unknown = sorted(set(tensors) - known)
    if unknown:
        raise _fail(label, f"tensor {_short(unknown[0])} is not part of the model")
    for name, want in state.items():
        if name in sparse:
            check_csr(label, name, tensors, want)
            continue
        got = tensors.get(f"dense.{name}")
        if got is None:
            raise _fail(label, f"tensor 'dense.{name}' is missing")
        _check_tensor(label, f"dense.{name}", got, want.dtype, tuple(want.shape))


def _check_tensor(
    label: str, key: str, value: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    if value.dtype != dtype:
        raise _fail(label, f"tensor {key!r} is {value.dtype}, the model takes {dtype}")
    if tuple(value.shape) != shape:
        raise _fail(label, f"tensor {key!r} has shape {list(value.shape)}, not {list(shape)}")
    if value.is_floating_point() and not bool(value.isfinite().all()):
        raise _fail(label, f"tensor {key!r} holds NaN or infinite values")


def check_csr(label: str, name: str, tensors: dict[str, torch.Tensor], want: torch.Tensor) -> None:
    """A weight stored in CSR form over its (rows, rest) view: index types, ranges, order."""
    parts = {}
    for part in CSR_PARTS:
        key = f"sparse.{name}.{part}"
        if key not in tensors:
            raise _fail(label, f"tensor {key!r} is missing")
        parts[part] = tensors[key]
    crow, col, values = (parts[p] for p in CSR_PARTS)
    rows, cols = int(want.shape[0]), math.prod(want.shape[1:])
    for part, value in (("crow_indices", crow), ("col_indices", col)):
        if value.dtype not in INDEX_DTYPES or value.dim() != 1:
            raise _fail(
                label,
                f"tensor 'sparse.{name}.{part}' must be a vector of integers, not {value.dtype} "
                f"of shape {list(value.shape)}",
            )
    if len(crow) != rows + 1:
        raise _fail(
            label, f"tensor 'sparse.{name}.crow_indices' has {len(crow)} entries, not {rows + 1}"
        )
    steps = crow.long().diff()
    if int(crow[0]) != 0 or bool((steps < 0).any()) or int(crow[-1]) != len(col):
        raise _fail(
            label,
            f"tensor 'sparse.{name}.crow_indices' must rise from 0 to {len(col)} "
            f"(the number of column indices)",
        )
    if len(col) and (int(col.min()) < 0 or int(col.max()) >= cols):
        raise _fail(
            label,
            f"tensor 'sparse.{name}.col_indices' holds an index outside 0..{cols - 1}",
        )
    if len(col) > 1:
        row_of = torch.repeat_interleave(torch.arange(rows), steps)
        repeated = (col.long().diff() <= 0) & (row_of[1:] == row_of[:-1])
        if bool(repeated.any()):
            row = int(row_of[1:][repeated][0])
            raise _fail(
                label,
                f"tensor 'sparse.{name}.col_indices' must rise strictly within each row; row "
                f"{row} names a column twice or out of order",
            )
    _check_tensor(label, f"sparse.{name}.values", values, want.dtype, (len(col),))


def check_export(label: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Config:
    """Refuse an export that is not sound in every field and tensor; return its config."""
    cfg = check_meta_fields(label, meta)
    try:
        state = expected_state(cfg, meta["input"])
    except UserError as err:
        raise _fail(label, f"its config and input do not build a model ({err})") from None
    check_shapes(label, meta["shapes"], state)
    check_tensors(label, tensors, meta["shapes"], state)
    return cfg
