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
import contextlib
import dataclasses
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paper_pipeline as paper  # noqa: E402

from sparsedd.components import resolve_config  # noqa: E402
from sparsedd.config import Config  # noqa: E402
from sparsedd.data.datasets import ImageData, load_dataset, make_splits  # noqa: E402
from sparsedd.models.base import InputSpec, count_parameters, create_model  # noqa: E402
from sparsedd.provenance import cpu_name  # noqa: E402
from sparsedd.training.prune import full_masks, prunable_parameters, prune_round  # noqa: E402
from sparsedd.training.trainer import Trainer, resolve_device  # noqa: E402

# --quick on a non-demo preset times steps of this batch size (a step of 512 takes ~30 s on
# 2 CPU cores); per image, the cost of the big ViT barely depends on the batch size.
QUICK_BATCH = 64
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# ---------------------------------------------------------------- measuring helpers


def sync(device: torch.device) -> None:
    """Wait for queued device work (timing only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Reset the peak-memory counters (Linux VmHWM and, on a GPU, the allocator's peak)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory (MB) since the last reset; on a GPU, peak allocated GPU memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(
    dtype: torch.dtype, device: torch.device, seconds: float, sizes: tuple[int, ...] = (1024, 2048)
) -> float:
    """Best FLOP/s of square matrix products of a few sizes, measured now."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        sync(device)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            a @ b
            count += 1
        sync(device)
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


