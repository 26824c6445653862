"""Where a sweep's jobs run: the backend protocol, its registry, and the local and Ray backends.

A backend is registered by name (``--backend NAME``) and does three things: refuse what it
cannot do before anything is loaded (``check``), refuse runs it cannot place before any starts
(``check_runs``), and train every job (``run``). Adding one is one class registered with
``@BACKENDS.register("name")``-style registration, here or in any module that is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from sparsedd.config import Config
from sparsedd.errors import UserError
from sparsedd.registry import Registry


@dataclass(frozen=True)
class SweepRequest:
    """Everything a `sparsedd run` asks for: which runs, where their results go, how they run."""

    out_dir: str
    #: None: ``demo``, or ``own-data`` when the keys choose dataset=imagefolder
    preset: str | None = None
    config_file: str | None = None
    assignments: tuple[str, ...] = ()
    grid: tuple[str, ...] = ()
    backend: str = "local"
    jobs: int | None = None
    address: str | None = None
    logs: tuple[str, ...] = ()
    quiet: bool = False
    dry_run: bool = False
    #: ``START:MAX`` adaptive seeds (see sweep/adaptive.py); None: every seed of the grid
    adaptive_seeds: str | None = None
    #: add every run's control: the same run with pruning off (see sweep/control.py)
    control: bool = False

    @cached_property
    def grid_axes(self) -> dict[str, list[str]]:
        """The ``--grid`` options split once into axes, ``{KEY: [V1, V2]}`` (values as typed;
        each becomes a typed config value where the runs are built, ``plan.sweep_configs``)."""
        from sparsedd.sweep.plan import parse_grid_options

        return parse_grid_options(self.grid)


class Backend(Protocol):
    """Runs a sweep's jobs (each job: one run) somewhere."""

    def check(self, request: SweepRequest) -> None:
        """Refuse in one line what this backend cannot do, before anything is loaded."""

    def check_runs(self, configs: Sequence[Config], request: SweepRequest) -> None:
        """Refuse configs that this backend cannot run (e.g. a missing GPU), before any runs."""

    def run(self, jobs: Sequence[Config], request: SweepRequest, labels: Mapping[str, str]) -> None:
        """Train every run into ``request.out_dir``; raise ``Interrupted`` when stopped."""


BACKENDS: Registry[Backend] = Registry("backend")


class LocalBackend:
    """This machine: one job per slot (a GPU, or a share of the cores)."""

    def check(self, request: SweepRequest) -> None:
        """A Ray address means nothing here."""
        if request.address is not None:
            raise UserError("--address is for --backend ray; add --backend ray or drop --address")

    def check_runs(self, configs: Sequence[Config], request: SweepRequest) -> None:
        """Every device the configs name must exist here (also for runs already done)."""
        from sparsedd.training.trainer import check_device

        for device in {cfg.device for cfg in configs}:
            check_device(device)

    def run(self, jobs: Sequence[Config], request: SweepRequest, labels: Mapping[str, str]) -> None:
        """Run the jobs in this process (one slot) or in worker processes, one per slot."""
        from sparsedd.events.trackers import sweep_parent
        from sparsedd.sweep.local import machine_slots, run_local

        slots = machine_slots(jobs[0].device, request.jobs)
        with sweep_parent(request.logs, request.out_dir, request.grid_axes, len(jobs)) as parent:
            run_local(jobs, request.out_dir, slots, request.quiet, labels, request.logs, parent)


class RayBackend:
    """A Ray cluster (``--address``; a local Ray instance without): one task per job."""

    def check(self, request: SweepRequest) -> None:
        """MLflow logging is local only; Ray must be installed (unless only planning)."""
        if "mlflow" in request.logs:
            raise UserError(
                "--log mlflow works with the local backend (every Ray worker would write "
                "MLflow's store); use --log tensorboard with --backend ray"
            )
        if not request.dry_run:
            from sparsedd.sweep.ray_backend import import_ray

            import_ray()  # fail in one line before anything is loaded or written

    def check_runs(self, configs: Sequence[Config], request: SweepRequest) -> None:
        """Ray places each task on a node with the resources it declares."""

    def run(self, jobs: Sequence[Config], request: SweepRequest, labels: Mapping[str, str]) -> None:
        """Run every job as a Ray task; rows are recorded on this host."""
        from sparsedd.sweep.ray_backend import run_ray

        run_ray(jobs, request.out_dir, request.address, logs=request.logs)


BACKENDS.register("local")(LocalBackend())
BACKENDS.register("ray")(RayBackend())
