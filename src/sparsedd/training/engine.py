"""The round loop's rules that hold no run: how a stop is asked for, the seeds of a round's
random draws, when progress is saved, and what divergence and running out of memory say.

The round loop itself is :meth:`sparsedd.training.experiment.Experiment.run`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from sparsedd.config import Config
from sparsedd.errors import ResourceError


@dataclass
class StopFlag:
    """Set from a signal handler; the run stops at the next epoch boundary."""

    requested: bool = False


def derive_seed(*parts: int | str) -> int:
    """A seed for one (run seed, round, epoch, …) combination, stable across platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:15], 16)


def save_due(cfg: Config, epoch: int, since_save: float) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a progress save: every ``checkpoint_every``
    epochs, once ``checkpoint_seconds`` have passed since the last save (bounded cost)."""
    return (epoch + 1) % cfg.checkpoint_every == 0 and since_save >= cfg.checkpoint_seconds


def diverged_message(cfg: Config, run: str, k: int, where: str) -> str:
    """One line saying where a run diverged and which key to lower: weight_decay where
    λ·lr ≥ 1 (every step then shrinks each weight past zero), else lr."""
    if cfg.weight_decay * cfg.lr >= 1:
        return (
            f"run {run} diverged in round {k}, {where}: the training loss or a weight is not "
            f"finite; nothing is recorded for round {k}; config key 'weight_decay' "
            f"({cfg.weight_decay:g}) times 'lr' ({cfg.lr:g}) is ≥ 1, so every step pushes each "
            f"weight past zero: lower weight_decay below {1 / cfg.lr:g}"
        )
    return (
        f"run {run} diverged in round {k}, {where}: the training loss or a weight is not finite; "
        f"nothing is recorded for round {k}; lower config key 'lr' (now {cfg.lr:g}), "
        f"e.g. --set lr={cfg.lr / 10:g}"
    )


@contextmanager
def out_of_memory_hint(key: str, value: object) -> Iterator[None]:
    """Turn running out of (GPU or CPU) memory into a ResourceError naming the key to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ResourceError(_oom_message("GPU", key, value)) from None
    except RuntimeError as err:
        if "can't allocate memory" not in str(err) and "out of memory" not in str(err):
            raise
        raise ResourceError(_oom_message("CPU", key, value)) from None


def _oom_message(where: str, key: str, value: object) -> str:
    if isinstance(value, int) and value > 1:
        how = f"lower config key {key!r} (now {value}), e.g. --set {key}={value // 2}"
    else:
        how = f"choose a smaller config key {key!r} (now {value!r})"
    return (
        f"out of {where} memory; {how}; progress up to the last saved epoch is kept, "
        f"re-run to resume"
    )
