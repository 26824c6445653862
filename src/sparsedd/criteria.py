"""Pruning criteria: registered components that score weights for pruning.

The lowest-scored surviving weights are pruned first (``training/prune.py`` applies them). A
new criterion is one registration, here or in any imported module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sparsedd.registry import Registry


@dataclass(frozen=True)
class Criterion:
    """Scores weights: the lowest-scored surviving weights are pruned first.

    ``score(weights, gradients, generator)``; ``needs_gradients``: the run computes the
    gradients of the training loss before pruning and passes them (else None).
    """

    score: Callable[[torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor]
    needs_gradients: bool = False


CRITERIA: Registry[Criterion] = Registry("pruning criterion")
CRITERIA.register("magnitude")(Criterion(lambda w, g, gen: w.abs()))
CRITERIA.register("random")(Criterion(lambda w, g, gen: torch.rand(w.shape, generator=gen)))
# He et al.'s gradient criterion: first-order estimate of the loss change |w · ∂L/∂w|.
CRITERIA.register("gradient")(Criterion(lambda w, g, gen: (w * g).abs(), needs_gradients=True))
