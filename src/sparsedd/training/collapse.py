"""The collapse stop: when a pruned run has collapsed, its later rounds are not trained.

A run has collapsed after trained round k ≥ 1 when no prunable weight is left (every mask of
the prunable layers not kept dense is all zero), or when its test accuracy has sat at a constant
prediction's for ``collapse_rounds`` consecutive pruned rounds: |acc − p0| ≤ 2·sqrt(p0(1−p0)/n)
with p0 the largest class's share of the n test images. Training such a run further only
repeats that accuracy; its remaining rounds are recorded as *collapsed* rows instead (metrics
NULL, epochs 0, the sparsity each round would have had), and no checkpoint is written for them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import torch

#: (test accuracy, layer density) of one trained round: what the rule reads of it.
Outcome = tuple[float | None, dict[str, float]]


def constant_accuracy(test_labels: torch.Tensor) -> float:
    """Test accuracy of always predicting the most frequent class: its share of the test set."""
    if not test_labels.numel():
        return 0.0
    return float(torch.bincount(test_labels.flatten().cpu()).max()) / test_labels.numel()


def at_constant(acc: float, p0: float, n: int) -> bool:
    """Whether accuracy ``acc`` on ``n`` images is within binomial noise (two standard
    deviations) of a constant prediction's accuracy ``p0``."""
    return n > 0 and abs(acc - p0) <= 2 * math.sqrt(p0 * (1 - p0) / n)


def collapse_reason(
    pruned: Sequence[Outcome], kept_dense: Collection[str], p0: float, n: int, rounds: int
) -> str | None:
    """Why a run has collapsed, or None when it has not.

    ``pruned`` holds the outcomes of the run's trained pruning rounds (k ≥ 1) in round order,
    the round just trained last; ``kept_dense`` names layers the run never prunes; ``p0`` and
    ``n`` are the constant prediction's accuracy and the test set's size; ``rounds`` is config
    key ``collapse_rounds``.
    """
    if not pruned:
        return None
    density = pruned[-1][1]
    prunable = [d for name, d in density.items() if name not in kept_dense]
    if prunable and all(d == 0 for d in prunable):
        return "no prunable weight is left"
    window = pruned[-rounds:]
    if len(window) == rounds and all(a is not None and at_constant(a, p0, n) for a, _ in window):
        what = "round" if rounds == 1 else f"{rounds} rounds"
        return f"test accuracy at a constant prediction's {p0:.2%} for {what}"
    return None


def collapsed_rows(
    last: int,
    last_sparsity: float,
    upto: range,
    prune_rate: float,
    weights: tuple[int, int, int],
    n_test: int,
    provenance: dict[str, Any],
) -> list[dict[str, Any]]:
    """The rows of rounds ``upto`` of a run that collapsed after trained round ``last``.

    Each has the sparsity its round would have had, 1 − (1 − s_last)·(1 − rate)^(k − last)
    over the prunable weights not kept dense; ``weights`` is (parameters of the model, prunable
    weights, of them kept dense). Nothing was measured: metrics are None, epochs 0.
    """
    params, total, kept = weights
    remaining = total * (1 - last_sparsity)
    rows = []
    for k in upto:
        left = kept + max(0.0, remaining - kept) * (1 - prune_rate) ** (k - last)
        rows.append(
            {
                "round": k,
                "sparsity": 1 - left / total if total else 0.0,
                "params_remaining": int(params - total + round(left)),
                "test_acc": None,
                "test_loss": None,
                "train_acc": None,
                "train_acc_clean": None,
                "memorization": None,
                "val_acc": None,
                "epochs": 0,
                "seconds": 0.0,
                "n_test": n_test,
                "activation_entropy": None,
                "test_correct": None,
                "layer_density": {},
                **provenance,
                "execution": None,
                "collapsed": True,
            }
        )
    return rows


def span(first: int, last: int) -> str:
    """Rounds ``first``..``last`` as words: 'round 5' or 'rounds 5..12'."""
    return f"round {first}" if first == last else f"rounds {first}..{last}"
