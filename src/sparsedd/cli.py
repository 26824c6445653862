"""The `sparsedd` command line: run, results, presets (analysis commands live beside it)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

import click

from sparsedd.errors import UserError

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


def _parse_grid(items: Sequence[str]) -> list[list[str]]:
    """``KEY=V1,V2`` options → per key, the list of ``KEY=V`` assignments."""
    axes = []
    seen: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--grid expects KEY=V1,V2,..., got {item!r} (no '=')")
        key, values = item.split("=", 1)
        name = key.strip()
        if name in seen:  # a second --grid KEY would silently override the first
            raise UserError(
                f"--grid {name} is given twice ({seen[name]!r} and {item!r}); "
                f"list every value in one --grid {name}=V1,V2,..."
            )
        seen[name] = item
        axis = [f"{key}={v}" for v in values.split(",") if v != ""]
        if not axis:
            raise UserError(f"--grid {item!r} lists no values; give KEY=V1,V2,...")
        axes.append(axis)
    return axes


def _preflight(configs: list[Any]) -> None:
    """Load each dataset once and check every config's split sizes before any run starts."""
    from sparsedd.data import check_split_sizes, load_dataset

    sizes: dict[tuple[str, str], int] = {}
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir)
        if key not in sizes:
            sizes[key] = len(load_dataset(cfg).train_y)
        check_split_sizes(cfg, sizes[key])


@cli.command()
@click.option("--preset", "-p", default="demo", show_default=True, help="preset to start from")
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
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="runs of a grid trained at once, each in its own process",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress bars, only summary lines")
@click.option(
    "--batch-lambdas/--no-batch-lambdas",
    default=None,
    help="train runs that differ only in weight_decay as one batched model sharing each batch "
    "[default: on for CUDA; off on the CPU, where it measured no faster]",
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
    preset: str,
    config_file: str | None,
    assignments: tuple[str, ...],
    grid: tuple[str, ...],
    out_dir: str,
    jobs: int,
    quiet: bool,
    batch_lambdas: bool | None,
    logs: tuple[str, ...],
) -> None:
    """Train, then prune round after round, recording every sparsity (resumes if re-run)."""
    import time

    from sparsedd.config import resolve_config, run_id
    from sparsedd.progress import duration
    from sparsedd.trackers import check_installed, sweep_parent

    check_installed(logs)
    axes = _parse_grid(grid)
    combos = [list(c) for c in itertools.product(*axes)] or [[]]
    configs = [resolve_config(preset, config_file, [*assignments, *c]) for c in combos]
    if len(configs) > 1:
        _preflight(configs)  # a grid fails on its last config's data before its first run
    # A grid's runs are named by their grid values (what differs), besides their hash.
    labels = {run_id(cfg): " ".join(c) for cfg, c in zip(configs, combos, strict=True)}
    groups = _job_groups(configs, batch_lambdas)
    started = time.monotonic()
    keys = {a[0].split("=", 1)[0]: [v.split("=", 1)[1] for v in a] for a in axes}
    with sweep_parent(logs, out_dir, keys, len(configs)) as parent:
        if jobs > 1 and len(groups) > 1:
            _run_parallel(groups, out_dir, jobs, labels, logs, parent)
        else:
            for group in groups:
                _run_group(group, out_dir, quiet, labels, logs, parent)
    if len(configs) > 1:
        click.echo(
            f"grid done: {len(set(labels))} runs in {duration(time.monotonic() - started)}, "
            f"results in {out_dir}; next: sparsedd report {out_dir}",
            err=True,
        )


def _job_groups(configs: list[Any], batch_lambdas: bool | None) -> list[list[Any]]:
    """Configs grouped into jobs: runs differing only in λ share one job when batched."""
    from sparsedd.batched import batch_key
    from sparsedd.train import resolve_device

    groups: dict[Any, list[Any]] = {}
    for i, cfg in enumerate(configs):
        use = batch_lambdas
        if use is None:
            use = resolve_device(cfg.device).type == "cuda"
        groups.setdefault(batch_key(cfg) if use else i, []).append(cfg)
    return list(groups.values())


