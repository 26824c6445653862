"""Shared fixtures: tiny configs on generated data, so every test runs in seconds, and results
folders that many test files read (trained once per session or module). Helpers that tests
import live in ``support.py``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from support import TINY_VIT, Stopper, run_process, tiny_config

from sparsedd.components import resolve_config
from sparsedd.config import Config
from sparsedd.errors import Interrupted
from sparsedd.training.engine import StopFlag
from sparsedd.training.experiment import Experiment

# A shell starts background jobs with Ctrl-C ignored, and children inherit that: the processes
# that tests interrupt with SIGINT would then ignore it. Give them the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# CI tries the same examples on every run: a property test that found a new case there would fail
# a submission at random. A developer's run keeps exploring new ones (and remembers failures).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture
def tiny() -> Config:
    """The `tiny` preset config."""
    return tiny_config()


@pytest.fixture(scope="session")
def finished_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding one complete `tiny` run."""
    out = tmp_path_factory.mktemp("finished") / "out"
    Experiment(resolve_config("tiny"), out).run()
    return out


@pytest.fixture(scope="session")
def partial_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder whose `tiny` run stopped in round 1 after saving progress."""
    out = tmp_path_factory.mktemp("partial") / "out"
    stop = StopFlag()
    exp = Experiment(resolve_config("tiny"), out, reporter=Stopper(stop, 1), stop=stop)
    with pytest.raises(Interrupted):
        exp.run()
    assert (exp.folder / "progress.safetensors").exists()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A results folder holding one tiny-ViT run (2 rounds, 60% pruned a round) trained through
    the command line, and that run's id."""
    out = tmp_path_factory.mktemp("runs")
    sets = [f"{key}={value}" for key, value in TINY_VIT.items()]
    sets += ["prune_rate=0.6", "train_size=256", "rounds=2", "epochs=1"]
    args = ["run", "--preset", "tiny", "-q", *[a for kv in sets for a in ("--set", kv)]]
    run_process(*args, "--out", str(out), check=True)
    (run_id,) = [p.name for p in (out / "runs").iterdir()]
    return out, run_id