def mask_multiply_us(model: torch.nn.Module, masks: dict, device: torch.device) -> dict:
    """Microseconds to multiply every masked weight by its mask: one torch._foreach_mul_ call
    against the public per-tensor loop (the medians of interleaved repeats)."""
    params = [p.detach() for n, p in model.named_parameters() if n in masks]
    values = [masks[n].to(p.dtype) for n, p in model.named_parameters() if n in masks]

    def foreach() -> None:
        torch._foreach_mul_(params, values)

    def loop() -> None:
        for p, m in zip(params, values, strict=True):
            p.mul_(m)

    times: dict[str, list[float]] = {"foreach": [], "loop": []}
    for _ in range(7):
        for name, fn in (("foreach", foreach), ("loop", loop)):
            sync(device)
            start = time.perf_counter()
            for _ in range(20):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / 20 * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def vit_train_flops_per_image(cfg: Config, spec: InputSpec) -> float:
    """Dense model FLOPs of one training image (forward + backward = 3 × forward)."""
    patches = (spec.image_size // cfg.patch_size) ** 2
    tokens = patches + 1
    inner = cfg.heads * cfg.dim_head
    patch_dim = spec.channels * cfg.patch_size**2
    macs = patches * patch_dim * cfg.dim
    per_token = cfg.dim * 3 * inner + inner * cfg.dim + 2 * cfg.dim * cfg.mlp_dim
    macs += cfg.depth * (tokens * per_token + 2 * tokens * tokens * inner)
    macs += cfg.dim * spec.num_classes
    return 3 * 2 * macs


def median_time(samples: list[float]) -> float:
    """Median of timings."""
    return statistics.median(samples)


# ---------------------------------------------------------------- setting up both paths


@dataclasses.dataclass
class Setup:
    """Config, data and the initial model shared by both paths."""

    cfg: Config
    spec: InputSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    generated: bool


def generated_cifar(n_train: int, n_test: int, seed: int) -> ImageData:
    """CIFAR-shaped data (3×32×32 uint8, 10 classes); costs per step what CIFAR-10 costs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return ImageData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, CIFAR_MEAN, CIFAR_STD)


def make_setup(preset: str, overrides: list[str], n_train: int | None) -> Setup:
    """Config and data of a preset; CIFAR presets get generated data when CIFAR is absent."""
    cfg = resolve_config(preset, None, overrides)
    # The baseline is vit-pytorch's ViT, today's layout: give ours the same layout.
    cfg = dataclasses.replace(cfg, vit_layout="modern")
    generated = False
    if cfg.dataset.startswith("cifar"):
        try:
            data = load_dataset(dataclasses.replace(cfg, download=False))
        except Exception:
            data = generated_cifar(n_train or cfg.batch_size, 512, cfg.seed)
            generated = True
            cfg = dataclasses.replace(cfg, train_size=None, val_size=0, noise=0.0)
    else:
        data = load_dataset(cfg)
    splits = make_splits(data, cfg)
    train_x, train_y = splits.train_x, splits.train_y
    if n_train is not None:
        train_x, train_y = train_x[:n_train], train_y[:n_train]
    device = resolve_device(cfg.device)
    spec = InputSpec(data.channels, data.image_size, data.num_classes)
    return Setup(
        cfg, spec, train_x, train_y, splits.test_x, splits.test_y, splits.mean, splits.std,
        device, generated,
    )  # fmt: skip


def our_model(s: Setup, sparsity: float, seed: int) -> tuple[torch.nn.Module, dict]:
    """Our ViT from ``seed``, magnitude-pruned globally to ``sparsity``."""
    torch.manual_seed(seed)
    model = create_model(s.cfg, s.spec)
    masks = full_masks(model)
    if sparsity > 0:
        weights = {n: w.detach() for n, w in prunable_parameters(model).items()}
        masks = prune_round(weights, masks, sparsity)
    return model.to(s.device), {n: m.to(s.device) for n, m in masks.items()}


def paper_model_like(s: Setup, ours: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """vit-pytorch's ViT with our initial weights, pruned by torch.nn.utils.prune."""
    model = paper.paper_model(s.cfg, s.spec)
    paper.load_our_weights(model, ours.cpu(), s.cfg.depth)
    ours.to(s.device)
    paper.prune_paper_model(model, sparsity)
    return model.to(s.device)


def our_trainer(s: Setup, model: torch.nn.Module, masks: dict, cfg: Config | None = None):
    """Our Trainer, masks applied, as Experiment builds it."""
    trainer = Trainer(model, masks, cfg or s.cfg, s.device)
    trainer.refresh_masks()
    return trainer


def paper_run(s: Setup, model: torch.nn.Module, seed: int, workers: int) -> paper.PaperRun:
    """The paper's loop over ``model`` with per-sample transforms of our data."""
    augment = s.cfg.augment == "flip_crop"
    train_tf, test_tf = paper.paper_transforms(s.spec.image_size, s.mean, s.std, augment)
    return paper.PaperRun(
        model,
        s.cfg,
        paper.PilDataset(s.train_x, s.train_y, train_tf),
        paper.PilDataset(s.test_x, s.test_y, test_tf),
        seed,
        num_workers=workers,
        device=s.device,
    )


# ---------------------------------------------------------------- the measurements


def time_ours(s: Setup, trainer: Trainer, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    """Seconds of one epoch of our path over (x, y)."""
    augment = s.cfg.augment == "flip_crop"
    steps = -(-len(y) // s.cfg.batch_size)
    sync(s.device)
    start = time.perf_counter()
    trainer.train_epoch(x, y, seed, augment, s.mean, s.std, 0, steps * 10)
    sync(s.device)
    return time.perf_counter() - start


def time_paper(run: paper.PaperRun, epoch: int, steps: int | None) -> float:
    """Seconds of one epoch (or ``steps`` steps) of the paper's path."""
    sync(run.device)
    start = time.perf_counter()
    run.train_epoch(epoch, total_steps=10_000, max_steps=steps)
    sync(run.device)
    return time.perf_counter() - start


def time_ours_eval(s: Setup, trainer: Trainer) -> float:
    """Seconds to predict the test set with our path."""
    start = time.perf_counter()
    trainer.predict(s.test_x, s.mean, s.std).argmax(1).sum().item()
    return time.perf_counter() - start


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


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark invocation, as a flat dict."""
    quick = args.quick
    is_demo = args.preset == "demo"
    batch = args.batch or (QUICK_BATCH if quick and not is_demo else 0)
    if batch:
        args.set = [*args.set, f"batch_size={batch}"]
    probe = resolve_config(args.preset, None, args.set)
    if probe.threads:
        torch.set_num_threads(probe.threads)
    steps = args.steps or (1 if quick else 2)
    n_train = None if is_demo else probe.batch_size * steps
    s = make_setup(args.preset, args.set, n_train)
    cfg, device = s.cfg, s.device
    repeats = args.repeats or (3 if quick or not is_demo else 5)
    x, y = s.train_x.to(device), s.train_y.to(device)
    out: dict[str, Any] = {
        "preset": args.preset,
        "sparsity": args.sparsity,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precision_config": cfg.precision,
        "precision_baseline": "fp32",
        "batch_size": cfg.batch_size,
        "data": "generated CIFAR-shaped" if s.generated else cfg.dataset,
        "train_images": len(y),
        "repeats": repeats,
    }

    # Models: ours (masked) and the paper's (vit-pytorch + prune hooks), same initial weights.
    model, masks = our_model(s, args.sparsity, cfg.seed)
    out["params"] = count_parameters(model)
    pmodel = paper_model_like(s, model, args.sparsity)
    trainer = our_trainer(s, model, masks)
    out.update(precision_ours=trainer.precision, compile_ours=trainer.forward is not model)
    run = paper_run(s, pmodel, cfg.seed, args.workers)
    dense_trainer = None
    if args.sparsity > 0:
        dmodel, dmasks = our_model(s, 0.0, cfg.seed)
        dense_trainer = our_trainer(s, dmodel, dmasks)

    # Warm-up (first-call allocations, oneDNN kernel selection, torch.compile), on a full
    # batch and on the epoch's short last batch, so that no compilation falls in a timing.
    warm = cfg.batch_size + len(y) % cfg.batch_size
    wx, wy = x[:warm], y[:warm]
    time_ours(s, trainer, wx, wy, 0)
    if dense_trainer is not None:
        time_ours(s, dense_trainer, wx, wy, 0)
    time_paper(run, 0, 1)

    ours_t, paper_t, dense_t, ours_mem, paper_mem = [], [], [], [], []
    paper_steps = None if is_demo else steps
    for r in range(repeats):
        reset_peak_memory(device)
        ours_t.append(time_ours(s, trainer, x, y, r + 1))
        ours_mem.append(peak_memory_mb(device))
        reset_peak_memory(device)
        paper_t.append(time_paper(run, r + 1, paper_steps))
        paper_mem.append(peak_memory_mb(device))
        if dense_trainer is not None:
            dense_t.append(time_ours(s, dense_trainer, x, y, r + 1))
    images = len(y)
    ours_img_s = images / median_time(ours_t)
    paper_img_s = images / median_time(paper_t)
    out.update(
        ours_img_s=ours_img_s,
        baseline_img_s=paper_img_s,
        ours_times_s=ours_t,
        baseline_times_s=paper_t,
        ratio_train=ours_img_s / paper_img_s,
        peak_rss_mb=max(ours_mem),
        baseline_peak_rss_mb=max(paper_mem),
    )
    if dense_t:
        out["ours_dense_img_s"] = images / median_time(dense_t)
        out["sparse_vs_dense_step_time"] = median_time(ours_t) / median_time(dense_t)

    if is_demo:
        # Per round: its epochs of training plus one evaluation of the test set.
        ours_eval = min(time_ours_eval(s, trainer) for _ in range(2))
        paper_eval = min(paper.timed(run.accuracy)[0] for _ in range(2))
        ours_round = cfg.epochs * median_time(ours_t) + ours_eval
        paper_round = cfg.epochs * median_time(paper_t) + paper_eval
        out.update(
            unit="round",
            ours_round_s=ours_round,
            baseline_round_s=paper_round,
            ratio=paper_round / ours_round,
        )
    else:
        out.update(unit="step", ratio=out["ratio_train"])

    # Model FLOPs utilisation against matrix-product peaks measured now.
    flops = vit_train_flops_per_image(cfg, s.spec)
    seconds = 0.5 if quick else 1.5
    peak_fp32 = matmul_peak(torch.float32, device, seconds)
    peak_bf16 = matmul_peak(torch.bfloat16, device, seconds)
    out.update(
        model_gflop_per_image=flops / 1e9,
        peak_fp32_gflop_s=peak_fp32 / 1e9,
        peak_bf16_gflop_s=peak_bf16 / 1e9,
        mfu_fp32=ours_img_s * flops / peak_fp32,
        mfu_bf16=ours_img_s * flops / peak_bf16,
    )

    mask_us = mask_multiply_us(model, masks, device)
    out.update(mask_foreach_us=mask_us["foreach"], mask_loop_us=mask_us["loop"])

    # Equal accuracy on a short run (same seeds, same initial weights and masks).
    if is_demo and not args.no_accuracy:
        epochs = args.accuracy_epochs or (3 if quick else 10)
        seeds = [0, 1] if quick else [0, 1, 2]
        ours_acc, paper_acc = accuracy_check(s, args.sparsity, epochs, seeds, args.workers)
        spread = max(_spread(ours_acc), _spread(paper_acc), 0.005)
        gap = abs(statistics.mean(ours_acc) - statistics.mean(paper_acc))
        out.update(
            accuracy_epochs=epochs,
            accuracy_seeds=seeds,
            ours_acc=ours_acc,
            baseline_acc=paper_acc,
            acc_gap=gap,
            acc_spread=spread,
            equal_accuracy=gap <= spread,
        )
    return out


def _spread(values: list[float]) -> float:
    return max(values) - min(values) if len(values) > 1 else 0.0


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (CPU model and cores, or GPU card)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()}, {os.cpu_count()} cores, no GPU"


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