def _run_group(
    group: list[Any],
    out_dir: str,
    quiet: bool,
    labels: dict[str, str] | None = None,
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    """Run one job: a single run, or runs differing only in λ as one batched model."""
    from sparsedd.batched import run_batched
    from sparsedd.config import run_id
    from sparsedd.experiment import Experiment, StopFlag, run_dir
    from sparsedd.progress import ConsoleReporter
    from sparsedd.trackers import with_trackers

    labels = labels or {}
    stop = StopFlag()
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(stop, "requested", True))
    try:
        console = ConsoleReporter(show_bars=not quiet and len(group) == 1)
        reporter = with_trackers(console, logs, out_dir, parent)
        if len(group) > 1:
            for cfg in group:
                rid = run_id(cfg)
                reporter.start(rid, run_dir(out_dir, cfg), cfg, labels.get(rid, ""))
            with reporter:
                run_batched(group, out_dir, reporter=reporter, stop=stop)
            reporter.finish()
            return
        exp = Experiment(group[0], out_dir, reporter=reporter, stop=stop)
        reporter.start(exp.id, exp.folder, exp.cfg, labels.get(exp.id, ""))
        with reporter:
            exp.run()
        reporter.finish()
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_parallel(
    groups: list[list[Any]],
    out_dir: str,
    jobs: int,
    labels: dict[str, str],
    logs: Sequence[str] = (),
    parent: str | None = None,
) -> None:
    import dataclasses

    threads = max(1, (os.cpu_count() or 1) // jobs)
    groups = [
        [c if c.threads else dataclasses.replace(c, threads=threads) for c in group]
        for group in groups
    ]
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_ignore_sigint) as pool:
        futures = [
            pool.submit(_run_group, group, out_dir, True, labels, logs, parent) for group in groups
        ]
        for fut in as_completed(futures):
            fut.result()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------- results


def table_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(columns, config keys among them) of the `results` table: run_id, the config keys that
    name runs (TABLE_KEYS and every other key that differs between runs), seed, TABLE_COLUMNS."""
    from sparsedd.analysis import differing_keys

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
    from sparsedd.analysis import order_rows
    from sparsedd.store import ResultsStore

    store = ResultsStore(out_dir, create=False)
    if epochs:
        rows = store.epoch_rows()
        click.echo(format_rows(rows, fmt, columns=list(rows[0]) if rows else ["run_id"]))
    else:
        rows = order_rows(store.round_rows())
        columns = list(dict.fromkeys(k for row in rows for k in row))  # runs may lack keys
        click.echo(format_rows([{c: row.get(c) for c in columns} for row in rows], fmt))


# ---------------------------------------------------------------- presets


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@click.option(
    "--parameters",
    is_flag=True,
    help="print the model's size for the preset's dataset (no data is read)",
)
def presets(name: str | None, fmt: str, parameters: bool) -> None:
    """List the presets, or print preset NAME as a fully resolved config."""
    from sparsedd.config import to_dict, to_yaml, validate
    from sparsedd.presets import preset_config, preset_description, preset_names

    if name is None:
        if parameters:
            raise UserError(
                "--parameters needs a preset NAME, e.g. sparsedd presets demo --parameters"
            )
        width = max(map(len, preset_names()))
        for preset in preset_names():
            click.echo(f"{preset.ljust(width)}  {preset_description(preset)}")
        return
    cfg = validate(preset_config(name))
    if parameters:
        total, prunable = _model_size(cfg)
        click.echo(f"parameters {total}\nprunable {prunable}")
        return
    click.echo(json.dumps(to_dict(cfg), indent=1) if fmt == "json" else to_yaml(cfg).rstrip())


def _model_size(cfg: Any) -> tuple[int, int]:
    """(parameters, prunable weights) of a config's model, from its dataset's known shape."""
    from sparsedd.data import DATASET_SHAPES
    from sparsedd.models import InputSpec, model_size

    if cfg.dataset not in DATASET_SHAPES:
        raise UserError(
            f"the image shape of dataset {cfg.dataset!r} is known only from its files; "
            f"--parameters works for: {', '.join(DATASET_SHAPES)}"
        )
    return model_size(cfg, InputSpec(*DATASET_SHAPES[cfg.dataset]))


@cli.command()
def models() -> None:
    """List the registered models, datasets and pruning criteria."""
    from sparsedd.data import DATASETS
    from sparsedd.models import MODELS
    from sparsedd.prune import CRITERIA

    for label, registry in (
        ("models", MODELS),
        ("datasets", DATASETS),
        ("pruning criteria", CRITERIA),
    ):
        click.echo(f"{label}: {', '.join(registry.names())}")


from sparsedd.cli_analysis import analyze, export, plot, report  # noqa: E402

for _command in (analyze, plot, report, export):
    cli.add_command(_command)


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    from sparsedd.experiment import Interrupted

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
    except click.exceptions.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    one_line = " ".join(message.split())  # an error is always exactly one line
    print(f"sparsedd: error: {one_line}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
