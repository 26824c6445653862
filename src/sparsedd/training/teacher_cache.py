"""A distilled run's teacher outputs, computed once per training image where batches are not
augmented.

Without augmentation a training image is the same tensor in every epoch and round, and the
frozen teacher (eval mode) maps it to the same logits: they are computed once, indexed by
sample, and each epoch's batches take theirs in the epoch's seeded order. With augmentation
every batch is new and the teacher runs on it (``trainer.teacher_logits``). The logits are
kept per teacher and per training tensor, so every round of a run reuses them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from sparsedd.data.batches import channel_stats, epoch_order, eval_batches

#: Batches of the one pass that fills the cache (inference only: any size gives the logits).
FILL_BATCH = 512


@dataclass
class _Cached:
    images: weakref.ref[torch.Tensor]  # the training tensor the logits are of
    stats: tuple[tuple[float, ...], tuple[float, ...]]
    logits: torch.Tensor


_CACHES: weakref.WeakKeyDictionary[nn.Module, _Cached] = weakref.WeakKeyDictionary()


def epoch_teacher_logits(
    teacher: nn.Module | None,
    x: torch.Tensor,
    seed: int,
    augment: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    autocast: Callable[[], AbstractContextManager],
) -> Iterator[torch.Tensor] | None:
    """The teacher's logits of each batch of the epoch ``seed`` draws, in order, from the
    cache; None where there is no teacher or the batches are augmented (then the teacher runs
    on each batch)."""
    if teacher is None or augment:
        return None
    logits = sample_logits(teacher, x, mean, std, autocast)
    order, _ = epoch_order(len(x), seed)
    order = order.to(logits.device)
    return iter(logits.index_select(0, order).split(batch_size))


@torch.no_grad()
def sample_logits(
    teacher: nn.Module,
    x: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    autocast: Callable[[], AbstractContextManager],
) -> torch.Tensor:
    """The frozen teacher's logits (fp32) of every image of ``x``, in order: computed on the
    first call for this teacher and tensor, then reused."""
    cached = _CACHES.get(teacher)
    if cached is not None and cached.images() is x and cached.stats == (mean, std):
        return cached.logits
    teacher.eval()  # DSD²'s teacher_model.eval(): its BatchNorm and dropout never train
    mean_t, std_t = channel_stats(mean, x.device), channel_stats(std, x.device)
    outs = []
    for xb in eval_batches(x, FILL_BATCH, mean_t, std_t):
        with autocast():
            outs.append(teacher(xb).float())
    logits = torch.cat(outs)
    _CACHES[teacher] = _Cached(weakref.ref(x), (mean, std), logits)
    return logits
