"""Synthetic curves of known shape, for tests, the docs and the verdict's calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparsedd.analysis.load import rows_to_frame

SHAPES = ("sdd", "flat", "gain", "decline", "fall-plateau", "plateau-rise", "one-round")
#: How a seed's own training noise runs over rounds (``simulate_curves``).
NOISE_KINDS = ("independent", "ar0.5", "ar0.8", "random-walk", "growing")
#: Round of the centre of the ``sdd`` dip and of the ``one-round`` dip (u = 0.6 at rate 0.2).
DIP_ROUND = 6


def clean_curve(
    shape: str,
    depth: float,
    rounds: int,
    rate: float = 0.2,
    dip_shift: float = 0.0,
    collapse_shift: float = 0.0,
) -> np.ndarray:
    """Noise-free test accuracy of ``shape`` over rounds 0..``rounds`` (pruning ``rate``).

    Shapes over u = −log10(1 − sparsity): ``sdd`` a dip of ``depth`` around u = 0.6 and full
    recovery (``one-round``: the dip at round DIP_ROUND alone); ``flat`` no dip; ``gain`` a
    monotone rise of ``depth`` (pruning helps, no dip); ``decline`` a steady fall of ``depth``;
    ``fall-plateau`` a fall of ``depth`` by u = 0.6, then flat; ``plateau-rise`` flat to
    u = 0.6, then a rise of ``depth`` by u = 1.2. All start at 80% and end in a collapse near
    u = 2. ``dip_shift`` and ``collapse_shift`` move the dip and the collapse by that many
    rounds (a seed's own timing).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    k = np.arange(rounds + 1)
    step = -np.log10(1 - rate)
    u = k * step
    collapse = 0.6 / (1 + np.exp(-(u - 2.0 - collapse_shift * step) / 0.08))
    ramp = np.clip((u - 0.1) / 0.5, 0.0, 1.0)
    bend = {
        "sdd": lambda: -depth * np.exp(-(((u - 0.6 - dip_shift * step) / 0.25) ** 2)),
        "one-round": lambda: -depth * (k == round(DIP_ROUND + dip_shift)),
        "flat": lambda: 0 * u,
        "gain": lambda: depth * np.minimum(u / 1.5, 1.0),
        "decline": lambda: -depth * np.minimum(u / 1.5, 1.0),
        "fall-plateau": lambda: -depth * ramp,
        "plateau-rise": lambda: depth * np.clip((u - 0.6) / 0.6, 0.0, 1.0),
    }[shape]()
    return 0.80 + bend - collapse


def own_noise(kind: str, sd: np.ndarray, n_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """(seeds × rounds) training noise of ``kind`` whose SD at round k is about ``sd[k]``:
    independent; AR(1) with ρ 0.5 or 0.8 (each round starts from the last one's weights); a
    random walk (its SD at round 10 is ``sd[10]``, growing as √k); ``growing``: independent,
    SD rising linearly to 4 × ``sd`` at round 20 (the collapse) and beyond."""
    shape = (n_seeds, len(sd))
    white = rng.standard_normal(shape)
    if kind == "independent":
        return white * sd
    if kind in ("ar0.5", "ar0.8"):
        rho = float(kind[2:])
        out = np.empty(shape)
        out[:, 0] = white[:, 0]
        for k in range(1, shape[1]):
            out[:, k] = rho * out[:, k - 1] + math.sqrt(1 - rho**2) * white[:, k]
        return out * sd
    if kind == "random-walk":
        return np.cumsum(white, axis=1) * sd / math.sqrt(10)
    if kind == "growing":
        return white * sd * (1 + 3 * np.minimum(np.arange(shape[1]) / 20, 1.0))
    raise ValueError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")


def synthetic_rounds(
    shape: str = "sdd",
    depth: float = 0.08,
    noise_sd: float = 0.005,
    n_seeds: int = 3,
    rounds: int = 25,
    seed: int = 0,
    n_test: int | None = 10_000,
    collapsed_from: int | Sequence[int | None] | None = None,
    **config: Any,
) -> pd.DataFrame:
    """A rounds DataFrame of one synthetic curve with known shape (``clean_curve``).

    Each seed adds independent Gaussian noise of ``noise_sd`` to every round; with ``n_test``
    (10,000 by default, as the demo's test set; None: not recorded) its accuracy is then that of
    a binomial draw of ``n_test`` test images (recorded as the ``n_test`` column). ``config``
    keys become columns. ``collapsed_from``: the round from which every seed's run (or, as a
    list, each seed's: None for one that never stops) stopped as collapsed, as the training's
    collapse stop records it: those rounds are rows with ``collapsed`` 1 and no metrics (the
    frame then has a ``collapsed`` column). The random draws are the same with or without it.
    """
    stops = _stops(collapsed_from, n_seeds)
    rng = np.random.default_rng(seed)
    clean = clean_curve(shape, depth, rounds)
    sparsity = 1 - 0.8 ** np.arange(rounds + 1)
    u = -np.log10(1 - sparsity)
    memo = 0.9 / (1 + np.exp((u - 0.9) / 0.15))
    base = {"model": "synthetic", "dataset": "synthetic", "noise": 0.2, "weight_decay": 0.0}
    rows = []
    for s in range(n_seeds):
        acc = np.clip(clean + rng.normal(0, noise_sd, len(u)), 0, 1)
        if n_test:
            acc = rng.binomial(n_test, acc) / n_test
        for k in range(rounds + 1):
            row = {
                **base,
                **config,
                "seed": s,
                "run_id": f"{shape}-{seed}-{config}-{s}",
                "round": k,
                "sparsity": float(sparsity[k]),
                "test_acc": float(acc[k]),
                "n_test": n_test,
                "memorization": float(np.clip(memo[k] + rng.normal(0, noise_sd), 0, 1)),
                "val_acc": float(np.clip(acc[k] + rng.normal(0, noise_sd), 0, 1)),
            }
            if collapsed_from is not None:
                stopped = stops[s] is not None and k >= stops[s]
                row["collapsed"] = int(stopped)
                if stopped:
                    row.update(test_acc=None, memorization=None, val_acc=None)
            rows.append(row)
    return rows_to_frame(rows)


def _stops(collapsed_from: int | Sequence[int | None] | None, n_seeds: int) -> list[int | None]:
    """Per seed, the round its run stopped as collapsed from (None: never)."""
    if collapsed_from is None or isinstance(collapsed_from, int):
        stops = [collapsed_from] * n_seeds
    else:
        stops = list(collapsed_from)
    if len(stops) != n_seeds:
        raise ValueError(f"collapsed_from names {len(stops)} seeds, the curve has {n_seeds}")
    if any(k is not None and k < 1 for k in stops):
        raise ValueError("a run can stop as collapsed from round 1 at the earliest")
    return stops


def simulate_curves(
    shape: str,
    depth: float,
    noise: float,
    n_seeds: int,
    n_test: int,
    rng: np.random.Generator,
    n_val: int | None = None,
    rounds: int = 34,
    seed_offset: float = 0.01,
    noise_kind: str = "independent",
    dip_shift: int = 0,
    collapse_jitter: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(test, validation) accuracy, each (seeds × rounds+1), of ``clean_curve(shape, depth)``
    as a study measures it (validation None without ``n_val``).

    ``noise`` is the per-round noise of one seed's test accuracy (its standard deviation), made
    of the test set's binomial noise √(p(1−p)/n), which every seed shares (one test set), and
    the seed's own training noise (of ``noise_kind``, see ``own_noise``), which makes up the rest
    (none when the binomial part alone exceeds ``noise``). Each seed also sits ``seed_offset``
    (s.d.) above or below the others all along, its dip moved by a whole number of rounds drawn
    from −``dip_shift``..``dip_shift`` and its collapse by one from −``collapse_jitter``..
    ``collapse_jitter`` (seeds breaking down at their own rounds). A seed's validation accuracy
    has the same training noise and level, and the binomial noise of its own ``n_val`` held-out
    images (drawn per seed). Accuracies are multiples of 1/n.
    """
    dips = rng.integers(-dip_shift, dip_shift + 1, n_seeds)
    ends = rng.integers(-collapse_jitter, collapse_jitter + 1, n_seeds)
    clean = np.stack([clean_curve(shape, depth, rounds, dip_shift=float(d), collapse_shift=float(e))
                      for d, e in zip(dips, ends, strict=True)])  # fmt: skip
    flat = clean_curve("flat", 0.0, rounds)
    binomial = np.sqrt(flat * (1 - flat) / n_test)
    own = np.sqrt(np.clip(noise**2 - binomial**2, 0, None))
    model = (
        clean + rng.normal(0, seed_offset, (n_seeds, 1)) + own_noise(noise_kind, own, n_seeds, rng)
    )
    test = np.clip(model + rng.normal(0, 1, flat.shape) * binomial, 0, 1)
    test = np.round(test * n_test)
    if n_val is None:
        return test / n_test, None
    val_noise = rng.normal(0, 1, model.shape) * np.sqrt(clean * (1 - clean) / n_val)
    return test / n_test, np.round(np.clip(model + val_noise, 0, 1) * n_val) / n_val
