"""Does caching the teacher's outputs pay? A distilled round timed with and without, one process.

    python bench/teacher_cache.py [--setting lenet --setting demo] [--epochs 3] [--repeats 3]

Without augmentation a distilled run computes its teacher's logits once per training image and
reuses them (``training/teacher_cache.py``); without the cache the teacher runs on every batch.
For each setting, a student and its teacher (a dense model of the same architecture, frozen;
random weights: a forward pass costs the same whatever they are) train ``--epochs`` epochs of
one round with the one masked ``Trainer``, with the cache and without, interleaved over
``--repeats`` repeats after one untimed warm-up of each (torch.compile, allocator). Each cached
round starts with a fresh teacher, so its time includes filling the cache (which a run pays once
for all its rounds). Prints the median wall and CPU seconds (this process's, less sensitive to a
shared machine's load) per round of each and their ratios, then one JSON line. Settings:
``lenet``, LeNet-300-100 on 5,000 Fashion-MNIST images as docs/science.md's remedies
measurement (the ``lenet-mnist`` preset); ``demo``, the demo's small ViT (the ``demo`` preset,
its precision and compile as it resolves them here). Nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsedd.components import resolve_config  # noqa: E402
from sparsedd.config import Config  # noqa: E402
from sparsedd.data.datasets import load_dataset, make_splits  # noqa: E402
from sparsedd.models.base import InputSpec, create_model  # noqa: E402
from sparsedd.provenance import cpu_name  # noqa: E402
from sparsedd.training.prune import full_masks  # noqa: E402
from sparsedd.training.teacher import frozen  # noqa: E402
from sparsedd.training.trainer import Trainer, resolve_device, steps_per_epoch  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
SETTINGS = {
    "lenet": (
        "lenet-mnist",
        ["dataset=fashion-mnist", "train_size=5000", "val_size=1000", f"data_dir={DATA}"],
    ),
    "demo": ("demo", [f"data_dir={DATA}"]),
}


def setting_config(name: str) -> Config:
    """The distilled config of setting ``name`` (remedy=distill, no augmentation)."""
    preset, assignments = SETTINGS[name]
    return resolve_config(preset, assignments=[*assignments, "remedy=distill", "augment=none"])


def time_round(
    cfg: Config,
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    splits: Any,
    epochs: int,
    cache: bool,
) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, every thread's) to train ``epochs`` epochs of one
    distilled round from ``student``'s weights."""
    device = resolve_device(cfg.device)
    model = copy.deepcopy(student)
    trainer = Trainer(
        model, full_masks(model), cfg, device, teacher=copy.deepcopy(teacher), cache_teacher=cache
    )
    trainer.refresh_masks()
    per_epoch = steps_per_epoch(len(splits.train_y), cfg.batch_size)
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        trainer.train_epoch(
            splits.train_x,
            splits.train_y,
            epoch,
            False,
            splits.mean,
            splits.std,
            epoch * per_epoch,
            epochs * per_epoch,
        )
    return time.perf_counter() - start, time.process_time() - cpu


def measure(name: str, epochs: int, repeats: int) -> dict[str, Any]:
    """Median seconds per round with and without the cache, and their ratio."""
    cfg = setting_config(name)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(cfg)
    splits = make_splits(data, cfg).to(resolve_device(cfg.device))
    spec = InputSpec(data.channels, data.image_size, data.num_classes)
    torch.manual_seed(0)
    student = create_model(cfg, spec)
    teacher = frozen(create_model(cfg, spec))
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for cache in (False, True):  # warm-up, untimed
        time_round(cfg, student, teacher, splits, 1, cache)
    for _ in range(repeats):
        for cache in (False, True):
            times[cache].append(time_round(cfg, student, teacher, splits, epochs, cache))
    uncached = statistics.median(t for t, _ in times[False])
    cached = statistics.median(t for t, _ in times[True])
    cpu_uncached = statistics.median(c for _, c in times[False])
    cpu_cached = statistics.median(c for _, c in times[True])
    return {
        "setting": name,
        "model": cfg.model,
        "train_images": len(splits.train_y),
        "epochs": epochs,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "uncached_s": round(uncached, 3),
        "cached_s": round(cached, 3),
        "ratio": round(uncached / cached, 3),
        "cpu_uncached_s": round(cpu_uncached, 3),
        "cpu_cached_s": round(cpu_cached, 3),
        "cpu_ratio": round(cpu_uncached / cpu_cached, 3),
        "all_uncached_s": [round(t, 3) for t, _ in times[False]],
        "all_cached_s": [round(t, 3) for t, _ in times[True]],
    }


def main() -> None:
    """Measure each setting asked for; print a line each, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = []
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads")
    for name in args.setting or ["lenet", "demo"]:
        r = measure(name, args.epochs, args.repeats)
        results.append(r)
        print(
            f"{name}: a distilled round of {r['epochs']} epochs on {r['train_images']} images, "
            f"median of {r['repeats']}: {r['uncached_s']:.2f} s without the cache, "
            f"{r['cached_s']:.2f} s with it: {r['ratio']:.2f}x (CPU time {r['cpu_uncached_s']:.2f} "
            f"s and {r['cpu_cached_s']:.2f} s: {r['cpu_ratio']:.2f}x)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
