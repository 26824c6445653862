"""Checkpoints as safetensors files: atomic writes, safe reads, model/mask/optimizer state."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sparsedd.errors import CheckpointError
from sparsedd.store.atomic import atomic_write

OUT_FIX = "free space or choose a writable --out folder"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see old or new, never half."""
    # safetensors reports a full disk as its own error
    atomic_write(path, write, OUT_FIX, errors=(OSError, SafetensorError))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors and JSON-able metadata to ``path`` atomically."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    info = {"sparsedd": json.dumps(meta)}
    atomic_write_bytes(path, lambda tmp: save_file(flat, tmp, metadata=info))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a safetensors file; CheckpointError if unreadable (a file that
    cannot be opened is said to be so, with why: it is not called corrupt)."""
    check_readable_file(path, "checkpoint")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sparsedd", "{}"))
    except (SafetensorError, OSError, ValueError, RecursionError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({err}); delete it to recompute"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has corrupt metadata; delete it to recompute")
    return tensors, meta


def check_readable_file(path: Path, what: str) -> None:
    """CheckpointError unless ``path`` is a regular file this process may open (a folder, pipe
    or device is refused before it is opened; a pipe would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(
                f"{what} {path} is not a regular file (a folder, pipe or device); move it "
                f"away (it is written again)"
            )
        with open(path, "rb"):
            pass
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise CheckpointError(f"{what} {path} does not exist") from None
        raise CheckpointError(
            f"cannot read {what} {path}: {err.strerror or err}; make it readable (e.g. "
            f"chmod u+r) and run again: the file itself may well be sound"
        ) from None


def check_meta(
    path: Path, meta: dict[str, Any], run_id: str, round_: int, epochs: int | None = None
) -> None:
    """Refuse a checkpoint that is not of run ``run_id``, round ``round_``.

    With ``epochs`` (a progress file), its ``epoch`` must be a finished epoch of that round.
    """
    owner = meta.get("run_id")
    if owner != run_id:
        raise CheckpointError(
            f"checkpoint {path} belongs to run {_short(owner)}, not {run_id}; "
            f"it was copied from another run or damaged: delete it to recompute"
        )
    found = meta.get("round")
    if type(found) is not int or found != round_:
        raise CheckpointError(
            f"checkpoint {path} is for round {_short(found)}, not round {round_}; "
            f"delete it to recompute"
        )
    if epochs is None:
        return
    epoch, seconds = meta.get("epoch"), meta.get("seconds", 0.0)
    if type(epoch) is not int or not 0 <= epoch < epochs:
        raise CheckpointError(
            f"checkpoint {path} records epoch {_short(epoch)}, not one of 0..{epochs - 1} "
            f"of round {round_}; delete it to recompute"
        )
    if type(seconds) not in (int, float) or not 0 <= seconds < float("inf"):
        raise CheckpointError(
            f"checkpoint {path} records {_short(seconds)} seconds; delete it to recompute"
        )


def _short(value: Any) -> str:
    """A metadata value for an error line: its repr, cut short (it may be huge or nested)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def model_state(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights, buffers and masks of a model under ``model.`` and ``mask.`` keys."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"mask.{k}": v.bool() for k, v in masks.items()})
    return state


def optimizer_state(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Tensors of an optimizer's per-parameter state under ``opt.<index>.<name>`` keys."""
    out = {}
    for index, entry in opt.state_dict()["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                out[f"opt.{index}.{name}"] = value
    return out


def restore(
    path: Path,
    tensors: dict[str, torch.Tensor],
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer | None = None,
) -> None:
    """Load model weights, masks and (optionally) optimizer state saved by this module."""
    _check_tensors(path, tensors, model, masks)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {path} does not match the model ({first[-1].strip()[:160]}); "
            f"it belongs to another config: delete it or use its config"
        ) from None
    for name, mask in masks.items():
        saved = tensors.get(f"mask.{name}")
        if saved is None or saved.shape != mask.shape:
            raise CheckpointError(
                f"checkpoint {path} has no matching mask for {name}; delete it to recompute"
            )
        mask.copy_(saved.to(mask.device))
    if opt is not None:
        state = opt.state_dict()
        params = [p for group in opt.param_groups for p in group["params"]]
        entries: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = (key.split(".", 2) + ["", ""])[:3]
                if not index.isdigit() or int(index) >= len(params) or not name:
                    raise CheckpointError(
                        f"checkpoint {path} has an unknown optimizer entry {key!r}; "
                        f"delete it to recompute"
                    )
                if value.dim() > 0 and value.shape != params[int(index)].shape:
                    raise CheckpointError(
                        f"checkpoint {path} has optimizer state {key!r} of shape "
                        f"{tuple(value.shape)}, not {tuple(params[int(index)].shape)}; "
                        f"delete it to recompute"
                    )
                entries.setdefault(int(index), {})[name] = value
        state["state"] = entries
        try:
            opt.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(
                f"checkpoint {path} has unusable optimizer state ({err}); delete it to recompute"
            ) from None


def _check_tensors(
    path: Path, tensors: dict[str, torch.Tensor], model: nn.Module, masks: dict[str, torch.Tensor]
) -> None:
    """Refuse unknown tensor names, wrong dtypes, non-boolean masks and non-finite weights."""
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    expected.update({f"mask.{k}": v for k, v in masks.items()})
    for key, value in tensors.items():
        if key.startswith("opt."):
            continue
        want = expected.get(key)
        if want is None:
            if key.startswith("model."):
                continue  # load_state_dict names the unexpected weight
            raise CheckpointError(
                f"checkpoint {path} holds an unknown tensor {key!r}; it belongs to another "
                f"config: delete it or use its config"
            )
        dtype = torch.bool if key.startswith("mask.") else want.dtype
        if value.dtype != dtype:
            raise CheckpointError(
                f"checkpoint {path} stores {key!r} as {value.dtype}, not {dtype}; "
                f"delete it to recompute"
            )
        if value.is_floating_point() and not bool(value.isfinite().all()):
            raise CheckpointError(
                f"checkpoint {path} has non-finite values in {key!r} (a diverged or damaged "
                f"run); delete it to recompute"
            )


def mask_sparsity(tensors: dict[str, torch.Tensor]) -> float:
    """Fraction of prunable weights that the masks of a checkpoint remove."""
    masks = [v for k, v in tensors.items() if k.startswith("mask.")]
    total = sum(m.numel() for m in masks)
    return 1.0 - sum(int(m.sum()) for m in masks) / total if total else 0.0
