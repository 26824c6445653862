"""Our training path against a re-creation of the paper's pipeline, side by side in one process.

Run from the project root (needs ``pip install -e .[bench]``)::

    python bench/speed.py --preset demo --quick
    python bench/speed.py --preset vit-cifar10 --sparsity 0.99 --quick --json

For a preset and a sparsity, both paths train the same model configuration (same initial
weights, same masks) on the same data, interleaved over several repeats; the medians give
images/s of each and their ratio. Ours is the default path, with ``precision`` and ``compile``
as the preset resolves them on this device (``auto``: bf16 + torch.compile on a CPU with native
bf16; ``--set precision=fp32 --set compile=false`` times fp32 eager).
``demo`` is timed per round (its epochs of training plus a test-set evaluation); other presets
per training step. The report adds our model-FLOPs/s as a
fraction of bf16 and fp32 matrix-product peaks measured in this process, the peak resident
memory of each path, our dense step time (the cost of sparsity), and (demo) test accuracy of
both paths after a short run from the same seeds. CIFAR cannot be downloaded here: on the CPU
``vit-cifar10`` trains on generated CIFAR-shaped data (3×32×32 uint8, 10 classes), which costs
the same per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import paper_pipeline as paper
import torch
from benchlib import (
    Setup,
    device_name,
    make_setup,
    mask_multiply_us,
    matmul_peak,
    median_time,
    our_model,
    our_trainer,
    paper_model_like,
    paper_run,
    peak_memory_mb,
    reset_peak_memory,
    time_ours,
    time_ours_eval,
    time_paper,
    vit_train_flops_per_image,
)

from sparsedd.components import resolve_config
from sparsedd.models.base import count_parameters
from sparsedd.training.trainer import Trainer

# --quick on a non-demo preset times steps of this batch size (a step of 512 takes ~30 s on
# 2 CPU cores); per image, the cost of the big ViT barely depends on the batch size.
QUICK_BATCH = 64


# ---------------------------------------------------------------- the measurements


def accuracy_check(s: Setup, sparsity: float, epochs: int, seeds: list[int], workers: int):
    """Test accuracy of both paths after ``epochs`` epochs from the same seeds and weights."""
    cfg = dataclasses.replace(s.cfg, epochs=epochs)
    s2 = dataclasses.replace(s, cfg=cfg)
    ours_acc, paper_acc = [], []
    per_epoch = -(-len(s.train_y) // cfg.batch_size)
    for seed in seeds:
        model, masks = our_model(s2, sparsity, seed)
        pmodel = paper_model_like(s2, model, sparsity)
        trainer = our_trainer(s2, model, masks)
        for epoch in range(epochs):
            trainer.train_epoch(
                s.train_x, s.train_y, seed * 1000 + epoch, cfg.augment == "flip_crop",
                s.mean, s.std, epoch * per_epoch, epochs * per_epoch,
            )  # fmt: skip
        logits = trainer.predict(s.test_x, s.mean, s.std)
        ours_acc.append(float((logits.argmax(1) == s.test_y.to(s.device)).float().mean()))
        run = paper_run(s2, pmodel, seed, workers)
        for epoch in range(epochs):
            run.train_epoch(epoch, total_steps=epochs * per_epoch)
        paper_acc.append(run.accuracy())
    return ours_acc, paper_acc


@dataclasses.dataclass
class Paths:
    """Both paths ready to time on one setup: our trainer (and a dense one when pruned), the
    paper's run, and the data on the device."""

    s: Setup
    model: torch.nn.Module
    masks: dict
    trainer: Trainer
    run: paper.PaperRun
    dense_trainer: Trainer | None
    x: torch.Tensor
    y: torch.Tensor


def prepare(args: argparse.Namespace) -> tuple[Setup, int]:
    """The setup the invocation asks for (batch size, threads, training images), and the
    training steps per repeat."""
    is_demo = args.preset == "demo"
    batch = args.batch or (QUICK_BATCH if args.quick and not is_demo else 0)
    if batch:
        args.set = [*args.set, f"batch_size={batch}"]
    probe = resolve_config(args.preset, None, args.set)
    if probe.threads:
        torch.set_num_threads(probe.threads)
    steps = args.steps or (1 if args.quick else 2)
    n_train = None if is_demo else probe.batch_size * steps
    return make_setup(args.preset, args.set, n_train), steps


def build_paths(s: Setup, sparsity: float, workers: int) -> Paths:
    """Ours (masked) and the paper's (vit-pytorch + prune hooks) from the same initial weights."""
    model, masks = our_model(s, sparsity, s.cfg.seed)
    pmodel = paper_model_like(s, model, sparsity)
    trainer = our_trainer(s, model, masks)
    run = paper_run(s, pmodel, s.cfg.seed, workers)
    dense_trainer = None
    if sparsity > 0:
        dense_trainer = our_trainer(s, *our_model(s, 0.0, s.cfg.seed))
    x, y = s.train_x.to(s.device), s.train_y.to(s.device)
    return Paths(s, model, masks, trainer, run, dense_trainer, x, y)


