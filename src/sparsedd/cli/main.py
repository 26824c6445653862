"""The `sparsedd` command line: run, results, presets (analysis commands live beside it)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from sparsedd.errors import Interrupted, UserError

DEFAULT_OUT = "./sparsedd-runs"
#: Columns of the `results` table after run_id and the config keys that name the runs.
TABLE_COLUMNS = (
    "round",
    "sparsity",
    "test_acc",
    "memorization",
    "val_acc",
    "train_acc",
    "round_epochs",
    "seconds",
)
#: Config keys the `results` table always shows (when present), besides those that differ.
TABLE_KEYS = ("model", "dataset", "noise", "weight_decay")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparsedd")
def cli() -> None:
    """Study sparse double descent: train on noisy labels, prune, record every sparsity."""


# ---------------------------------------------------------------- run


def _preflight(configs: list[Any]) -> None:
    """Load each dataset once and check every config's split sizes before any run starts."""
    from sparsedd.data.datasets import check_split_sizes, load_dataset

    sizes: dict[tuple[str, str], int] = {}
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir)
        if key not in sizes:
            sizes[key] = len(load_dataset(cfg).train_y)
        check_split_sizes(cfg, sizes[key])


@cli.command()
@click.option(
    "--preset",
    "-p",
    default=None,
    help="preset to start from  [default: demo; own-data when dataset=imagefolder]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML file of config keys (overrides the preset)",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="override one config key (repeatable; wins over --config)",
)
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="run every combination of these values (a sweep; repeatable)",
)
@click.option(
    "--out",
    "out_dir",
    default=DEFAULT_OUT,
    show_default=True,
    type=click.Path(file_okay=False),
    help="results folder",
)
@click.option(
    "--jobs",
    "-j",
    default=None,
    type=click.IntRange(1),
    help="jobs of a grid trained at once, each in its own process "
    "[default: one per GPU; 1 on the CPU]",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine; ray: a Ray cluster (pip install 'sparsedd[ray]')",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster address (e.g. HEAD:6379 or auto); default: a local Ray instance",
)
@click.option("--dry-run", is_flag=True, help="list every run, its state and its cost; run none")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars, only summary lines")
@click.option(
    "--batch-lambdas/--no-batch-lambdas",
    default=None,
    help="train runs that differ only in weight_decay as one batched model sharing each batch "
    "[default: off; it measured slower on the CPU, and bench/gpu_check.sh measures it on a GPU]",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Choice(["tensorboard", "mlflow"]),
    help="also log metrics to TensorBoard (run folder) or MLflow (MLFLOW_TRACKING_URI) "
    "(repeatable)",
)
def run(
    preset: str | None,
    config_file: str | None,
    assignments: tuple[str, ...],
    grid: tuple[str, ...],
    out_dir: str,
    jobs: int | None,
    quiet: bool,
    batch_lambdas: bool | None,
    backend: str,
    address: str | None,
    dry_run: bool,
    logs: tuple[str, ...],
) -> None:
    """Train, then prune round after round, recording every sparsity (resumes if re-run).

    PRESET may be a study (a preset with grid axes, e.g. quetu2023); a --config YAML file
    may hold a `grid:` mapping of keys to lists of values.
    """
    import time

    from sparsedd.sweep.jobs import group_jobs
    from sparsedd.sweep.plan import format_plan, parse_grid_options, plan, sweep_configs
    from sparsedd.sweep.status import write_sweep_file
    from sparsedd.sweep.study import study_cells
    from sparsedd.sweep.trackers import check_installed, sweep_parent
    from sparsedd.training.progress import ConsoleReporter, duration

    if address is not None and backend != "ray":
        raise UserError("--address is for --backend ray; add --backend ray or drop --address")
    if "mlflow" in logs and backend == "ray":
        raise UserError(
            "--log mlflow works with the local backend (every Ray worker would write MLflow's "
            "store); use --log tensorboard with --backend ray"
        )
    check_installed(logs)
    if backend == "ray" and not dry_run:
        from sparsedd.sweep.ray_backend import import_ray

        import_ray()  # fail in one line before anything is loaded or written
    from sparsedd.cli.run_setup import (
        OWN_DATA_PRESET,
        default_preset,
        note_model_fit,
        note_own_data,
        sized_for_data,
    )

    implicit = preset is None
    preset = preset or default_preset(config_file, assignments)
    cells = study_cells(preset, config_file, parse_grid_options(grid))
    labelled = sweep_configs(cells, assignments)
    if preset == OWN_DATA_PRESET:
        labelled = sized_for_data(labelled, config_file, [*assignments, *grid])
    if implicit and preset == OWN_DATA_PRESET:
        note_own_data()  # once the data is found: a refusal stays the only line
    _note_ignored_keys([cfg for _, cfg in labelled], config_file, [*assignments, *grid])
    note_model_fit([cfg for _, cfg in labelled])
    if backend == "local" and not dry_run:
        from sparsedd.training.trainer import check_device

        for device in {cfg.device for _, cfg in labelled}:
            check_device(device)  # also for runs already done: the config is wrong here
    planned = plan(labelled, out_dir)
    if dry_run:
        click.echo(format_plan(planned))
        return
    from sparsedd.training.experiment import run_dir

    finished = ConsoleReporter(show_bars=False)
    for p in planned:
        if p.state == "done":
            finished.start(p.id, run_dir(out_dir, p.cfg), p.cfg, p.label)
    finished.finish()
    configs = [p.cfg for p in planned if p.state != "done"]
    if not configs:
        return
    if len(configs) > 1:
        _preflight(configs)  # a grid fails on its last config's data before its first run
        write_sweep_file(out_dir, planned)
    labels = {p.id: p.label for p in planned}
    groups = group_jobs(configs, batch_lambdas)
    started = time.monotonic()
    if backend == "ray":
        from sparsedd.sweep.ray_backend import run_ray

        run_ray(groups, out_dir, address, logs=logs)
    else:
        from sparsedd.sweep.local import machine_slots, run_local

        slots = machine_slots(configs[0].device, jobs)
        grid_values = {k: [str(v) for v in vs] for k, vs in parse_grid_options(grid).items()}
        with sweep_parent(logs, out_dir, grid_values, len(configs)) as parent:
            run_local(groups, out_dir, slots, quiet, labels, logs, parent)
    if len(planned) > 1:
        click.echo(
            f"grid done: {len(planned)} runs in {duration(time.monotonic() - started)}, "
            f"results in {out_dir}; next: sparsedd report {out_dir}",
            err=True,
        )


