"""Checkpoints as safetensors files: atomic writes, safe reads, model/mask/optimizer state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sparsedd import atomic
from sparsedd.atomic import atomic_write
from sparsedd.errors import CheckpointError

OUT_FIX = "free space or choose a writable --out folder"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see old or new, never half."""
    # safetensors reports a full disk as its own error
    atomic_write(path, write, OUT_FIX, errors=(OSError, SafetensorError))


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    atomic.atomic_write_text(path, text, OUT_FIX)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors and JSON-able metadata to ``path`` atomically."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    info = {"sparsedd": json.dumps(meta)}
    atomic_write_bytes(path, lambda tmp: save_file(flat, tmp, metadata=info))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a safetensors file; CheckpointError if unreadable."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("sparsedd", "{}"))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({err}); delete it to recompute"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has corrupt metadata; delete it to recompute")
    return tensors, meta


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
