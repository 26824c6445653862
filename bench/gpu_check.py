"""One prepared check of the CUDA path, ready for the moment a GPU is at hand.

Run from the project root::

    bash bench/gpu_check.sh            # on a CUDA machine: about 5 minutes on one H100
    bash bench/gpu_check.sh --tiny     # the same code, tiny sizes, on the CPU (CI runs it)

It prints a short table and ends with one JSON line summarizing it:

1. **curve**: the ``tiny`` preset, a few rounds, on the GPU and on the CPU from the same seed.
   Sparsities must be identical; the first epoch's training loss equal within 1e-3 (same data,
   labels, initialization and batch order); each round's test accuracy within twice the binomial
   standard error of an accuracy on the test set (both runs are fp32 and differ only in the
   rounding of their kernels, which flips a few borderline predictions and, through pruning, a
   few borderline weights: differences below the test set's own sampling error).
2. **vit-cifar10 steps** on generated CIFAR-shaped data (no download): the paper's pipeline
   (bench/paper_pipeline.py, fp32) and our path in fp32, bf16 and bf16 + torch.compile, at 0% and
   99% sparsity: images/s, ratio to the paper's pipeline, MFU against bf16/fp32 matrix-product
   peaks measured in this process, peak GPU memory, and the projected time of one 200-epoch
   round and of the 35-round curve (CIFAR-10's 50,000 training images, training only).

Exit status: 0 when every check passes, 1 when one fails, 2 when there is no GPU (without
``--tiny``). Paths are timed one after the other (the GPU is not shared); each timing is the
median of a few repeats of a fixed number of steps after warm-up steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed  # noqa: E402

from sparsedd.components import resolve_config  # noqa: E402
from sparsedd.training.experiment import Experiment  # noqa: E402

CIFAR_TRAIN_IMAGES = 50_000
FIRST_LOSS_RTOL = 1e-3
# Seconds after which the full check skips its remaining parts: ~1 min of start-up and
# compilation beyond it keeps the whole check within 5 minutes on one H100.
DEFAULT_BUDGET_S = 200.0
# Tiny sizes of the ViT for --tiny (CPU, CI): every code path, seconds of work.
TINY_VIT = ["dim=32", "depth=1", "heads=2", "dim_head=16", "mlp_dim=32", "batch_size=16"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How big the check is: the full GPU check or its --tiny CPU rehearsal."""

    device: str
    vit_overrides: list[str]
    steps: int
    warmup_steps: int
    repeats: int
    curve_rounds: int
    peak_seconds: float
    workers: int
    compile: bool
    budget_s: float


def make_plan(tiny: bool, budget_s: float | None) -> Plan:
    """The full check on cuda, or the tiny one on the CPU (which skips nothing for time)."""
    if tiny:
        return Plan("cpu", TINY_VIT, 2, 1, 1, 1, 0.05, 0, False, budget_s or math.inf)
    return Plan("cuda", [], 10, 3, 3, 3, 1.0, 8, True, budget_s or DEFAULT_BUDGET_S)


# ---------------------------------------------------------------- 1. the tiny curve


def curve_on(device: str, rounds: int, out_dir: Path) -> tuple[list[dict], list[dict], int]:
    """(round rows, epoch rows, test images) of the tiny preset trained on ``device``."""
    cfg = resolve_config("tiny", None, [f"device={device}", f"rounds={rounds}"])
    threads = torch.get_num_threads()
    exp = Experiment(cfg, out_dir)  # sets the preset's one thread
    try:
        rows = exp.run()
    finally:
        torch.set_num_threads(threads)
    return rows, exp.store.epoch_rows(), len(exp.splits.test_y)


def accuracy_tolerance(acc: float, n_test: int) -> float:
    """Twice the binomial standard error of an accuracy ``acc`` measured on ``n_test`` images."""
    return 2 * math.sqrt(max(acc * (1 - acc), 0.25 / n_test) / n_test)


