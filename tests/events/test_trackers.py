"""`sparsedd run --log tensorboard|mlflow`, read back with the packages' own readers."""

from __future__ import annotations

import functools
import importlib.util
import json
import os

import pytest
from support import run_process

from sparsedd.config import epochs_before
from sparsedd.events.trackers import round_scalars

TINY = ["run", "--preset", "tiny", "-q", "--set", "rounds=2", "--set", "epochs=2"]


sparsedd = functools.partial(run_process, check=True)  # `sparsedd ARGS`, as a user runs it


def recorded(out) -> list[dict]:
    return json.loads(sparsedd("results", str(out), "--format", "json").stdout)


def test_round_scalars_and_epoch_steps() -> None:
    row = {"round": 1, "test_acc": 0.5, "val_acc": None, "layer_density": {"fc.weight": 0.8}}
    assert round_scalars(row) == {"round/test_acc": 0.5, "density/fc.weight": 0.8}
    assert epochs_before({"epochs": 3, "dense_epochs": 5}, 0) == 0
    assert epochs_before({"epochs": 3, "dense_epochs": 5}, 2) == 8
    assert epochs_before({"epochs": 3, "dense_epochs": None}, 2) == 6


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed (pip install 'sparsedd[tensorboard]')",
)
def test_tensorboard_scalars_match_the_results(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sparsedd(*TINY, "--out", str(tmp_path), "--log", "tensorboard")
    rows = recorded(tmp_path)
    run_id = rows[0]["run_id"]
    events = EventAccumulator(str(tmp_path / "runs" / run_id / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(6))  # 3 rounds × 2 epochs
    epochs = json.loads(sparsedd("results", str(tmp_path), "--epochs", "--format", "json").stdout)
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in epochs], rel=1e-6)
    test_acc = events.Scalars("round/test_acc")
    assert [e.step for e in test_acc] == [0, 1, 2]
    assert [e.value for e in test_acc] == pytest.approx([r["test_acc"] for r in rows], rel=1e-6)
    sparsity = [e.value for e in events.Scalars("round/sparsity")]
    assert sparsity == pytest.approx([0.0, 0.2, 0.36], abs=1e-4)
    layers = rows[2]["layer_density"]
    for layer, density in layers.items():
        assert events.Scalars(f"density/{layer}")[-1].value == pytest.approx(density, rel=1e-6)


@pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (pip install 'sparsedd[mlflow]')",
)
def test_mlflow_runs_nest_under_the_sweep_with_params_metrics_and_artifacts(tmp_path) -> None:
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = sparsedd(*TINY, "--grid", "seed=0,1", "--out", str(tmp_path), "--log", "mlflow", env=env)
    assert "database tables" not in proc.stderr  # its set-up chatter stays quiet
    rows = recorded(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sparsedd")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sparsedd.sweep") == "true"]
    children = [r for r in runs if "sparsedd.run_id" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    parent = parents[0].info.run_id
    assert parents[0].data.params["grid.seed"] == "0,1"
    for child in children:
        run_id = child.data.tags["sparsedd.run_id"]
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert child.info.status == "FINISHED"
        own = [r for r in rows if r["run_id"] == run_id]
        assert child.data.params["model"] == "lenet"
        assert child.data.params["seed"] == str(own[0]["seed"])
        history = client.get_metric_history(child.info.run_id, "round/test_acc")
        assert sorted((m.step, m.value) for m in history) == [
            (r["round"], pytest.approx(r["test_acc"])) for r in own
        ]
        assert len(client.get_metric_history(child.info.run_id, "train/loss")) == 6
        layer = next(iter(own[2]["layer_density"]))
        density = client.get_metric_history(child.info.run_id, f"density/{layer}")
        assert density[-1].value == pytest.approx(own[2]["layer_density"][layer])
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert names == {"sdd.png", "report.html"}
    assert {a.path for a in client.list_artifacts(parent)} == {"sdd.png", "report.html"}
    assert client.get_run(parent).info.status == "FINISHED"


class RecordingTracker:
    """A tracker that records its calls (and can be told to fail)."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def __getattr__(self, method: str):
        def record(*args):
            if method == self.fail_on:
                raise ConnectionError("tracking server gone")
            self.calls.append((method, *args))

        return record


class NullConsole:
    def __getattr__(self, method: str):
        return lambda *args: None


def _reporter(tmp_path, *trackers):
    from sparsedd.events.trackers import TrackingReporter

    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("epochs: 2\ndense_epochs: 3\nrounds: 1\n")
    return TrackingReporter(NullConsole(), tmp_path, list(trackers))


def test_an_interrupted_run_is_closed_as_killed_and_epochs_have_run_wide_steps(tmp_path) -> None:
    from sparsedd.errors import Interrupted
    from sparsedd.training.trainer import EpochStats

    tracker = RecordingTracker()
    reporter = _reporter(tmp_path, tracker)
    with pytest.raises(Interrupted), reporter:
        reporter.round_started("r1", 1, 2, 0)
        reporter.epoch_done("r1", 1, 1, EpochStats(loss=0.5, acc=0.9))
        raise Interrupted("stopped")
    assert tracker.calls[1] == ("epoch", "r1", 4, 0.5, 0.9)  # 3 dense epochs + 1
    assert tracker.calls[-1] == ("close", "KILLED")


def test_a_failing_tracker_is_dropped_with_one_note_and_the_run_goes_on(tmp_path, capsys) -> None:
    from sparsedd.training.trainer import EpochStats

    good, bad = RecordingTracker(), RecordingTracker(fail_on="epoch")
    reporter = _reporter(tmp_path, bad, good)
    with reporter:
        reporter.round_started("r1", 0, 3, 0)
        for epoch in range(3):
            reporter.epoch_done("r1", 0, epoch, EpochStats(loss=1.0, acc=0.5))
    assert [c[0] for c in good.calls] == ["run_started", "epoch", "epoch", "epoch", "close"]
    assert ("close", "FINISHED") in good.calls and not any(c[0] == "close" for c in bad.calls)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stopped logging" in err and "tracking server gone" in err


def test_a_missing_tracker_package_is_named_with_its_extra(monkeypatch) -> None:
    import sparsedd.events.trackers as trackers
    from sparsedd.errors import UserError

    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install 'sparsedd\[mlflow\]'"):
        trackers.check_installed(["mlflow"])
    with pytest.raises(UserError, match=r"pip install 'sparsedd\[tensorboard\]'"):
        trackers.check_installed(["tensorboard"])


@pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (pip install 'sparsedd[mlflow]')",
)
def test_an_unusable_tracking_uri_is_refused_before_training(tmp_path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": "bogus://nowhere"}
    proc = run_process(*TINY, "--out", str(tmp_path / "o"), "--log", "mlflow", env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "cannot log to MLflow" in proc.stderr and not (tmp_path / "o").exists()
