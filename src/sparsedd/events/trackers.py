"""Experiment trackers for ``sparsedd run --log``: TensorBoard and MLflow, fed by run events.

Both receive the same numbers: per epoch the training loss and accuracy (``train/loss``,
``train/acc``, step = epochs trained so far in the run), per round every recorded metric
(``round/<metric>``, step = round) and every layer's surviving fraction (``density/<layer>``).
TensorBoard writes event files to ``<run folder>/tensorboard``. MLflow logs to
``MLFLOW_TRACKING_URI`` (default: ``sqlite:///<out>/mlflow.db``, artifacts in ``<out>/mlartifacts``)
in the experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``sparsedd``): one MLflow run per sparsedd
run (found again by its tag ``sparsedd.run_id`` when a run resumes), the config as params, and at
the end the run's figure and report as artifacts; a sweep's runs are nested under a parent run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml

from sparsedd.config import epochs_before
from sparsedd.errors import Interrupted, UserError
from sparsedd.registry import Registry
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.store.run_folder import RunFolder
from sparsedd.store.schema import ROUND_FIELDS

# Imported inside functions: tensorboard and mlflow (optional extras), and the analysis's
# pandas and matplotlib (2.7 s to import, measured: see docs/architecture.md, "Imports"),
# loaded by a run that logs them only.

#: The per-round numbers a tracker receives: every recorded round field but its index and epochs.
ROUND_METRICS = tuple(f for f in ROUND_FIELDS if f not in ("round", "epochs"))
RUN_TAG = "sparsedd.run_id"
SWEEP_TAG = "sparsedd.sweep"


def check_installed(names: Sequence[str]) -> None:
    """ConfigError for an unknown tracker; UserError naming the extra a tracker lacks."""
    for name in names:
        package = TRACKERS.get(name).package
        if package is not None and importlib.util.find_spec(package) is None:
            raise UserError(
                f"--log {name} needs the {package} package; pip install 'sparsedd[{package}]'"
            )


class Tracker(Protocol):
    """One destination of metrics."""

    def run_started(self, run: str, folder: Path, config: dict[str, Any]) -> None: ...
    def epoch(self, run: str, step: int, loss: float, acc: float) -> None: ...
    def round(self, run: str, row: dict[str, Any]) -> None: ...
    def run_finished(self, run: str, out_dir: Path) -> None: ...
    def close(self, status: str) -> None: ...


def round_scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one recorded round as ``round/<metric>`` and ``density/<layer>``."""
    out = {f"round/{m}": float(row[m]) for m in ROUND_METRICS if row.get(m) is not None}
    for layer, density in (row.get("layer_density") or {}).items():
        out[f"density/{layer}"] = float(density)
    return out


# ---------------------------------------------------------------- TensorBoard


class TensorBoardTracker:
    """Scalars in ``<run folder>/tensorboard``, written with torch's SummaryWriter."""

    def __init__(self) -> None:
        self.writers: dict[str, Any] = {}

    def run_started(self, run: str, folder: Path, config: dict[str, Any]) -> None:
        """Open the run's event file and write its config as text."""
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(RunFolder(folder).tensorboard))
        text = yaml.safe_dump(config, sort_keys=False)
        writer.add_text("config", f"```\n{text}```")
        self.writers[run] = writer

    def epoch(self, run: str, step: int, loss: float, acc: float) -> None:
        """Write one epoch's training loss and accuracy."""
        self.writers[run].add_scalar("train/loss", loss, step)
        self.writers[run].add_scalar("train/acc", acc, step)

    def round(self, run: str, row: dict[str, Any]) -> None:
        """Write one round's metrics and densities, then flush."""
        writer = self.writers[run]
        for tag, value in round_scalars(row).items():
            writer.add_scalar(tag, value, row["round"])
        writer.flush()

    def run_finished(self, run: str, out_dir: Path) -> None:
        """Close the run's event file."""
        self.writers.pop(run).close()

    def close(self, status: str) -> None:
        """Close every open event file."""
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


# ---------------------------------------------------------------- MLflow


def mlflow_client(out_dir: Path) -> tuple[Any, str]:
    """An MlflowClient and the experiment id to log to (created if missing)."""
    from mlflow import MlflowClient

    # MLflow sets its loggers up on import; its set-up chatter would crowd the console.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = None
    if not uri:
        out_dir.mkdir(parents=True, exist_ok=True)
        out = ResultsFolder(out_dir.resolve())
        uri = f"sqlite:///{out.mlflow_db}"
        artifacts = out.mlflow_artifacts.as_uri()
    client = MlflowClient(tracking_uri=uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "sparsedd")
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return client, experiment.experiment_id
    return client, client.create_experiment(name, artifact_location=artifacts)