def check_curve(plan: Plan) -> dict[str, Any]:
    """The tiny curve on the device under test and on the CPU, compared round by round."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dev_rows, dev_epochs, n_test = curve_on(plan.device, plan.curve_rounds, Path(tmp) / "d")
        dev_s = time.perf_counter() - started
        cpu_rows, cpu_epochs, _ = curve_on("cpu", plan.curve_rounds, Path(tmp) / "cpu")
    rounds = []
    for d, c in zip(dev_rows, cpu_rows, strict=True):
        tol = accuracy_tolerance(c["test_acc"], n_test)
        rounds.append(
            dict(
                round=c["round"],
                sparsity_device=d["sparsity"],
                sparsity_cpu=c["sparsity"],
                acc_device=d["test_acc"],
                acc_cpu=c["test_acc"],
                tolerance=tol,
                ok=d["sparsity"] == c["sparsity"] and abs(d["test_acc"] - c["test_acc"]) <= tol,
            )
        )
    loss_d, loss_c = dev_epochs[0]["train_loss"], cpu_epochs[0]["train_loss"]
    loss_rel = abs(loss_d - loss_c) / abs(loss_c)
    return dict(
        rounds=rounds,
        n_test=n_test,
        first_loss_device=loss_d,
        first_loss_cpu=loss_c,
        first_loss_rel_diff=loss_rel,
        device_seconds=dev_s,
        ok=all(r["ok"] for r in rounds) and loss_rel <= FIRST_LOSS_RTOL,
    )


# ---------------------------------------------------------------- 2. ViT steps


def vit_setup(plan: Plan, precision: str, extra: list[str] = ()) -> speed.Setup:
    """vit-cifar10 on generated CIFAR-shaped data, enough images for warm-up and timed steps."""
    overrides = [f"device={plan.device}", f"precision={precision}", "compile=false"]
    overrides += [*plan.vit_overrides, *extra]
    batch = resolve_config("vit-cifar10", None, overrides).batch_size
    n_train = batch * (plan.warmup_steps + plan.steps * plan.repeats)
    return speed.make_setup("vit-cifar10", overrides, n_train)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds of ``fn()`` with the device's queue drained before and after."""
    speed.sync(device)
    start = time.perf_counter()
    fn()
    speed.sync(device)
    return time.perf_counter() - start


def median_img_s(
    plan: Plan, s: speed.Setup, run_steps: Callable[[int, int], object]
) -> tuple[float, float]:
    """(images/s, peak memory MB) of ``run_steps(first, count)`` after warm-up steps."""
    batch = s.cfg.batch_size
    run_steps(0, plan.warmup_steps)
    speed.reset_peak_memory(s.device)
    times = [
        timed(s.device, lambda r=r: run_steps(plan.warmup_steps + r * plan.steps, plan.steps))
        for r in range(plan.repeats)
    ]
    return batch * plan.steps / statistics.median(times), speed.peak_memory_mb(s.device)


def ours_steps(s: speed.Setup, trainer) -> Callable[[int, int], object]:
    """Run ``count`` of our steps starting at batch ``first`` of the setup's images."""
    batch, augment = s.cfg.batch_size, s.cfg.augment == "flip_crop"
    x, y = s.train_x.to(s.device), s.train_y.to(s.device)

    def run(first: int, count: int) -> object:
        xs, ys = (
            x[first * batch : (first + count) * batch],
            y[first * batch : (first + count) * batch],
        )
        return trainer.train_epoch(xs, ys, first, augment, s.mean, s.std, first, 10_000)

    return run


def paper_steps(plan: Plan, s: speed.Setup, run) -> Callable[[int, int], object]:
    """Run ``count`` steps of the paper's loop from one DataLoader iterator (workers kept)."""
    loader = DataLoader(
        run.train,
        batch_size=s.cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(s.cfg.seed),
        num_workers=plan.workers,
        persistent_workers=plan.workers > 0,
        drop_last=True,
    )
    batches = iter(loader)

    def run_steps(first: int, count: int) -> None:
        for _ in range(count):
            xb, yb = next(batches)
            run.train_step(xb, yb, 10_000)

    return run_steps