def warm_batch(p: Paths) -> tuple[torch.Tensor, torch.Tensor]:
    """A full batch and the epoch's short last batch: warming up on them leaves no first-call
    allocation, kernel selection or torch.compile inside a timing."""
    warm = p.s.cfg.batch_size + len(p.y) % p.s.cfg.batch_size
    return p.x[:warm], p.y[:warm]


def warm_up(p: Paths) -> None:
    """One pass of every path on the warm-up batch."""
    wx, wy = warm_batch(p)
    time_ours(p.s, p.trainer, wx, wy, 0)
    if p.dense_trainer is not None:
        time_ours(p.s, p.dense_trainer, wx, wy, 0)
    time_paper(p.run, 0, 1)


def train_timings(p: Paths, repeats: int, paper_steps: int | None) -> dict[str, Any]:
    """Images/s and peak memory of both paths (and ours dense), over interleaved repeats."""
    ours_t, paper_t, dense_t, ours_mem, paper_mem = [], [], [], [], []
    for r in range(repeats):
        reset_peak_memory(p.s.device)
        ours_t.append(time_ours(p.s, p.trainer, p.x, p.y, r + 1))
        ours_mem.append(peak_memory_mb(p.s.device))
        reset_peak_memory(p.s.device)
        paper_t.append(time_paper(p.run, r + 1, paper_steps))
        paper_mem.append(peak_memory_mb(p.s.device))
        if p.dense_trainer is not None:
            dense_t.append(time_ours(p.s, p.dense_trainer, p.x, p.y, r + 1))
    images = len(p.y)
    out = dict(
        ours_img_s=images / median_time(ours_t),
        baseline_img_s=images / median_time(paper_t),
        ours_times_s=ours_t,
        baseline_times_s=paper_t,
        ratio_train=median_time(paper_t) / median_time(ours_t),
        peak_rss_mb=max(ours_mem),
        baseline_peak_rss_mb=max(paper_mem),
    )
    if dense_t:
        out["ours_dense_img_s"] = images / median_time(dense_t)
        out["sparse_vs_dense_step_time"] = median_time(ours_t) / median_time(dense_t)
    return out


def per_round(p: Paths, timings: dict[str, Any]) -> dict[str, Any]:
    """Per round of the demo: its epochs of training plus one evaluation of the test set."""
    ours_eval = min(time_ours_eval(p.s, p.trainer) for _ in range(2))
    paper_eval = min(paper.timed(p.run.accuracy)[0] for _ in range(2))
    epochs = p.s.cfg.epochs
    ours_round = epochs * median_time(timings["ours_times_s"]) + ours_eval
    paper_round = epochs * median_time(timings["baseline_times_s"]) + paper_eval
    return dict(
        unit="round", ours_round_s=ours_round, baseline_round_s=paper_round,
        ratio=paper_round / ours_round,
    )  # fmt: skip


def utilisation(p: Paths, ours_img_s: float, quick: bool) -> dict[str, Any]:
    """Model FLOPs utilisation against matrix-product peaks measured now."""
    flops = vit_train_flops_per_image(p.s.cfg, p.s.spec)
    seconds = 0.5 if quick else 1.5
    peak_fp32 = matmul_peak(torch.float32, p.s.device, seconds)
    peak_bf16 = matmul_peak(torch.bfloat16, p.s.device, seconds)
    return dict(
        model_gflop_per_image=flops / 1e9,
        peak_fp32_gflop_s=peak_fp32 / 1e9,
        peak_bf16_gflop_s=peak_bf16 / 1e9,
        mfu_fp32=ours_img_s * flops / peak_fp32,
        mfu_bf16=ours_img_s * flops / peak_bf16,
    )


