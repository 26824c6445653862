"""Components own their keys: options declared with a registration become config keys (parsed,
range-checked, defaulted, in the run id), leave with it, and reach the component; human noise
and trackers do their work through their registrations."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_config
from support import run_cli, run_process
from torch import nn

from sparsedd.components import resolve_config, run_id
from sparsedd.config import DEFAULTS, Config, apply, to_dict
from sparsedd.data.datasets import load_dataset, make_splits
from sparsedd.data.noise import NOISE_KINDS, ReadNoise, corrupt_labels
from sparsedd.errors import ConfigError
from sparsedd.events.trackers import TRACKERS, TrackerKind
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds
from sparsedd.options import OPTIONS, Option
from sparsedd.plugins import GROUP
from sparsedd.registry import Needs, Registry
from sparsedd.store.results import ResultsStore

UNITS = Option("test_units", int, 12, "hidden units of the test model", min=2, max=64)
BUILT: list[int] = []


def _keyed_model(cfg: Config, spec: InputSpec) -> nn.Module:
    BUILT.append(cfg.test_units)
    return nn.Sequential(
        OrderedDict(
            flat=nn.Flatten(),
            hidden=nn.Linear(spec.channels * spec.image_size**2, cfg.test_units),
            out=nn.Linear(cfg.test_units, spec.num_classes),
        )
    )


@pytest.fixture
def keyed() -> Iterator[None]:
    """A model with a key of its own, registered from this module for one test."""
    BUILT.clear()
    MODELS.register("test-keyed", ModelNeeds(options=(UNITS,), output="out"))(_keyed_model)
    yield
    MODELS.unregister("test-keyed")


def test_an_option_is_a_config_key_while_its_component_is_registered(keyed) -> None:
    assert OPTIONS["test_units"] == UNITS and Config().test_units == 12
    cfg = Config(model="test-keyed", test_units=5)
    assert cfg.test_units == 5 and to_dict(cfg)["test_units"] == 5
    assert dataclasses.replace(cfg, test_units=12) == Config(model="test-keyed")
    assert pickle.loads(pickle.dumps(cfg)) == cfg and hash(cfg) == hash(
        pickle.loads(pickle.dumps(cfg))
    )
    assert apply(DEFAULTS, {"test_units": "7"}).test_units == 7
    with pytest.raises(ConfigError, match="config key 'test_units' takes an integer"):
        apply(DEFAULTS, {"test_units": "seven"})
    MODELS.unregister("test-keyed")
    assert "test_units" not in OPTIONS and "test_units" not in to_dict(DEFAULTS)
    with pytest.raises(ConfigError, match="unknown config key 'test_units'"):
        apply(DEFAULTS, {"test_units": 7})


def test_a_declaration_must_not_clash() -> None:
    registry: Registry[Any] = Registry("thing")
    with pytest.raises(ValueError, match="'lr', a config key of every run"):
        registry.register("a", Needs(options=(Option("lr", float, 0.1, "mine"),)))(object())
    with pytest.raises(ValueError, match="declares option 'dim' unlike"):
        registry.register("b", Needs(options=(Option("dim", int, 3, "another dim"),)))(object())
    assert OPTIONS["dim"].default == 512 and "a" not in registry and "b" not in registry


def test_the_key_reaches_the_model_through_config_files_and_grids(keyed, tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("model: test-keyed\ntest_units: 9\n")
    assert resolve_config("tiny", study).test_units == 9
    study.write_text("model: test-keyed\ntest_units: 1\n")
    with pytest.raises(ConfigError, match="study.yaml.*config key 'test_units' must be ≥ 2"):
        resolve_config("tiny", study)
    args = ["run", "-p", "tiny", "--out", str(tmp_path / "o"), "-q", "--jobs", "1"]
    args += ["--set", "model=test-keyed", "--set", "rounds=1", "--grid", "test_units=3,5"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert sorted(set(BUILT)) == [3, 5]  # 12 (the default) were the key ignored
    rows = ResultsStore(tmp_path / "o").round_rows()
    assert len({r["run_id"] for r in rows}) == 2
    base = tiny_config(model="test-keyed")
    assert run_id(dataclasses.replace(base, test_units=3)) != run_id(base)
    # a model that does not read it: noted, and the run id stays
    assert run_id(dataclasses.replace(tiny_config(), test_units=3)) == run_id(tiny_config())


def test_a_noise_kind_that_reads_its_labels_does_the_work() -> None:
    def every_label_zero(cfg: Config, train_labels: torch.Tensor, classes: int) -> torch.Tensor:
        return torch.zeros_like(train_labels)

    NOISE_KINDS.register("test-zero", Needs())(ReadNoise(every_label_zero))
    try:
        cfg = tiny_config(noise_kind="test-zero", noise=0.0)
        splits = make_splits(load_dataset(cfg), cfg)
        with pytest.raises(ValueError, match="reads its labels"):
            corrupt_labels(splits.train_y, 0.1, "test-zero", 4, seed=0)
    finally:
        NOISE_KINDS.unregister("test-zero")
    assert splits.train_y.eq(0).all() and splits.train_is_noisy.eq(splits.train_clean_y != 0).all()


def test_human_noise_refuses_a_drawn_rate_and_declares_its_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="noise_kind=human needs config key 'noise_file'"):
        resolve_config("tiny", assignments=["noise_kind=human", "noise=0"])
    with pytest.raises(ConfigError, match="'noise_file' is read only with noise_kind=human"):
        resolve_config("tiny", assignments=["noise_file=labels.npy"])


class _Recorder:
    """A tracker that keeps what it receives."""

    rounds: list[int] = []

    def run_started(self, run: str, folder: Path, config: dict[str, Any]) -> None:
        """Nothing to open."""

    def epoch(self, run: str, step: int, loss: float, acc: float) -> None:
        """Epochs are not kept."""

    def round(self, run: str, row: dict[str, Any]) -> None:
        self.rounds.append(row["round"])

    def run_finished(self, run: str, out_dir: Path) -> None:
        """Nothing to close."""

    def close(self, status: str) -> None:
        """Nothing to close."""


def test_a_registered_tracker_receives_the_rounds(tmp_path, capsys) -> None:
    _Recorder.rounds = []
    TRACKERS.register("test-recorder")(TrackerKind(lambda out, parent: _Recorder()))
    try:
        args = ["run", "-p", "tiny", "--out", str(tmp_path), "-q", "--set", "rounds=2"]
        code, _, err = run_cli([*args, "--log", "test-recorder"], capsys)
    finally:
        TRACKERS.unregister("test-recorder")
    assert code == 0, err
    assert _Recorder.rounds == [0, 1, 2]
    code, _, err = run_cli([*args, "--log", "tensorbord"], capsys)
    assert code == 2 and "unknown tracker 'tensorbord' (did you mean 'tensorboard'?)" in err


def test_models_lists_every_component_key(keyed, capsys) -> None:
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "trackers: mlflow, tensorboard" in out
    assert "  test_units=12 (model test-keyed): hidden units of the test model\n" in out
    assert "  dim=512 (model vit): ViT embedding width\n" in out


PLUGIN = """
from torch import nn