def path_row(
    plan: Plan, name: str, precision: str, sparsity: float, compiled: bool = False
) -> dict[str, Any]:
    """Images/s and peak memory of one path (``paper`` or ``ours``) at one precision/sparsity."""
    s = vit_setup(plan, precision, ["compile=true"] if compiled else [])
    model, masks = speed.our_model(s, sparsity, s.cfg.seed)
    if name == "paper":
        pmodel = speed.paper_model_like(s, model, sparsity)
        del model, masks
        run_steps = paper_steps(plan, s, speed.paper_run(s, pmodel, s.cfg.seed, plan.workers))
    else:
        run_steps = ours_steps(s, speed.our_trainer(s, model, masks))
    img_s, peak = median_img_s(plan, s, run_steps)
    mask_us = speed.mask_multiply_us(model, masks, s.device) if name == "ours" else {}
    row = dict(path=path_label(name, precision, compiled), sparsity=sparsity)
    row.update(img_s=img_s, peak_mb=peak)
    row.update({f"mask_{k}_us": v for k, v in mask_us.items()})
    row["round_h"] = s.cfg.epochs * CIFAR_TRAIN_IMAGES / img_s / 3600
    row["curve_h"] = (s.cfg.rounds + 1) * row["round_h"]
    row["flops_per_image"] = speed.vit_train_flops_per_image(s.cfg, s.spec)
    del run_steps
    release(s.device)
    return row


def path_label(name: str, precision: str, compiled: bool) -> str:
    """How a path is named in the table: ``ours bf16 compiled``."""
    return f"{name} {precision}" + (" compiled" if compiled else "")


