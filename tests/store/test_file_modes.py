"""Files a lab shares: every file the tool writes gets the mode the umask allows (0644 under
umask 022, 0640 under 027), whichever library wrote it (safetensors makes its files 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image
from support import Stopper, run_cli

from sparsedd.components import resolve_config
from sparsedd.errors import Interrupted
from sparsedd.training.engine import StopFlag
from sparsedd.training.experiment import Experiment

UMASKS = (0o022, 0o027)


def _images(root: Path) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (120 * c, 30 * i, 0)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module", params=UMASKS, ids=lambda u: f"umask{u:03o}")
def written(request, tmp_path_factory) -> tuple[int, dict[str, Path]]:
    """(umask, a file of each kind), all written by sparsedd under that umask."""
    umask = request.param
    tmp = tmp_path_factory.mktemp(f"modes{umask:o}")
    old = os.umask(umask)
    try:
        images = _images(tmp / "images")
        out = tmp / "out"
        sets = [f"data_dir={images}", "dataset=imagefolder", "image_size=8", "val_size=2"]
        args = ["run", "--preset", "tiny", "-q", "--out", str(out)]
        assert run_cli([*args, *[a for kv in sets for a in ("--set", kv)]])[0] == 0
        stop = StopFlag()  # a second run stopped in round 1: its progress file stays
        cfg = resolve_config("tiny", assignments=["seed=3"])
        with pytest.raises(Interrupted):
            Experiment(cfg, out, reporter=Stopper(stop, 1), stop=stop).run()
        run = next(p for p in (out / "runs").iterdir() if (p / "round_001.safetensors").exists())
        for command in (
            ["export", str(out), "--run", run.name, "-o", str(tmp / "model.safetensors")],
            ["export", str(out), "-o", str(tmp / "rounds.parquet")],
            ["export", str(out), "-o", str(tmp / "rounds.csv")],
            ["plot", str(out), "-o", str(tmp / "sdd.png")],
            ["report", str(out), "-o", str(tmp / "report.html")],
        ):
            assert run_cli(command)[0] == 0
    finally:
        os.umask(old)
    progress = next(out.glob("runs/*/progress.safetensors"))
    files = {
        "round checkpoint": run / "round_001.safetensors",
        "labels": run / "labels.safetensors",
        "progress": progress,
        "config.yaml": run / "config.yaml",
        "data.json": run / "data.json",
        "database": out / "results.sqlite",
        "image cache": next(images.glob(".sparsedd-cache-*.safetensors")),
        "model export": tmp / "model.safetensors",
        "table export parquet": tmp / "rounds.parquet",
        "table export csv": tmp / "rounds.csv",
        "figure": tmp / "sdd.png",
        "report": tmp / "report.html",
    }
    return umask, files


KINDS = [
    "round checkpoint",
    "labels",
    "progress",
    "config.yaml",
    "data.json",
    "database",
    "image cache",
    "model export",
    "table export parquet",
    "table export csv",
    "figure",
    "report",
]


@pytest.mark.parametrize("kind", KINDS)
def test_written_file_has_the_mode_the_umask_allows(written, kind) -> None:
    umask, files = written
    mode = stat.S_IMODE(files[kind].stat().st_mode)
    assert mode == 0o666 & ~umask, f"{kind}: {mode:o}"
