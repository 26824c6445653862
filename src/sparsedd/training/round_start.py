"""The state a pruning round starts from: checks on restored masks, and the pruning step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.criteria import CRITERIA
from sparsedd.data.datasets import Splits
from sparsedd.errors import CheckpointError
from sparsedd.store import checkpoint as ckpt
from sparsedd.training.prune import Masks, count_total, prunable_parameters, prune_round
from sparsedd.training.trainer import Trainer


def check_mask_sparsity(
    path: Path,
    tensors: dict[str, torch.Tensor],
    k: int,
    masks: Masks,
    recorded_sparsity: Callable[[int], float | None],
    prune_rate: float,
    exact: bool = False,
) -> None:
    """Refuse masks that disagree with the recorded rounds of a run.

    A round checkpoint's masks give exactly the sparsity recorded for its round (``exact``);
    a progress file of round k prunes at least as much as round k - 1 did (none in round 0).
    ``recorded_sparsity(k)`` is the sparsity recorded for round k (None: not recorded).
    """
    found = ckpt.mask_sparsity(tensors)
    tolerance = 0.5 / max(1, count_total(masks))
    if exact:
        recorded = recorded_sparsity(k)
        expected = found if recorded is None else recorded
        ok = abs(found - expected) <= tolerance
    elif k == 0:
        expected, ok = 0.0, found <= tolerance
    else:  # round k prunes rate of what round k - 1 kept (rounded per layer at most)
        previous = recorded_sparsity(k - 1) or 0.0
        expected = 1 - (1 - previous) * (1 - prune_rate)
        slack = len(masks) * 2 * tolerance
        ok = previous - tolerance <= found <= expected + slack
    if not ok:
        raise CheckpointError(
            f"checkpoint {path} has masks of sparsity {found:.4%}, but round {k} of this run "
            f"stands at {expected:.4%}; delete it to recompute"
        )


def prune_masks(
    model: nn.Module,
    masks: Masks,
    kept_dense: set[str],
    cfg: Config,
    seed: int,
    trainer: Trainer,
    splits: Splits,
) -> None:
    """Prune ``cfg.prune_rate`` of the remaining weights into ``masks`` (in place)."""
    # Layers kept dense keep their all-ones masks; the rate applies to the other weights.
    weights = {n: w for n, w in prunable_parameters(model).items() if n not in kept_dense}
    grads = None
    if CRITERIA.get(cfg.prune_criterion).needs_gradients:
        grads = loss_gradients(model, trainer, splits)
    new = prune_round(
        {n: w.detach() for n, w in weights.items()},
        masks,
        cfg.prune_rate,
        cfg.prune_scope,
        cfg.prune_criterion,
        seed=seed,
        gradients=grads,
    )
    for name, mask in new.items():
        masks[name].copy_(mask)


def loss_gradients(model: nn.Module, trainer: Trainer, splits: Splits) -> dict[str, torch.Tensor]:
    """Gradient of the training loss (first 2,048 samples) for gradient-based criteria."""
    model.zero_grad(set_to_none=True)
    model.eval()
    n = min(2048, len(splits.train_y))
    logits = trainer.predict_with_grad(splits.train_x[:n], splits.mean, splits.std)
    F.cross_entropy(logits, splits.train_y[:n]).backward()
    grads = {name: p.grad.detach().clone() for name, p in prunable_parameters(model).items()}
    model.zero_grad(set_to_none=True)
    return grads
