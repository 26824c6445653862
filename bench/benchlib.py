"""What the bench scripts share: timing and memory helpers, and the two training paths (ours,
and the re-creation of the paper's pipeline in ``paper_pipeline``) set up on the same config,
data and initial weights. ``speed.py`` and ``gpu_check.py`` import it; it is no script.

Run the scripts from the project root with the package importable (``pip install -e .[bench]``,
or ``PYTHONPATH=src``); Python puts ``bench/`` on the path of a script it runs from there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import statistics
import time
from pathlib import Path

import paper_pipeline as paper
import torch

from sparsedd.components import resolve_config
from sparsedd.config import Config
from sparsedd.data.datasets import ImageData, load_dataset, make_splits
from sparsedd.models.base import InputSpec, create_model
from sparsedd.provenance import cpu_name
from sparsedd.training.prune import full_masks, prunable_parameters, prune_round
from sparsedd.training.trainer import Trainer, resolve_device

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


# ---------------------------------------------------------------- timing each path


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


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (CPU model and cores, or GPU card)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()}, {os.cpu_count()} cores, no GPU"