from sparsedd.models.base import MODELS, ModelNeeds
from sparsedd.options import Option

UNITS = Option("plugin_units", int, 32, "hidden units of the plugin's model", min=2)


@MODELS.register("plugin-keyed", ModelNeeds(options=(UNITS,)))
def plugin_keyed(cfg, spec):
    inputs = spec.channels * spec.image_size**2
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, cfg.plugin_units), nn.Linear(cfg.plugin_units, 4)
    )
"""


def test_a_plugin_model_key_is_read_before_any_registry(tmp_path) -> None:
    """An installed plugin's own key parses (its range checked) on the command line, where the
    config is read before any registry loads the plugins, and sizes the plugin's model."""
    site = tmp_path / "site"
    (site / "keyed_plugin").mkdir(parents=True)
    (site / "keyed_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "keyed_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keyed-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nkeyed = keyed_plugin\n")
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(src)])}
    run = ["run", "-p", "tiny", "-q", "--out", str(tmp_path / "o"), "--set", "rounds=0"]
    refused = run_process(*run, "--set", "plugin_units=1", env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "sparsedd: error: config key 'plugin_units' must be ≥ 2, not 1"
    run_process(*run, "--set", "model=plugin-keyed", "--set", "plugin_units=5", env=env, check=True)
    (row,) = ResultsStore(tmp_path / "o").round_rows()
    assert row["params_remaining"] == (64 + 1) * 5 + (5 + 1) * 4  # 32 units: key ignored


def test_runs_recorded_before_a_component_key_existed_take_its_default() -> None:
    """The analysis fills a component's key that older runs never recorded with its default
    (so a curve does not split on it), in a process that has imported no component yet."""
    code = (
        "import json; from sparsedd.analysis.load import with_default_keys; "
        "print(json.dumps(with_default_keys([{'seed': 0}, {'seed': 1, 'kd_alpha': 0.8}])))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [{"seed": 0, "kd_alpha": 0.8}, {"seed": 1, "kd_alpha": 0.8}]


def test_a_preset_resolves_in_a_process_that_imported_no_component() -> None:
    """The presets set components' keys (the demo's ViT sizes): the presets module registers
    the built-in components itself."""
    code = "from sparsedd.presets import preset_config; print(preset_config('demo').dim)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "64"
