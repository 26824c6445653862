"""Signals with real processes: SIGTERM saves progress like Ctrl-C; a `--jobs` sweep stops as a
whole on SIGINT or SIGTERM to its parent (running workers save and exit, queued runs never start,
no worker outlives the parent); Ctrl-C while torch imports exits 130 with one line.

Every wait is bounded and keyed to a line the process prints (never a fixed sleep), so that a
loaded machine only makes the tests slower, not flaky.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsedd.store.results import ResultsStore

LONG = ["--set", "epochs=400", "--set", "dense_epochs=400", "--set", "threads=1"]
RUN = [sys.executable, "-m", "sparsedd", "run", "--preset", "tiny", "-q", *LONG]
WAIT_S = 180


def wait_for_lines(proc: subprocess.Popen[str], prefix: str, count: int) -> list[str]:
    """Read stderr until ``count`` lines start with ``prefix`` (the process is then training)."""
    assert proc.stderr is not None
    seen, found = [], []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            found.append(line)
    assert len(found) == count, "".join(seen)
    return seen


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def assert_stopped_line(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("sparsedd:")]
    assert len(lines) == 1 and "re-run the same command to resume" in lines[0], err


def saved_progress(out: Path) -> dict[str, bool]:
    """Per run folder: whether it holds saved progress or recorded rounds."""
    done = {r["run_id"] for r in ResultsStore(out, create=False).round_rows()}
    return {
        folder.name: (folder / "progress.safetensors").exists() or folder.name in done
        for folder in (out / "runs").iterdir()
    }


def test_sigterm_saves_progress_and_exits_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([*RUN, "--out", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(proc, "run ", 1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert_stopped_line(err)
    assert list(saved_progress(out).values()) == [True]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sweep_stops_as_a_whole(sig: signal.Signals, tmp_path: Path) -> None:
    """Four seeds, two workers: both running runs save, the two queued ones never start."""
    out = tmp_path / "out"
    cmd = [*RUN, "--grid", "seed=0,1,2,3", "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(proc, "run ", 2)  # both workers announced their run: both train
        workers = children(proc.pid)
        proc.send_signal(sig)  # to the parent alone
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert_stopped_line(err)
    assert wait_gone(workers) == []
    progress = saved_progress(out)
    assert len(progress) == 2 and all(progress.values()), progress


def test_sweep_workers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [*RUN, "--grid", "seed=0,1", "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(proc, "run ", 2)
        workers = [p for p in children(proc.pid) if alive(p)]
        proc.kill()  # SIGKILL: the parent cannot tell anyone
        proc.wait(timeout=WAIT_S)
        assert wait_gone(workers) == []
    finally:
        proc.kill()
    assert all(saved_progress(out).values())


# A stand-in for `import torch` that announces itself and then takes its time, so that Ctrl-C
# lands while the command imports torch, at a known moment.
_SLOW_TORCH = r"""
import sys, time
class SlowTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("IMPORTING TORCH", flush=True)
            time.sleep(120)
        return None
sys.meta_path.insert(0, SlowTorch())
from sparsedd.cli.main import main
main(sys.argv[1:])
"""


def test_ctrl_c_while_torch_imports_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", _SLOW_TORCH, "run", "--preset", "tiny", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "IMPORTING TORCH"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsedd: interrupted"), err
    assert not out.exists()
