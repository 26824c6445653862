"""A sweep as a service: ``run_sweep(request)`` expands, checks, plans and runs it on a backend.

The command line only parses arguments into a ``SweepRequest`` and prints what comes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsedd.config import Config
from sparsedd.errors import ConfigError, UserError
from sparsedd.sweep.backends import BACKENDS, SweepRequest
from sparsedd.sweep.plan import PlannedRun, all_errors

if TYPE_CHECKING:
    from sparsedd.sweep.adaptive import AdaptivePlan, AdaptiveSeeds
    from sparsedd.sweep.backends import Backend


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep planned and what it trained (nothing, for a dry run)."""

    planned: list[PlannedRun]
    trained: int
    seconds: float
    #: An adaptive study's plan (after its last wave; for a dry run, the wave due now).
    adaptive: AdaptivePlan | None = None


def _quiet(line: str) -> None:
    """Drop a note."""


def run_sweep(request: SweepRequest, note: Callable[[str], None] = _quiet) -> SweepOutcome:
    """Expand the request into runs, check them all, plan them against ``request.out_dir``
    and (unless ``dry_run``) train those not done on the requested backend.

    ``note`` receives one line per key the user set that a run does not read. Every config
    error of every run is raised at once, as one ConfigError, before anything is written.
    """
    from sparsedd.events.trackers import check_installed
    from sparsedd.sweep import adaptive, run_setup
    from sparsedd.sweep.plan import plan, sweep_configs
    from sparsedd.sweep.study import study_cells

    backend = BACKENDS.get(request.backend)
    backend.check(request)
    check_installed(request.logs)
    preset = request.preset or run_setup.default_preset(request.config_file, request.assignments)
    cells = study_cells(preset, request.config_file, request.grid_axes)
    seeds = adaptive.requested(request.adaptive_seeds, request.config_file)
    if seeds is not None:
        for line in adaptive.seed_axis_note(cells, seeds):
            note(line)
        cells = adaptive.adaptive_cells(cells, request.assignments, seeds)
    labelled = sweep_configs(cells, request.assignments)
    if request.control:
        from sparsedd.sweep.control import with_controls

        if seeds is not None:
            raise ConfigError(
                "--control does not yet combine with --adaptive-seeds; run the study first, "
                "then the same command with --control instead of --adaptive-seeds for its seeds"
            )

        labelled = with_controls(labelled)
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
    if seeds is not None:
        return _run_adaptive(seeds, labelled, planned, request, backend)
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
    backend.run(configs, request, labels)
    return SweepOutcome(planned, len(configs), time.monotonic() - started)


def _run_adaptive(
    seeds: AdaptiveSeeds,
    labelled: list[tuple[str, Config]],
    planned: list[PlannedRun],
    request: SweepRequest,
    backend: Backend,
) -> SweepOutcome:
    """Train an adaptive study wave by wave (see sweep/adaptive.py); each wave is an ordinary
    set of runs for the backend. The plan is replayed from the recorded rounds, so a stopped
    study resumes where it was."""
    from sparsedd.sweep.adaptive import plan_waves, write_plan_file
    from sparsedd.sweep.plan import plan

    state = plan_waves(seeds, planned, request.out_dir)
    if request.dry_run:
        return SweepOutcome(planned, 0, 0.0, state)
    _report_done(state.chosen, request.out_dir)
    if state.wave:
        preflight([(p.label, p.cfg) for p in planned if p.state != "done"])
    labels = {p.id: p.label for p in planned}
    started, trained, previous = time.monotonic(), 0, None
    while state.wave:
        wave = frozenset(p.id for p in state.wave)
        if wave == previous:  # the backend returned without finishing them: do not loop
            raise UserError(
                f"wave {state.number} of the adaptive study did not finish its runs "
                f"({len(wave)}); re-run the same command to resume"
            )
        previous = wave
        write_plan_file(request.out_dir, state)
        configs = [p.cfg for p in state.wave]
        backend.run(configs, request, labels)
        trained += len(configs)
        planned = plan(labelled, request.out_dir)
        state = plan_waves(seeds, planned, request.out_dir)
    write_plan_file(request.out_dir, state)
    return SweepOutcome(planned, trained, time.monotonic() - started, state)


def _report_done(planned: Sequence[PlannedRun], out_dir: str) -> None:
    """One summary line per run that is already done (it is not trained again)."""
    from sparsedd.events.progress import ConsoleReporter
    from sparsedd.store.results_folder import ResultsFolder

    finished = ConsoleReporter(show_bars=False)
    for p in planned:
        if p.state == "done":
            finished.start(p.id, ResultsFolder(out_dir).run(p.id).path, p.cfg, p.label)
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
    from sparsedd.events.progress import duration

    if outcome.adaptive is not None and not request.dry_run:
        from sparsedd.sweep.adaptive import closing_line

        took = f" in {duration(outcome.seconds)}" if outcome.trained else ""
        return (
            f"{closing_line(outcome.adaptive)}; {outcome.trained} runs trained now{took}; "
            f"next: sparsedd report {request.out_dir}"
        )
    if len(outcome.planned) <= 1 or request.dry_run or not outcome.trained:
        return None
    return (
        f"grid done: {len(outcome.planned)} runs in {duration(outcome.seconds)}, results in "
        f"{request.out_dir}; next: sparsedd report {request.out_dir}"
    )
