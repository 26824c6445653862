"""The collapse stop: when a pruned run has collapsed, its later rounds are not trained.

A run has collapsed after trained round k ≥ 1 when no prunable weight is left (every mask of
the prunable layers not kept dense is all zero), or when its test accuracy has sat at a constant
prediction's for ``collapse_rounds`` consecutive pruned rounds: |acc − p0| ≤ 2·sqrt(p0(1−p0)/n)
with p0 the largest class's share of the n test images. Training such a run further only
repeats that accuracy; its remaining rounds are recorded as *collapsed* rows instead (metrics
NULL, epochs 0, the sparsity each round would have had), and no checkpoint is written for them.

A control run (``pruning: false``) never collapses; it *settles*: after trained round k ≥
``settle_rounds``, its test accuracy and its memorization (of the wrong training labels) in
each of its last ``settle_rounds`` rounds (k ≥ 1) lie within one binomial standard deviation
sqrt(m(1−m)/n) of their mean m (n: test images, resp. wrong labels; m taken within 1%..99%
so that a memorization at 100% can settle). Both, because a test accuracy can pause while
memorization still climbs and then fall again (measured: docs/science.md). Training it
further only repeats that accuracy; its remaining rounds are recorded by the same rows
(flagged ``collapsed`` in the store, said *settled*), and analysis extends it by its settled
value.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import torch

from sparsedd.config import Config
from sparsedd.store.round_record import RoundRecord

#: (test accuracy, layer density, memorization) of one trained round: what the rules read of
#: it (tests may give the first two only).
Outcome = tuple[float | None, dict[str, float], float | None]


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
    if len(window) == rounds and all(a is not None and at_constant(a, p0, n) for a, *_ in window):
        what = "round" if rounds == 1 else f"{rounds} rounds"
        return f"test accuracy at a constant prediction's {p0:.2%} for {what}"
    return None


def within_noise(values: Sequence[float | None], n: int) -> tuple[float, float] | None:
    """(mean m, binomial SD) of ``values`` (rates on ``n`` items) when each lies within one
    SD sqrt(m(1−m)/n) of m, m taken within 1%..99%; else None."""
    if n <= 0 or not values or any(v is None for v in values):
        return None
    mean = sum(values) / len(values)  # type: ignore[arg-type]
    p = min(max(mean, 0.01), 0.99)
    sd = math.sqrt(p * (1 - p) / n)
    return (mean, sd) if all(abs(v - mean) <= sd for v in values) else None  # type: ignore[operator]


def settled_reason(trained: Sequence[Outcome], n: int, n_noisy: int, rounds: int) -> str | None:
    """Why a control run has settled, or None: over its last ``rounds`` trained rounds (k ≥ 1,
    in order, in ``trained``), its test accuracy on ``n`` images and its memorization of
    ``n_noisy`` wrong labels (when it has any) each stay within the noise of their mean."""
    window = trained[-rounds:]
    if len(window) < rounds:
        return None
    test = within_noise([o[0] for o in window], n)
    if test is None:
        return None
    if n_noisy and within_noise([o[2] if len(o) > 2 else None for o in window], n_noisy) is None:
        return None
    mean, sd = test
    return f"test accuracy within {sd:.2%} of its mean {mean:.2%} for {rounds} rounds"


def stop_reason(
    cfg: Config,
    trained: Sequence[Outcome],
    kept_dense: Collection[str],
    test_y: torch.Tensor,
    n_noisy: int,
) -> str | None:
    """Why a run stops after its last trained round in ``trained`` (its rounds k ≥ 1): a
    pruned run that collapsed, a control (``pruning`` false) that settled; else None.
    ``n_noisy``: the training images whose label is wrong."""
    n = len(test_y)
    if not cfg.pruning:
        return settled_reason(trained, n, n_noisy, cfg.settle_rounds)
    return collapse_reason(trained, kept_dense, constant_accuracy(test_y), n, cfg.collapse_rounds)


def stopped_word(cfg: Config) -> str:
    """What a stopped run's remaining rounds are called: 'settled' (a control), 'collapsed'."""
    return "collapsed" if cfg.pruning else "settled"


#: What a collapsed round has not measured (None in its record).
_MEASURED = ("test_acc", "test_loss", "train_acc", "train_acc_clean", "memorization", "val_acc")


def collapsed_rows(
    last: int,
    last_sparsity: float,
    upto: range,
    prune_rate: float,
    weights: tuple[int, int, int],
    n_test: int,
    provenance: dict[str, Any],
) -> list[RoundRecord]:
    """The records of rounds ``upto`` of a run that collapsed after trained round ``last``.

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
            RoundRecord(
                round=k,
                sparsity=1 - left / total if total else 0.0,
                params_remaining=int(params - total + round(left)),
                **dict.fromkeys(_MEASURED),
                epochs=0,
                seconds=0.0,
                layer_density={},
                **provenance,
                execution=None,
                n_test=n_test,
                collapsed=True,
            )
        )
    return rows