def accuracy_row(s: Setup, args: argparse.Namespace) -> dict[str, Any]:
    """Equal accuracy on a short run (same seeds, same initial weights and masks)."""
    epochs = args.accuracy_epochs or (3 if args.quick else 10)
    seeds = [0, 1] if args.quick else [0, 1, 2]
    ours_acc, paper_acc = accuracy_check(s, args.sparsity, epochs, seeds, args.workers)
    spread = max(_spread(ours_acc), _spread(paper_acc), 0.005)
    gap = abs(statistics.mean(ours_acc) - statistics.mean(paper_acc))
    return dict(
        accuracy_epochs=epochs,
        accuracy_seeds=seeds,
        ours_acc=ours_acc,
        baseline_acc=paper_acc,
        acc_gap=gap,
        acc_spread=spread,
        equal_accuracy=gap <= spread,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark invocation, as a flat dict."""
    is_demo = args.preset == "demo"
    s, steps = prepare(args)
    repeats = args.repeats or (3 if args.quick or not is_demo else 5)
    p = build_paths(s, args.sparsity, args.workers)
    out: dict[str, Any] = {
        "preset": args.preset,
        "sparsity": args.sparsity,
        "device": device_name(s.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision_config": s.cfg.precision,
        "precision_baseline": "fp32",
        "batch_size": s.cfg.batch_size,
        "data": "generated CIFAR-shaped" if s.generated else s.cfg.dataset,
        "train_images": len(p.y),
        "repeats": repeats,
        "params": count_parameters(p.model),
        "precision_ours": p.trainer.precision,
        "compile_ours": p.trainer.forward is not p.model,
    }
    warm_up(p)
    out.update(train_timings(p, repeats, None if is_demo else steps))
    out.update(per_round(p, out) if is_demo else dict(unit="step", ratio=out["ratio_train"]))
    out.update(utilisation(p, out["ours_img_s"], args.quick))
    mask_us = mask_multiply_us(p.model, p.masks, s.device)
    out.update(mask_foreach_us=mask_us["foreach"], mask_loop_us=mask_us["loop"])
    if is_demo and not args.no_accuracy:
        out.update(accuracy_row(s, args))
    return out


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else 0.0


# ---------------------------------------------------------------- output


def report(r: dict[str, Any], echo: Callable[[str], None] = print) -> None:
    """The human-readable table."""
    unit = r["unit"]
    echo(f"sparsedd speed benchmark: preset {r['preset']}, sparsity {r['sparsity']:.2%}")
    echo(
        f"device {r['device']}; torch {r['torch']}, {r['threads']} thread(s); "
        f"data {r['data']} ({r['train_images']} images), batch {r['batch_size']}, "
        f"{r['params']:,} parameters; median of {r['repeats']} interleaved repeats"
    )
    echo("")
    echo(f"{'path':<44}{'images/s':>12}{'peak RSS MB':>14}")
    ours = r["precision_ours"] + (" compiled" if r["compile_ours"] else " eager")
    echo(
        f"{'ours (' + ours + ', on-device batches, masks)':<44}"
        f"{r['ours_img_s']:>12.0f}{r['peak_rss_mb']:>14.0f}"
    )
    echo(
        f"{'paper (vit-pytorch, DataLoader+PIL, prune hooks, fp32)':<44}"
        f"{r['baseline_img_s']:>12.0f}{r['baseline_peak_rss_mb']:>14.0f}"
    )
    echo("")
    if unit == "round":
        echo(
            f"per round ({r['ours_round_s']:.1f} s vs {r['baseline_round_s']:.1f} s: epochs + "
            f"test evaluation): ratio {r['ratio']:.2f}x  (training alone {r['ratio_train']:.2f}x)"
        )
    else:
        echo(f"per step: ratio {r['ratio']:.2f}x")
    echo(
        f"model FLOPs/s: {r['model_gflop_per_image'] * r['ours_img_s']:.1f} GFLOP/s = "
        f"{r['mfu_bf16']:.1%} of bf16 peak ({r['peak_bf16_gflop_s']:.0f} GFLOP/s), "
        f"{r['mfu_fp32']:.1%} of fp32 peak ({r['peak_fp32_gflop_s']:.0f} GFLOP/s)"
    )
    if "sparse_vs_dense_step_time" in r:
        echo(
            f"ours at {r['sparsity']:.2%} sparsity vs dense: step time x"
            f"{r['sparse_vs_dense_step_time']:.3f} (dense {r['ours_dense_img_s']:.0f} images/s)"
        )
    echo(
        f"masks × weights per step: public per-tensor loop {r['mask_loop_us']:.0f} µs, "
        f"torch._foreach_mul_ {r['mask_foreach_us']:.0f} µs"
    )
    if "equal_accuracy" in r:
        fmt = ", ".join
        echo(
            f"accuracy after {r['accuracy_epochs']} epochs, seeds {r['accuracy_seeds']}: ours "
            f"[{fmt(f'{a:.4f}' for a in r['ours_acc'])}] vs paper "
            f"[{fmt(f'{a:.4f}' for a in r['baseline_acc'])}]: gap {r['acc_gap']:.4f}, spread "
            f"{r['acc_spread']:.4f} -> {'equal' if r['equal_accuracy'] else 'DIFFERENT'}"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="demo", help="sparsedd preset (default: demo)")
    p.add_argument("--sparsity", type=float, default=0.0, help="fraction of weights pruned")
    p.add_argument("--quick", action="store_true", help="fewer repeats: under two minutes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--batch", type=int, default=0, help="batch size (--quick: 64 if not demo)")
    p.add_argument("--steps", type=int, default=0, help="steps per repeat (non-demo presets)")
    p.add_argument("--repeats", type=int, default=0, help="interleaved repeats")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the baseline")
    p.add_argument("--accuracy-epochs", type=int, default=0, help="epochs of the accuracy check")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy check")
    args = p.parse_args(argv)
    if not 0.0 <= args.sparsity < 1.0:
        p.error("--sparsity must be in [0, 1)")
    started = time.perf_counter()
    result = measure(args)
    result["bench_seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
        print(f"({result['bench_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
