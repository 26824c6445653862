"""Does batching λ pay? K runs of the demo that differ only in λ, one by one against batched.

Run from the project root::

    nice -n 5 python bench/batched_lambdas.py [--lambdas 0,1,2] [--epochs 2] [--repeats 3]

Both ways train the same models (same initial weights, full masks) on the demo's data, epoch
for epoch, interleaved over ``--repeats``; the medians give the ratio (one by one ÷ batched, so
above 1 means batching pays). "One by one" is what a sweep runs: each run's own ``Trainer`` on
the path its config resolves to on this device (``precision`` and ``compile`` at ``auto``:
bf16 + torch.compile on a CPU with native bf16). "Batched" is the ``BatchedTrainer``
(``torch.vmap``, eager). A second line compares the two in fp32 eager, the same arithmetic.
Compilation is warmed up before timing and left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from sparsedd.training.batched import BatchedTrainer

from sparsedd.components import resolve_config
from sparsedd.config import Config
from sparsedd.data.datasets import load_dataset, make_splits
from sparsedd.models.base import InputSpec, create_model
from sparsedd.provenance import cpu_name
from sparsedd.training.prune import full_masks
from sparsedd.training.trainer import Trainer, resolve_device, steps_per_epoch


def models_of(cfg: Config, spec: InputSpec, k: int, device: torch.device) -> list:
    """K copies of the model from the config's seed, with full masks."""
    out = []
    for _ in range(k):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg, spec).to(device)
        out.append((model, full_masks(model)))
    return out


def compare(cfg: Config, lambdas: list[float], epochs: int, repeats: int) -> dict:
    """Seconds per round of ``epochs`` epochs: the K runs one by one, and batched."""
    device = resolve_device(cfg.device)
    data = load_dataset(cfg)
    splits = make_splits(data, cfg).to(device)
    spec = InputSpec(data.channels, data.image_size, data.num_classes)
    cfgs = [dataclasses.replace(cfg, weight_decay=lam) for lam in lambdas]
    singles = []
    for (model, masks), c in zip(models_of(cfg, spec, len(cfgs), device), cfgs, strict=True):
        trainer = Trainer(model, masks, c, device)
        trainer.refresh_masks()
        singles.append(trainer)
    pairs = models_of(cfg, spec, len(cfgs), device)
    batched = BatchedTrainer([m for m, _ in pairs], [mk for _, mk in pairs], cfgs, device)
    x, y = splits.train_x, splits.train_y
    augment = cfg.augment == "flip_crop"
    total = epochs * steps_per_epoch(len(y), cfg.batch_size)

    def epoch(trainer, seed: int) -> None:
        trainer.train_epoch(x, y, seed, augment, splits.mean, splits.std, 0, total)

    for t in [*singles, batched]:  # warm-up: compilation and first-call costs left out
        epoch(t, 0)
    one_by_one, together = [], []
    for r in range(repeats):
        start = time.perf_counter()
        for t in singles:
            for e in range(epochs):
                epoch(t, 1 + r * epochs + e)
        one_by_one.append(time.perf_counter() - start)
        start = time.perf_counter()
        for e in range(epochs):
            epoch(batched, 1 + r * epochs + e)
        together.append(time.perf_counter() - start)
    sep, bat = statistics.median(one_by_one), statistics.median(together)
    return dict(
        execution=singles[0].execution,
        batched_execution=batched.execution,
        one_by_one_s=sep,
        batched_s=bat,
        ratio=sep / bat,
    )


def main() -> None:
    """Print one line per comparison: the default path, then fp32 eager."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lambdas", default="0,1,2", help="the K weight decays (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed round (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lambdas = [float(v) for v in args.lambdas.split(",")]
    print(
        f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s); demo, K = "
        f"{len(lambdas)} (λ = {args.lambdas}), {args.epochs} epochs, median of {args.repeats}"
    )
    for label, sets in (("default path", []), ("fp32 eager", ["precision=fp32", "compile=false"])):
        cfg = resolve_config("demo", None, sets)
        r = compare(cfg, lambdas, args.epochs, args.repeats)
        print(
            f"{label:>12}: one by one ({r['execution']}) {r['one_by_one_s']:.2f} s, batched "
            f"({r['batched_execution']}) {r['batched_s']:.2f} s: batched is "
            f"{r['ratio']:.2f}× as fast"
        )


if __name__ == "__main__":
    main()
