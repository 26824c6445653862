"""report, plot and export write a temporary file and rename it: a failed or killed write leaves
the previous file intact and no temporary file; an unwritable output is one line, exit 2."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import matplotlib.figure
import pandas as pd
import pytest
from support import BASE, curve, fill, run_cli

PREVIOUS = b"the previous, complete file"
OUTPUTS = {"plot": "sdd.png", "report": "report.html", "export": "rounds.csv"}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return fill(tmp_path / "out", [("a", BASE, curve([0.5, 0.6, 0.55]))])


def command(name: str, out: Path, target: Path | str) -> list[str]:
    return [name, str(out), "-o", str(target)]


def assert_one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("sparsedd: error: cannot write"), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def _writer(error: BaseException) -> Any:
    """A stand-in for savefig, to_csv or Path.write_text: writes part of the file, then fails."""

    def write(self: Any, first: Any, *args: Any, **kwargs: Any) -> None:
        Path(self if isinstance(self, Path) else first).write_bytes(b"half a fi")
        raise error

    return write


WRITERS = {
    "plot": (matplotlib.figure.Figure, "savefig"),
    "export": (pd.DataFrame, "to_csv"),
    "report": (Path, "write_text"),
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_full_disk_leaves_the_previous_file(
    name: str,
    results: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = results / OUTPUTS[name]
    target.write_bytes(PREVIOUS)
    monkeypatch.setattr(*WRITERS[name], _writer(OSError(errno.ENOSPC, "No space left")))
    code, _, err = run_cli(command(name, results, target), capsys)
    assert code == 2, err
    assert_one_line(err, str(target), "No space left")
    assert target.read_bytes() == PREVIOUS
    assert sorted(p.name for p in results.iterdir()) == sorted(["results.sqlite", target.name])


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_interrupted_write_leaves_the_previous_file(
    name: str,
    results: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C in the middle of writing: the old file stays whole, the partial one is removed."""
    target = results / OUTPUTS[name]
    target.write_bytes(PREVIOUS)
    monkeypatch.setattr(*WRITERS[name], _writer(KeyboardInterrupt()))
    code, _, _ = run_cli(command(name, results, target), capsys)
    assert code == 130
    assert target.read_bytes() == PREVIOUS
    assert sorted(p.name for p in results.iterdir()) == sorted(["results.sqlite", target.name])


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_under_proc_is_one_line(
    name: str, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(command(name, results, f"/proc/sparsedd-{OUTPUTS[name]}"), capsys)
    assert code == 2, err
    assert_one_line(err, "/proc/sparsedd-")


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_symlink_to_dev_full_is_one_line(
    name: str, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = results / OUTPUTS[name]
    link.symlink_to("/dev/full")
    code, _, err = run_cli(command(name, results, link), capsys)
    assert code == 2, err
    assert_one_line(err, str(link), "/dev/full", "not a regular file")
    assert link.is_symlink()


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_symlink_to_a_file_keeps_the_link(
    name: str, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = results / "elsewhere" / OUTPUTS[name]
    real.parent.mkdir()
    real.write_bytes(PREVIOUS)
    link = results / f"link-{OUTPUTS[name]}"
    link.symlink_to(real)
    code, _, err = run_cli(command(name, results, link), capsys)
    assert code == 0, err
    assert link.is_symlink() and real.read_bytes() != PREVIOUS and real.stat().st_size > 0


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_outputs_get_a_normal_files_permissions(
    name: str, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new output is as readable as any file the umask allows; a replaced one keeps its mode."""
    new, kept = results / f"new-{OUTPUTS[name]}", results / f"kept-{OUTPUTS[name]}"
    kept.write_bytes(PREVIOUS)
    kept.chmod(0o640)
    old_umask = os.umask(0o022)
    try:
        for target in (new, kept):
            code, _, err = run_cli(command(name, results, target), capsys)
            assert code == 0, err
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() != PREVIOUS
