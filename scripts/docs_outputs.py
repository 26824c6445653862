"""Produce every output the README and docs/ show, from real runs, into one folder.

    python scripts/docs_outputs.py [--out docs-outputs] [--demo] [--only NAME]

Each output is written as NAME.txt (the command after "$ ", then what it printed, stdout and
stderr as a terminal shows them), figures as PNG, and MANIFEST.txt says which page and block
each one replaces. Paste from there: never edit a pasted output by hand.

- own-data (about 2 minutes on 2 CPU cores): docs/own-data.md, from a folder of 150 training
  and 60 test images of generated shapes (`tests/datafiles.py` draws them, seeded);
- demo (`--demo`; minutes on an idle 2-core CPU, more when shared): the README's demo block,
  figure and per-round table, with the wall time of run, plot, report and analyze.

Measured tables of docs/speed.md, docs/verdict.md and docs/studies.md come from the bench
scripts the pages name (`bench/*.py`); the manifest lists them without running them.
`tests/docs/test_docs_outputs.py` checks, in CI, that every pasted output still has the columns,
lines and values the current code prints.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the seeded shapes writer the tests use as well

#: (output name, page and block it replaces, the command; "{run}" is the own-data run's id).
OWN_DATA = (
    ("own-data-run", "docs/own-data.md, 2. Run (the progress lines)",
     "sparsedd run --set dataset=imagefolder --set data_dir=shapes --out shapes-runs"),
    ("own-data-timm", "docs/own-data.md, 2. Run (the timm note)",
     "sparsedd run --set dataset=imagefolder --set data_dir=shapes --set model=timm:resnet18 "
     "--out timm-runs --dry-run"),
    ("own-data-presets", "docs/own-data.md, what own-data chooses",
     "sparsedd presets own-data"),
    ("own-data-analyze", "docs/own-data.md, 3. Analyze and draw", "sparsedd analyze shapes-runs"),
    ("own-data-plot", "docs/own-data.md, 3. Analyze and draw (and own-data-sdd.png)",
     "sparsedd plot shapes-runs -o own-data-sdd.png"),
    ("own-data-export", "docs/own-data.md, 4. Export the model you want",
     "sparsedd export shapes-runs --run {run} --round best -o best.safetensors"),
    ("own-data-predict", "docs/own-data.md, 5. Predict",
     "sparsedd predict best.safetensors shapes/test/circle/circle0.jpg "
     "shapes/test/square/square1.png shapes/test/triangle/triangle2.jpg"),
)  # fmt: skip
DEMO = (
    ("demo-run", "README, the demo's time",
     "sparsedd run --grid weight_decay=0,2 --grid seed=0,1 --jobs 2 --out demo-runs"),
    ("demo-plot", "README and docs/index.md: demo-sdd.png",
     "sparsedd plot demo-runs -o demo-sdd.png"),
    ("demo-report", "README: report.html", "sparsedd report demo-runs"),
    ("demo-analyze", "README, What the demo shows (the block)", "sparsedd analyze demo-runs"),
)  # fmt: skip
#: Measured tables that bench scripts produce (listed, not run: each takes minutes to hours).
BENCH = (
    ("docs/speed.md", "python bench/speed.py --preset demo --quick --json"),
    ("docs/verdict.md", "python bench/verdict_calibration.py"),
    ("docs/studies.md", "python bench/adaptive_study.py --quick"),
)


def sparsedd(command: str, cwd: Path) -> tuple[str, float]:
    """Run a ``sparsedd ...`` command line in ``cwd`` with this checkout's code; what it printed
    (stderr, then stdout, as a terminal interleaves a run's note and its lines) and seconds."""
    args = shlex.split(command)
    assert args[0] == "sparsedd", command
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sparsedd", *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"docs_outputs: `{command}` failed ({done.returncode}):\n{done.stderr}")
    return done.stderr + done.stdout, seconds


def write_output(out: Path, name: str, command: str, text: str) -> Path:
    path = out / f"{name}.txt"
    path.write_text(f"$ {command}\n{text}")
    return path


def own_data(out: Path, manifest: list[str]) -> None:
    """The own-data page's folder, run, analysis, figure, export and predictions."""
    from datafiles import write_shapes

    if not (out / "shapes").exists():
        write_shapes(out / "shapes")
    run_id = ""
    for name, where, command in OWN_DATA:
        command = command.format(run=run_id[:6])
        text, _ = sparsedd(command, out)
        write_output(out, name, command, text)
        manifest.append(f"{name}.txt -> {where}")
        if name == "own-data-run":
            run_id = next(p.name for p in (out / "shapes-runs" / "runs").iterdir())
    manifest.append("own-data-sdd.png -> docs/own-data-sdd.png")


def demo(out: Path, manifest: list[str]) -> None:
    """The README's demo: four runs, figure, report, analysis, per-round table, wall time."""
    total = 0.0
    for name, where, command in DEMO:
        text, seconds = sparsedd(command, out)
        total += seconds
        write_output(out, name, command, text)
        manifest.append(f"{name}.txt -> {where}")
    (out / "demo-time.txt").write_text(f"run, plot, report and analyze: {total:.0f} s\n")
    (out / "demo-rounds.md").write_text(per_round_table(out / "demo-runs"))
    manifest += [
        "demo-time.txt -> README, What the demo shows (the time; name the machine and its load)",
        "demo-rounds.md -> README, What the demo shows (the per-round table)",
        "demo-sdd.png -> docs/demo-sdd.png",
    ]


def per_round_table(runs: Path, every: int = 2) -> str:
    """The README's per-round table: per λ, the seeds' mean test accuracy and memorization at
    every ``every``-th round ("collapsed" where a seed's run had stopped)."""
    sys.path.insert(0, str(ROOT / "src"))
    from sparsedd.analysis.load import collapsed_flags
    from sparsedd.analysis.report_sections import pct
    from sparsedd.analysis.tables import analyze_dir

    result = analyze_dir(runs)
    stats = result.stats.assign(_collapsed=collapsed_flags(result.stats))
    lambdas = sorted(result.curves["weight_decay"].unique())
    head = ["round", "sparsity"]
    for lam in lambdas:
        head += [f"λ = {lam:g} test acc", f"λ = {lam:g} memorization"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for round_ in sorted(stats["round"].unique())[::every]:
        at = stats[stats["round"] == round_]
        cells = [str(round_), pct(at["sparsity"].iloc[0])]
        for lam in lambdas:
            curve = result.curves.loc[result.curves["weight_decay"] == lam, "curve"].iloc[0]
            row = at[at["curve"] == curve].iloc[0]
            if row["_collapsed"]:
                cells += ["collapsed", "collapsed"]
            else:
                cells += [pct(row["test_acc_mean"]), pct(row["memorization_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SECTIONS: dict[str, Callable[[Path, list[str]], None]] = {"own-data": own_data, "demo": demo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs-outputs", help="folder to write into")
    parser.add_argument("--demo", action="store_true", help="also the README's demo (minutes)")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="only this section")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [args.only] if args.only else ["own-data", *(["demo"] if args.demo else [])]
    manifest: list[str] = []
    for name in names:
        SECTIONS[name](out, manifest)
    manifest += [f"(measured by a bench script) {page}: {command}" for page, command in BENCH]
    (out / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")
    print("\n".join(manifest))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