def release(device: torch.device) -> None:
    """Free what the last path held, so that the next one's peak memory is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def vit_rows(plan: Plan, peaks: dict[str, float], started: float) -> list[dict[str, Any]]:
    """Every ViT path at 0% and 99% sparsity, with ratios and MFU."""
    cases = [("paper", "fp32", False), ("ours", "fp32", False), ("ours", "bf16", False)]
    if plan.compile:
        cases.append(("ours", "bf16", True))
    rows = []
    for sparsity in (0.0, 0.99):
        paper_img_s = None
        for name, precision, compiled in cases:
            stub = dict(path=path_label(name, precision, compiled), sparsity=sparsity)
            if time.perf_counter() - started > plan.budget_s:
                rows.append({**stub, "skipped": "time"})
                continue
            row = guarded(stub, path_row, plan, name, precision, sparsity, compiled)
            if "error" in row:
                rows.append(row)
                continue
            paper_img_s = paper_img_s or (row["img_s"] if name == "paper" else None)
            row["ratio"] = row["img_s"] / paper_img_s if paper_img_s else None
            row["mfu"] = row["img_s"] * row["flops_per_image"] / peaks[precision]
            rows.append(row)
    return rows


def guarded(stub: dict[str, Any], part: Callable[..., dict[str, Any]], *args: Any) -> dict:
    """``part(*args)``, or ``stub`` with the error's first line: one failing part (a missing
    package, a compile error) must not cost the figures of the others."""
    try:
        return part(*args)
    except Exception as err:  # reported in the table and the JSON line, and fails the check
        first = (str(err).strip().splitlines() or [""])[0][:300]
        return {**stub, "error": f"{type(err).__name__}: {first}"}


# ---------------------------------------------------------------- output


def _not_measured(entry: dict[str, Any]) -> str | None:
    """Why a part was not measured (skipped for the time budget, or its error), else None."""
    if "skipped" in entry:
        return f"skipped ({entry['skipped']} budget)"
    if "error" in entry:
        return f"ERROR {entry['error']}"
    return None


def print_table(result: dict[str, Any]) -> None:
    """The short human-readable table."""
    c = result["curve"]
    print(f"sparsedd gpu_check ({result['mode']}): {result['device']}, torch {result['torch']}")
    print(
        f"tiny curve, {result['plan_device']} vs cpu: first-epoch loss rel. diff "
        f"{c['first_loss_rel_diff']:.1e} (<= {FIRST_LOSS_RTOL:g}); "
        + "; ".join(
            f"r{r['round']} sp {r['sparsity_device']:.1%}/{r['sparsity_cpu']:.1%} "
            f"acc {r['acc_device']:.3f}/{r['acc_cpu']:.3f} (±{r['tolerance']:.3f})"
            for r in c["rounds"]
        )
        + f" -> {'ok' if c['ok'] else 'FAILED'}"
    )
    print(
        f"matmul peaks: bf16 {result['peak_bf16_tflop_s']:.3g} TFLOP/s, "
        f"fp32 {result['peak_fp32_tflop_s']:.3g} TFLOP/s (TF32 {result['tf32']})"
    )
    print(
        f"{'vit-cifar10 path':<22}{'sparsity':>9}{'img/s':>10}{'vs paper':>10}{'MFU':>7}"
        f"{'peak MB':>9}{'round h':>9}{'35 rounds h':>12}"
    )
    for r in result["vit"]:
        why = _not_measured(r)
        if why:
            print(f"{r['path']:<22}{r['sparsity']:>9.0%}  {why}")
            continue
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(
            f"{r['path']:<22}{r['sparsity']:>9.0%}{r['img_s']:>10.0f}{ratio:>10}{r['mfu']:>7.1%}"
            f"{r['peak_mb']:>9.0f}{r['round_h']:>9.2f}{r['curve_h']:>12.1f}"
        )
    masks = [r for r in result["vit"] if "mask_loop_us" in r]
    if masks:
        r = masks[0]
        print(
            f"masks × weights per step ({r['path']}): public per-tensor loop "
            f"{r['mask_loop_us']:.0f} µs, torch._foreach_mul_ {r['mask_foreach_us']:.0f} µs"
        )


def run_check(plan: Plan, tiny: bool) -> dict[str, Any]:
    """Every part of the check, as one dict (the JSON summary)."""
    started = time.perf_counter()
    device = torch.device(plan.device)
    result: dict[str, Any] = dict(
        check="gpu_check",
        mode="tiny" if tiny else "full",
        plan_device=plan.device,
        device=speed.device_name(device),
        torch=torch.__version__,
        tf32=torch.backends.cuda.matmul.allow_tf32,
        workers_baseline=plan.workers,
    )
    result["curve"] = check_curve(plan)
    sizes = (2048, 4096, 8192) if device.type == "cuda" else (256, 512)
    peaks = {
        "fp32": speed.matmul_peak(torch.float32, device, plan.peak_seconds, sizes),
        "bf16": speed.matmul_peak(torch.bfloat16, device, plan.peak_seconds, sizes),
    }
    result.update(peak_fp32_tflop_s=peaks["fp32"] / 1e12, peak_bf16_tflop_s=peaks["bf16"] / 1e12)
    result["vit"] = vit_rows(plan, peaks, started)
    result["errors"] = [
        f"{r['path']} at {r['sparsity']:.0%}: {r['error']}" for r in result["vit"] if "error" in r
    ]
    result["ok"] = result["curve"]["ok"] and not result["errors"]
    result["seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the check, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (CI)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help=f"seconds after which later parts are skipped (default {DEFAULT_BUDGET_S:.0f}; "
        "--tiny: none)",
    )
    args = p.parse_args(argv)
    plan = make_plan(args.tiny, args.budget)
    if plan.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU is visible; run it on a GPU machine, or add --tiny",
            file=sys.stderr,
        )
        return 2
    result = run_check(plan, args.tiny)
    print_table(result)
    print(f"({result['seconds']:.0f} s)")
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