def start_sweep_parent(out_dir: str | Path, keys: dict[str, list[str]]) -> str:
    """Create the MLflow parent run of a sweep; return its id (its children name it)."""
    client, experiment = mlflow_client(Path(out_dir))
    run = client.create_run(experiment, run_name="sweep", tags={SWEEP_TAG: "true"})
    for key, values in keys.items():
        client.log_param(run.info.run_id, f"grid.{key}", ",".join(values))
    return run.info.run_id


def finish_sweep_parent(out_dir: str | Path, parent: str, status: str) -> None:
    """Log the whole sweep's figure and report to the parent run and close it."""
    client, _ = mlflow_client(Path(out_dir))
    if status == "FINISHED":
        _log_analysis(client, parent, Path(out_dir), run=None)
    client.set_terminated(parent, status)


def _log_analysis(client: Any, mlflow_run: str, out_dir: Path, run: str | None) -> None:
    """Log the SDD figure and HTML report of ``run`` (or of the whole folder) as artifacts."""
    from sparsedd.analysis.figure_parts import close, figure_png
    from sparsedd.analysis.load import load_results
    from sparsedd.analysis.plot import plot_analysis
    from sparsedd.analysis.report import write_report
    from sparsedd.analysis.tables import analyze

    rounds = load_results(out_dir)
    if run is not None:
        rounds = rounds[rounds["run_id"] == run].reset_index(drop=True)
    result = analyze(rounds)
    fig = plot_analysis(result)
    try:
        png = figure_png(fig)
    finally:
        close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        files = ResultsFolder(tmp)
        figure, report = files.figure, files.report
        figure.write_bytes(png)
        write_report(result, png, report, source=str(out_dir))
        client.log_artifact(mlflow_run, str(figure))
        client.log_artifact(mlflow_run, str(report))


