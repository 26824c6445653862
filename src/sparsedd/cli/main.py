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
    "activation_entropy",
    "val_acc",
    "train_acc",
    "round_epochs",
    "seconds",
)
#: Columns that read "collapsed" in a round the run skipped once it had collapsed (the collapse
#: stop: nothing was trained or measured); CSV and JSON keep the metrics None and the
#: ``collapsed`` flag.
COLLAPSED_COLUMNS = ("test_acc", "memorization", "activation_entropy", "val_acc", "train_acc")
COLLAPSED = "collapsed"
#: Config keys the `results` table always shows (when present), besides those that differ.
TABLE_KEYS = ("model", "dataset", "noise", "weight_decay")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparsedd")
def cli() -> None:
    """Study sparse double descent: train on noisy labels, prune, record every sparsity."""


# ---------------------------------------------------------------- run


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
    default="local",
    show_default=True,
    help="where runs execute: local (this machine), ray (a Ray cluster; pip install "
    "'sparsedd[ray]') or another registered backend",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster address (e.g. HEAD:6379 or auto); default: a local Ray instance",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="list every run, its state, its epochs and time left (at the pace of recorded "
    "rounds); run none",
)
@click.option(
    "--adaptive-seeds",
    default=None,
    metavar="START:MAX",
    help="seeds where they decide: START seeds a curve first, then one more seed a wave to each "
    "curve whose verdict is inconclusive, up to MAX (e.g. 2:5); a study YAML may say "
    "adaptive_seeds: '2:5'",
)
@click.option(
    "--control",
    is_flag=True,
    help="also train every run with pruning off (same seeds, rounds, epochs and data): the "
    "control that tells a fall caused by pruning from one caused by more training",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress bars, only summary lines")
@click.option("--batch-lambdas/--no-batch-lambdas", default=None, hidden=True)  # removed
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
    adaptive_seeds: str | None,
    control: bool,
) -> None:
    """Train, then prune round after round, recording every sparsity (resumes if re-run).

    PRESET may be a study (a preset with grid axes, e.g. quetu2023); a --config YAML file
    may hold a `grid:` mapping of keys to lists of values.
    """
    from sparsedd.sweep.backends import SweepRequest
    from sparsedd.sweep.plan import check_adaptive_bound, format_plan
    from sparsedd.sweep.service import describe, run_sweep

    if batch_lambdas is not None:
        raise UserError(
            "--batch-lambdas was removed (training runs that differ only in λ as one batched "
            "model measured slower than one by one: bench/batched_lambdas.py); drop the option"
        )
    check_adaptive_bound(adaptive_seeds)
    request = SweepRequest(
        preset=preset,
        config_file=config_file,
        assignments=assignments,
        grid=grid,
        out_dir=out_dir,
        backend=backend,
        jobs=jobs,
        address=address,
        logs=logs,
        quiet=quiet,
        dry_run=dry_run,
        adaptive_seeds=adaptive_seeds,
        control=control,
    )
    outcome = run_sweep(request, note=lambda line: click.echo(f"sparsedd: note: {line}", err=True))
    if dry_run and outcome.adaptive is not None:
        from sparsedd.sweep.adaptive import format_adaptive

        if outcome.adaptive.wave:
            click.echo(format_plan(outcome.adaptive.wave))
        click.echo(format_adaptive(outcome.adaptive))
    elif dry_run:
        click.echo(format_plan(outcome.planned))
    closing = describe(outcome, request)
    if closing:
        click.echo(closing, err=True)


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
    ``table_columns``); ``exact`` columns show floats in full (λ = 1e-05 is not 0.0000). In
    the table, the metrics of a collapsed round (``collapsed`` true) read "collapsed" ("settled"
    in a control's)."""
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
    table = [
        [
            (COLLAPSED if row.get("pruning", True) is not False else "settled")
            if row.get("collapsed") and c in COLLAPSED_COLUMNS
            else _cell(row.get(c), c in exact)
            for c in columns
        ]
        for row in rows
    ]
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

    Rounds are sorted by config, then seed; they have the columns of `sparsedd export`. The
    metrics of a round a run skipped once it had collapsed read "collapsed".
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
    from sparsedd.cli import restore_ctrl_c

    restore_ctrl_c()
    if sys.stdout is None:  # started with stdout closed (`>&-`): writing to it must fail
        sys.stdout = _ClosedOutput()
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
        from sparsedd.cli import INTERRUPTED

        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        if not _stdout_failed(err):
            raise
        _output_failed(err.strerror or str(err))
    except SystemExit:
        if type(sys.stdout).__name__ == "_PacifyFlushWrapper":  # click's exit on a broken pipe
            _output_failed("its reader closed it")
        raise
    sys.exit(code if isinstance(code, int) else 0)


class _ClosedOutput(io.TextIOBase):
    """Standard output when the process started without one: every write fails."""

    def write(self, text: str) -> int:
        """Refuse (OSError: Bad file descriptor) unless there is nothing to write."""
        if text:
            raise OSError(9, "standard output is closed")
        return 0


def _output_failed(why: str) -> None:
    _fail(
        f"cannot write to standard output ({why}); the output was cut short: write it to a "
        f"disk with free space, or to a reader that stays open"
    )


def _stdout_failed(err: OSError) -> bool:
    """Whether ``err`` came from writing standard output (full or closed): raised inside
    ``click.echo`` to stdout, or stdout cannot be flushed. If so, stdout is pointed at
    /dev/null, so that Python's own flush at exit prints no second error."""
    import os

    tb, in_echo = err.__traceback__, False
    while tb is not None:
        code, local = tb.tb_frame.f_code, tb.tb_frame.f_locals
        in_echo |= code.co_name == "echo" and "click" in code.co_filename and not local.get("err")
        tb = tb.tb_next
    if not in_echo:
        try:
            sys.stdout.flush()
            return False
        except (OSError, ValueError):
            pass
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass
    return True


def _fail(message: str) -> None:
    one_line = " ".join(message.split())  # an error is always exactly one line
    print(f"sparsedd: error: {one_line}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
