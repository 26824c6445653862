"""The paper's answer at less of its compute: a full study against its adaptive twin.

    python bench/adaptive_study.py            # the demo's setting: 3 λ x 4 seeds
    python bench/adaptive_study.py --quick    # a smaller study (under 10 minutes on 2 cores)

The full study trains every curve (λ) with all 4 seeds and every round (collapse stop off).
Its twin trains the same grid from the same seeds, in a folder of its own, with adaptive seeds
(2 first, at most 4: seeds only where the verdict is still inconclusive) and the collapse stop
on. Both go through the `sparsedd run` command. The bench prints both studies' epochs (the sum
of recorded ``round_epochs``), their ratio, each curve's verdict in both, λ* in both, the
machine and versions, and ends with one JSON line holding ``epochs_ratio`` and
``same_answers`` (every verdict and λ* equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


LAMBDAS = "0,0.5,2"
SEEDS = "0,1,2,3"
ADAPTIVE = "2:4"
#: The demo preset as it is (Fashion-MNIST, small ViT), at its own size.
FULL_SETTINGS: list[str] = []
#: A smaller study of the same kind: 1,600 training images, fewer epochs, 10 rounds of 30% (to
#: 97% sparsity), no torch.compile (its warm-up would dominate runs this short). At 500 images
#: the curves were flat within their noise (inconclusive at 4 seeds: nothing for adaptive seeds
#: to save); at this size λ = 0 dips and recovers clearly.
QUICK_SETTINGS = [
    "train_size=2000",
    "val_size=400",
    "dense_epochs=30",
    "epochs=8",
    "rounds=10",
    "prune_rate=0.3",
    "compile=false",
]


def run_cli(args: list[str]) -> float:
    """Run ``sparsedd ARGS`` (this checkout's code) and return its wall time in seconds."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sparsedd", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"sparsedd {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    closing = [line for line in done.stderr.splitlines() if "adaptive seeds" in line]
    if closing:
        print(f"  {closing[-1]}")
    return time.monotonic() - started


def study_args(settings: list[str], out: Path, jobs: int) -> list[str]:
    """The `sparsedd run` arguments shared by both studies."""
    sets = [x for s in settings for x in ("--set", s)]
    return ["run", "-p", "demo", *sets, "--grid", f"weight_decay={LAMBDAS}", "--out", str(out),
            "-q", "--jobs", str(jobs)]  # fmt: skip


def adaptive_plan(settings: list[str], out: Path) -> Any:
    """The twin's finished plan (a dry run replays it from the recorded rounds)."""
    from sparsedd.sweep.backends import SweepRequest
    from sparsedd.sweep.service import run_sweep

    request = SweepRequest(
        out_dir=str(out), preset="demo", assignments=tuple(settings),
        grid=(f"weight_decay={LAMBDAS}",), dry_run=True, adaptive_seeds=ADAPTIVE,
    )  # fmt: skip
    return run_sweep(request).adaptive


def answers(out: Path, runs: set[str] | None = None) -> dict[str, Any]:
    """Each λ's verdict and seeds, λ*, and the epochs recorded, of ``runs`` (default: all)."""
    from sparsedd.analysis.load import load_results
    from sparsedd.analysis.tables import analyze

    frame = load_results(out)
    if runs is not None:
        frame = frame[frame["run_id"].isin(runs)]
    result = analyze(frame)
    curves = {
        float(row["weight_decay"]): (str(row["verdict"]), int(row["n_seeds"]))
        for _, row in result.curves.iterrows()
    }
    chosen = sorted({_lambda_text(v) for v in result.curves["best_weight_decay"]})
    epochs = int(frame["round_epochs"].fillna(0).sum())
    return {"curves": curves, "lambda": chosen, "epochs": epochs}


def _lambda_text(value: Any) -> str:
    """λ* as text; 'none' where the rule chose none (every λ has SDD)."""
    number = float(value)
    return "none" if number != number else f"{number:g}"


def machine() -> str:
    """CPU model and cores (or the GPU)."""
    import torch

    from sparsedd.provenance import cpu_name

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {cpu_name()}, {os.cpu_count()} cores, no GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller study (minutes)")
    parser.add_argument("--out", type=Path, help="keep both studies here (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    import torch

    import sparsedd

    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    root = args.out or Path(tempfile.mkdtemp(prefix="sparsedd-adaptive-"))
    full_dir = root / "full"
    twin_dir = root / "adaptive"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at start")
    print(f"versions: sparsedd {sparsedd.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"study: demo preset {' '.join(settings) or '(as is)'}; λ {LAMBDAS}; seeds {SEEDS}; "
          f"twin: adaptive seeds {ADAPTIVE}, collapse stop on")  # fmt: skip

    full_settings = [*settings, "collapse_stop=false"]
    print("full study ...")
    full_s = run_cli([*study_args(full_settings, full_dir, args.jobs), "--grid", f"seed={SEEDS}"])
    print("adaptive twin ...")
    twin_s = run_cli([*study_args(settings, twin_dir, args.jobs), "--adaptive-seeds", ADAPTIVE])
    plan = adaptive_plan(settings, twin_dir)
    full = answers(full_dir)
    twin = answers(twin_dir, {p.id for p in plan.chosen})

    print(f"\n{'λ':>6}  {'full study':<24} {'adaptive twin':<24} same")
    same_verdicts = True
    for lam, (verdict, seeds) in sorted(full["curves"].items()):
        other, other_seeds = twin["curves"].get(lam, ("missing", 0))
        same = other == verdict
        same_verdicts &= same
        print(f"{lam:>6g}  {verdict + f' ({seeds} seeds)':<24} "
              f"{other + f' ({other_seeds} seeds)':<24} {'yes' if same else 'NO'}")  # fmt: skip
    same_lambda = full["lambda"] == twin["lambda"]
    ratio = twin["epochs"] / full["epochs"] if full["epochs"] else float("nan")
    verdict = "same" if same_lambda else "DIFFERENT"
    print(f"λ*: full {full['lambda']}, adaptive {twin['lambda']} ({verdict})")
    print(f"epochs: full {full['epochs']}, adaptive {twin['epochs']}, ratio {ratio:.3f}")
    print(f"runs: full {len(plan.full)}, adaptive {len(plan.chosen)}; wall: full {full_s:.0f}s, "
          f"twin {twin_s:.0f}s; load average {os.getloadavg()[0]:.1f} at end")  # fmt: skip
    print(json.dumps({
        "epochs_ratio": round(ratio, 4),
        "same_answers": bool(same_verdicts and same_lambda),
        "same_verdicts": bool(same_verdicts),
        "same_lambda": bool(same_lambda),
        "epochs_full": full["epochs"],
        "epochs_adaptive": twin["epochs"],
        "runs_full": len(plan.full),
        "runs_adaptive": len(plan.chosen),
        "collapse_stop": True,
        "quick": args.quick,
        "seconds_full": round(full_s, 1),
        "seconds_twin": round(twin_s, 1),
        "machine": machine(),
        "torch": torch.__version__,
        "sparsedd": sparsedd.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