class MlflowTracker:
    """One MLflow run per sparsedd run: config as params, metrics, figure and report."""

    def __init__(self, out_dir: Path, parent: str | None = None) -> None:
        self.out_dir = out_dir
        self.parent = parent
        self.runs: dict[str, str] = {}
        self.client: Any = None

    def _find_or_create(self, run: str, config: dict[str, Any]) -> str:
        if self.client is None:  # connect on the first run event, after every input check
            self.client, self.experiment = mlflow_client(self.out_dir)
        found = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{RUN_TAG}` = '{run}'", max_results=1
        )
        if found:
            self.client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        tags = {RUN_TAG: run}
        if self.parent:
            tags["mlflow.parentRunId"] = self.parent
        created = self.client.create_run(self.experiment, run_name=run, tags=tags)
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in config.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(created.info.run_id, params=params[i : i + 100])
        return created.info.run_id

    def run_started(self, run: str, folder: Path, config: dict[str, Any]) -> None:
        """Find (on resume) or create the MLflow run of ``run``."""
        self.runs[run] = self._find_or_create(run, config)

    def epoch(self, run: str, step: int, loss: float, acc: float) -> None:
        """Log one epoch's training loss and accuracy."""
        from mlflow.entities import Metric

        now = _millis()
        metrics = [Metric("train/loss", loss, now, step), Metric("train/acc", acc, now, step)]
        self.client.log_batch(self.runs[run], metrics=metrics)

    def round(self, run: str, row: dict[str, Any]) -> None:
        """Log one round's metrics and densities (step = round)."""
        from mlflow.entities import Metric

        now = _millis()
        metrics = [Metric(k, v, now, row["round"]) for k, v in round_scalars(row).items()]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.runs[run], metrics=metrics[i : i + 1000])

    def run_finished(self, run: str, out_dir: Path) -> None:
        """Log the run's figure and report, and mark the MLflow run finished."""
        mlflow_run = self.runs.pop(run)
        _log_analysis(self.client, mlflow_run, out_dir, run)
        self.client.set_terminated(mlflow_run, "FINISHED")

    def close(self, status: str) -> None:
        """Mark runs still open as ``status`` (KILLED when interrupted, FAILED on an error)."""
        for mlflow_run in self.runs.values():
            self.client.set_terminated(mlflow_run, status)
        self.runs.clear()


def _millis() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the reporter


class TrackingReporter:
    """A run reporter that passes every event to the console reporter and to the trackers.

    A tracker that fails (a tracking server gone away) is dropped with one note on stderr:
    a long study goes on without it.
    """

    def __init__(self, console: Any, out_dir: str | Path, trackers: list[Tracker]) -> None:
        self.console = console
        self.out_dir = Path(out_dir)
        self.trackers = trackers
        self.configs: dict[str, dict[str, Any]] = {}

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # a tracker's failure must not stop training
                self.trackers.remove(tracker)
                print(
                    f"sparsedd: note: {type(tracker).__name__} stopped logging "
                    f"({_first_line(err)})",
                    file=sys.stderr,
                )

    # console-only parts (start, finish, note …) pass to the console reporter
    def __getattr__(self, name: str) -> Any:
        if name == "console":  # not yet set: no recursion
            raise AttributeError(name)
        return getattr(self.console, name)

    def __enter__(self) -> TrackingReporter:
        self.console.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.console.__exit__(kind, err, tb)
        self.close(run_status(err))

    # run events
    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Open the run in every tracker on its first event."""
        self.console.round_started(run, round_, epochs, first_epoch)
        self._open(run)

    def _open(self, run: str) -> None:
        """Start the run in every tracker, once (its first event)."""
        if run not in self.configs:
            folder = ResultsFolder(self.out_dir).run(run)
            config = yaml.safe_load(folder.config.read_text())
            self.configs[run] = config
            self._each("run_started", run, folder.path, config)

    def epoch_done(self, run: str, round_: int, epoch: int, stats: Any) -> None:
        """Log the epoch at its step in the whole run."""
        self.console.epoch_done(run, round_, epoch, stats)
        step = epochs_before(self.configs[run], round_) + epoch
        self._each("epoch", run, step, float(stats.loss), float(stats.acc))

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Log the round; after the run's last round, its figure and report. A round recorded
        as collapsed (not trained) may be the first event a resumed run sends."""
        self.console.round_done(run, row)
        self._open(run)
        self._each("round", run, row)
        if row["round"] == self.configs[run]["rounds"]:
            self._each("run_finished", run, self.out_dir)

    def close(self, status: str) -> None:
        """Close what is still open with ``status`` (FINISHED, KILLED or FAILED)."""
        self._each("close", status)


def run_status(err: BaseException | None) -> str:
    """The MLflow status of a run that ended with ``err``."""
    if err is None:
        return "FINISHED"

    return "KILLED" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "FAILED"


def with_trackers(
    console: Any, names: Sequence[str], out_dir: str | Path, parent: str | None
) -> Any:
    """``console`` itself without ``--log``; else a TrackingReporter around it."""
    if not names:
        return console
    return TrackingReporter(console, out_dir, make_trackers(names, out_dir, parent))


@contextmanager
def sweep_parent(
    names: Sequence[str], out_dir: str | Path, grid: dict[str, list[str]], runs: int
) -> Iterator[str | None]:
    """Around the runs of one command: MLflow is checked to be reachable before any training,
    and a sweep gets a parent run (its id is yielded; None for one run or without MLflow),
    closed at the end with the whole sweep's figure and report."""
    if "mlflow" not in names:
        yield None
        return
    try:
        parent = start_sweep_parent(out_dir, grid) if runs > 1 else None
        if parent is None:
            mlflow_client(Path(out_dir))
    except Exception as err:  # any failure to reach the store is the user's to fix
        raise UserError(
            f"cannot log to MLflow ({_first_line(err)}); check MLFLOW_TRACKING_URI"
        ) from None
    if parent is None:
        yield None
        return
    try:
        yield parent
    except BaseException as err:
        _finish_parent_quietly(out_dir, parent, run_status(err))
        raise
    _finish_parent_quietly(out_dir, parent, "FINISHED")


def _finish_parent_quietly(out_dir: str | Path, parent: str, status: str) -> None:
    """Close the sweep's parent run; a failure there costs a note, never the sweep's results."""
    try:
        finish_sweep_parent(out_dir, parent, status)
    except Exception as err:
        print(f"sparsedd: note: MLflow sweep run not closed ({_first_line(err)})", file=sys.stderr)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:120]}" if text else type(err).__name__


@dataclass(frozen=True)
class TrackerKind:
    """A registered tracker: ``make(out_dir, parent)`` opens one (``parent``: a sweep's MLflow
    run or None); ``package``: the module it needs, and sparsedd's extra that installs it."""

    make: Callable[[Path, str | None], Tracker]
    package: str | None = None


TRACKERS: Registry[TrackerKind] = Registry("tracker")
TRACKERS.register("tensorboard")(TrackerKind(lambda *_: TensorBoardTracker(), "tensorboard"))
TRACKERS.register("mlflow")(TrackerKind(MlflowTracker, "mlflow"))


def make_trackers(names: Sequence[str], out_dir: str | Path, parent: str | None) -> list[Tracker]:
    """The trackers named by ``--log`` options."""
    return [TRACKERS.get(name).make(Path(out_dir), parent) for name in dict.fromkeys(names)]
