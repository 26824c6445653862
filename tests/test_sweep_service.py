"""Sweeps as a service: run_sweep(request) on a backend from the registry, a backend added from
this test module, and every config error of a sweep reported at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import (
    RecordingBackend,
    assert_one_error_line,
    assert_refused_unchanged,
    registered_backend,
    run_cli,
)

from sparsedd.store.results import ResultsStore
from sparsedd.sweep.backends import SweepRequest
from sparsedd.sweep.service import run_sweep


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    """A backend registered from this test module as ``test-inline``, then removed."""
    with registered_backend("test-inline", RecordingBackend(refused_seed=13)) as made:
        yield made


def test_a_backend_from_a_test_module_runs_a_sweep(backend, tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--grid", "seed=0,1", "--out", str(tmp_path)]
    code, _, err = run_cli([*args, "--backend", "test-inline", "-q"], capsys)
    assert code == 0, err
    assert len(backend.checked) == 1 and backend.jobs == ["seed=0", "seed=1"]
    rows = ResultsStore(tmp_path).round_rows()
    assert sorted({r["seed"] for r in rows}) == [0, 1] and len(rows) == 6
    assert "grid done: 2 runs" in err


def test_run_sweep_is_callable_without_the_cli(backend, tmp_path) -> None:
    import sparsedd

    assert sparsedd.run_sweep is run_sweep and sparsedd.SweepRequest is SweepRequest
    request = SweepRequest(str(tmp_path), preset="tiny", grid=("seed=0,1",), backend="test-inline")
    planned = run_sweep(request).planned
    assert [p.state for p in planned] == ["new", "new"]  # as planned before training
    again = run_sweep(request)
    assert [p.state for p in again.planned] == ["done", "done"] and again.trained == 0
    assert len(backend.jobs) == 2  # the second call trained nothing


def test_a_backend_refuses_runs_before_any_starts(backend, tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--grid", "seed=0,13", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(
        tmp_path, [*args, "--backend", "test-inline"], ["test backend refuses seed 13"], capsys
    )
    assert backend.jobs == []


def test_an_unknown_backend_is_one_line(tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--out", str(tmp_path / "out"), "--backend", "rey"]
    err = assert_refused_unchanged(tmp_path, args, ["unknown backend 'rey'", "'ray'"], capsys)
    assert "local, ray" in err


def test_every_config_error_of_a_sweep_is_reported_at_once(tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--out", str(tmp_path / "out"), "--dry-run"]
    args += ["--grid", "lr=0.001,-1", "--grid", "noise=0.1,1.5", "--grid", "seed=0,1"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 2 and stdout == ""
    assert_one_error_line(
        err,
        [
            "6 of 8 runs have config errors: ",
            # one error of several runs names them all
            "[lr=0.001 noise=1.5 seed=0, lr=0.001 noise=1.5 seed=1] config key 'noise' must "
            "be < 1.0, not 1.5; ",
            "[lr=-1 noise=0.1 seed=0, lr=-1 noise=0.1 seed=1] config key 'lr' must be > 0.0",
            # one run with two errors: both named
            "[lr=-1 noise=1.5 seed=0, lr=-1 noise=1.5 seed=1] config key 'noise' must be < "
            "1.0, not 1.5; config key 'lr' must be > 0.0, not -1.0",
        ],
    )


def test_an_error_of_every_run_reads_as_itself(tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--out", str(tmp_path), "--grid", "seed=0,1"]
    code, _, err = run_cli([*args, "--set", "lr=-1", "--dry-run"], capsys)
    assert code == 2
    assert_one_error_line(err, ["config key 'lr' must be > 0.0, not -1"])
    assert "runs have config errors" not in err
