"""A sweep as a service: ``run_sweep(request)`` expands, checks, plans and runs it on a backend.

The command line only parses arguments into a ``SweepRequest`` and prints what comes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.sweep.backends import BACKENDS, SweepRequest
from sparsedd.sweep.plan import PlannedRun, all_errors


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep planned and what it trained (nothing, for a dry run)."""

    planned: list[PlannedRun]
    trained: int
    seconds: float


def _quiet(line: str) -> None:
    """Drop a note."""


def run_sweep(request: SweepRequest, note: Callable[[str], None] = _quiet) -> SweepOutcome:
    """Expand the request into runs, check them all, plan them against ``request.out_dir``
    and (unless ``dry_run``) train those not done on the requested backend.

    ``note`` receives one line per key the user set that a run does not read. Every config
    error of every run is raised at once, as one ConfigError, before anything is written.
    """
    from sparsedd.sweep import run_setup
    from sparsedd.sweep.jobs import group_jobs
    from sparsedd.sweep.plan import parse_grid_options, plan, sweep_configs
    from sparsedd.sweep.study import study_cells
    from sparsedd.sweep.trackers import check_installed

    backend = BACKENDS.get(request.backend)
    backend.check(request)
    check_installed(request.logs)
    preset = request.preset or run_setup.default_preset(request.config_file, request.assignments)
    cells = study_cells(preset, request.config_file, parse_grid_options(request.grid))
    labelled = sweep_configs(cells, request.assignments)
    if preset == run_setup.OWN_DATA_PRESET:
        options = [*request.assignments, *request.grid]
        labelled = run_setup.sized_for_data(labelled, request.config_file, options)
        if request.preset is None:  # once the data is found: a refusal stays the only line
            note(run_setup.own_data_note())
    configs = [cfg for _, cfg in labelled]
    for line in [*ignored_key_notes(configs, request), *run_setup.model_fit_notes(configs)]:
        note(line)
    if not request.dry_run:
        backend.check_runs([cfg for _, cfg in labelled], request)
    planned = plan(labelled, request.out_dir)
    if request.dry_run:
        return SweepOutcome(planned, 0, 0.0)
    _report_done(planned, request.out_dir)
    configs = [p.cfg for p in planned if p.state != "done"]
    if not configs:
        return SweepOutcome(planned, 0, 0.0)
    if len(configs) > 1:
        from sparsedd.sweep.status import write_sweep_file

        preflight([(p.label, p.cfg) for p in planned if p.state != "done"])
        write_sweep_file(request.out_dir, planned)
    started = time.monotonic()
    labels = {p.id: p.label for p in planned}
    backend.run(group_jobs(configs, request.batch_lambdas), request, labels)
    return SweepOutcome(planned, len(configs), time.monotonic() - started)


def _report_done(planned: Sequence[PlannedRun], out_dir: str) -> None:
    """One summary line per run that is already done (it is not trained again)."""
    from sparsedd.store.run_folder import RunFolder
    from sparsedd.training.progress import ConsoleReporter

    finished = ConsoleReporter(show_bars=False)
    for p in planned:
        if p.state == "done":
            finished.start(p.id, RunFolder.of(out_dir, p.id).path, p.cfg, p.label)
    finished.finish()


def preflight(runs: Sequence[tuple[str, Config]]) -> None:
    """Load each dataset once and check every run's split sizes before any run starts; every
    run whose sizes do not fit is named in one ConfigError."""
    from sparsedd.data.datasets import check_split_sizes, load_dataset

    sizes: dict[tuple[str, str], int] = {}
    errors: dict[str, list[str]] = {}
    for label, cfg in runs:
        key = (cfg.dataset, cfg.data_dir)
        if key not in sizes:
            sizes[key] = len(load_dataset(cfg).train_y)
        try:
            check_split_sizes(cfg, sizes[key])
        except ConfigError as err:
            errors.setdefault(str(err), []).append(label)
    if errors:
        raise ConfigError(all_errors(errors, len(runs)))


def ignored_key_notes(configs: Sequence[Config], request: SweepRequest) -> list[str]:
    """One note per key the user set (file, --set, --grid) that a run does not read."""
    from sparsedd.components import ignored_notes
    from sparsedd.sweep.run_setup import given_keys

    given = given_keys(request.config_file, [*request.assignments, *request.grid])
    return list(dict.fromkeys(note for cfg in configs for note in ignored_notes(cfg, given)))


def describe(outcome: SweepOutcome, request: SweepRequest) -> str | None:
    """The closing line of a sweep of several runs (None for one run or a dry run)."""
    from sparsedd.training.progress import duration

    if len(outcome.planned) <= 1 or request.dry_run or not outcome.trained:
        return None
    return (
        f"grid done: {len(outcome.planned)} runs in {duration(outcome.seconds)}, results in "
        f"{request.out_dir}; next: sparsedd report {request.out_dir}"
    )