def _note_ignored_keys(configs: list[Any], config_file: str | None, options: list[str]) -> None:
    """Say once, on stderr, of each key the user set that a run does not read."""
    from sparsedd.cli.run_setup import given_keys
    from sparsedd.config import ignored_notes

    given = given_keys(config_file, options)
    notes = dict.fromkeys(note for cfg in configs for note in ignored_notes(cfg, given))
    for note in notes:
        click.echo(f"sparsedd: note: {note}", err=True)


@cli.command()
@click.argument("out_dir", default=DEFAULT_OUT, type=click.Path(file_okay=False))
def status(out_dir: str) -> None:
    """Runs done, running and waiting in OUT_DIR, rounds done, and an ETA."""
    from sparsedd.sweep.status import format_status, sweep_status

    click.echo(format_status(sweep_status(out_dir)))


# ---------------------------------------------------------------- results


def table_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(columns, config keys among them) of the `results` table: run_id, the config keys that
    name runs (TABLE_KEYS and every other key that differs between runs), seed, TABLE_COLUMNS."""
    from sparsedd.analysis.tables import differing_keys

    present = {k for row in rows for k in row}
    keys = [k for k in TABLE_KEYS if k in present]
    keys += [k for k in differing_keys(rows) if k not in keys]
    keys += ["seed"] if "seed" in present else []
    return ["run_id", *keys, *TABLE_COLUMNS], keys


def format_rows(
    rows: list[dict[str, Any]],
    fmt: str,
    columns: Sequence[str] | None = None,
    exact: Sequence[str] = (),
) -> str:
    """Rows as JSON, CSV (every field) or an aligned table of ``columns`` (default: those of
    ``table_columns``); ``exact`` columns show floats in full (λ = 1e-05 is not 0.0000)."""
    if columns is None:
        columns, exact = table_columns(rows)
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}
                )
        return buf.getvalue().rstrip("\n")
    table = [[_cell(row.get(c), c in exact) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join(lines)


def _cell(value: Any, exact: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and exact:
        return repr(value)  # the shortest text that reads back as the same number
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


@cli.command()
@click.argument("out_dir", default=DEFAULT_OUT, type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--epochs", is_flag=True, help="print the per-epoch training loss and accuracy")
def results(out_dir: str, fmt: str, epochs: bool) -> None:
    """Print every recorded round (or, with --epochs, epoch) of every run in OUT_DIR.

    Rounds are sorted by config, then seed; they have the columns of `sparsedd export`.
    """
    from sparsedd.analysis.tables import order_rows
    from sparsedd.store.results import ResultsStore

    store = ResultsStore(out_dir, create=False)
    if epochs:
        rows = store.epoch_rows()
        click.echo(format_rows(rows, fmt, columns=list(rows[0]) if rows else ["run_id"]))
    else:
        rows = order_rows(store.round_rows())
        columns = list(dict.fromkeys(k for row in rows for k in row))  # runs may lack keys
        click.echo(format_rows([{c: row.get(c) for c in columns} for row in rows], fmt))


from sparsedd.cli.analysis import analyze, export, plot, report  # noqa: E402
from sparsedd.cli.predict import predict  # noqa: E402
from sparsedd.cli.presets import models, presets  # noqa: E402

for _command in (analyze, plot, report, export, predict, presets, models):
    cli.add_command(_command)


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="sparsedd",
            standalone_mode=False,
        )
    except UserError as err:
        _fail(str(err))
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        sys.exit(0)
    except click.ClickException as err:
        _fail(err.format_message().replace("\n", " "))
    except Interrupted as err:
        print(
            f"sparsedd: {err}; progress is saved: re-run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C before a run could start
        print("sparsedd: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    one_line = " ".join(message.split())  # an error is always exactly one line
    print(f"sparsedd: error: {one_line}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
