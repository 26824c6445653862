"""Set-up on a stock Debian: no `python`, a system pip that refuses (PEP 668), a venv instead.

scripts/setup.sh runs against stub commands on a PATH that has no `python`: `python3` and `pip`
answer `-m pip` with Debian's externally-managed-environment refusal, `python3 -m venv DIR`
creates DIR/bin/python (a stub that logs its arguments), apt-get logs what it would install.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
BASH = shutil.which("bash")

_PEP668 = 'echo "error: externally-managed-environment" >&2; exit 1'
_VENV_PYTHON = '#!{bash}\necho "venv-python $*" >> "$SETUP_LOG"\n'
_PYTHON3 = """#!{bash}
echo "python3 $*" >> "$SETUP_LOG"
case "$1 $2" in
  "-m venv") /bin/mkdir -p "$3/bin"; /bin/cp "$VENV_STUB" "$3/bin/python"; exit 0 ;;
  "-m pip") {pep668} ;;
  "-c "*) exit "${{ENSUREPIP_MISSING:-0}}" ;;
esac
"""


def _stub(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def stock(tmp_path: Path) -> dict:
    """A copy of the set-up script in an empty repository and a stock-Debian-like PATH."""
    if BASH is None:
        pytest.skip("bash is not installed")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("dirname", "id", "ln", "mkdir"):
        found = shutil.which(tool)
        assert found, tool
        (bin_ / tool).symlink_to(found)
    venv_stub = tmp_path / "venv-python"
    _stub(venv_stub, _VENV_PYTHON.format(bash=BASH))
    _stub(bin_ / "python3", _PYTHON3.format(bash=BASH, pep668=_PEP668))
    for pip in ("pip", "pip3"):
        _stub(bin_ / pip, f'#!{BASH}\necho "system-pip $*" >> "$SETUP_LOG"\n{_PEP668}\n')
    _stub(bin_ / "apt-get", f'#!{BASH}\necho "apt-get $*" >> "$SETUP_LOG"\n')
    log = tmp_path / "calls.log"
    env = {"PATH": str(bin_), "SETUP_LOG": str(log), "VENV_STUB": str(venv_stub)}
    return {"repo": repo, "log": log, "env": env, "tmp": tmp_path}


def _setup(stock: dict, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run(
        [BASH, str(stock["repo"] / "scripts" / "setup.sh"), *args],
        env={**stock["env"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = stock["log"].read_text() if stock["log"].exists() else ""
    return proc, log


def test_setup_creates_a_venv_and_installs_into_it(stock):
    proc, log = _setup(stock, "--test")
    assert proc.returncode == 0, proc.stderr
    assert "python3 -m venv .venv" in log
    assert "venv-python -m pip install -q -e .[test]" in log
    assert "system-pip" not in log and "python3 -m pip" not in log
    assert (stock["repo"] / ".venv" / "bin" / "python").exists()
    # Run again: the existing .venv is reused, not recreated.
    stock["log"].unlink()
    proc, log = _setup(stock)
    assert proc.returncode == 0, proc.stderr
    assert "-m venv" not in log and "venv-python -m pip install -q -e ." in log


def test_setup_installs_python3_venv_when_ensurepip_is_missing(stock):
    proc, log = _setup(stock, ENSUREPIP_MISSING="1")
    assert proc.returncode == 0, proc.stderr
    if os.geteuid() == 0:
        assert re.search(r"apt-get install .*python3-venv", log), log
    else:
        assert "python3-venv" in proc.stderr


def test_setup_installs_python3_when_there_is_none(stock):
    """A minimal Debian image has no python3 either: apt-get installs it, then the venv."""
    python3 = Path(stock["env"]["PATH"]) / "python3"
    parked = stock["tmp"] / "python3"
    python3.rename(parked)
    apt = f'#!{BASH}\necho "apt-get $*" >> "$SETUP_LOG"\n'
    apt += f'case "$*" in *python3*) /bin/cp "{parked}" "{python3}" ;; esac\n'
    _stub(Path(stock["env"]["PATH"]) / "apt-get", apt)
    proc, log = _setup(stock)
    if os.geteuid() != 0:
        assert proc.returncode != 0 and "python3 python3-venv" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"apt-get install .*python3 python3-venv", log), log
    assert "python3 -m venv .venv" in log and "venv-python -m pip install -q -e ." in log


def test_setup_refuses_a_dangling_venv_link_in_one_line(stock):
    (stock["repo"] / ".venv").symlink_to(stock["tmp"] / "gone")
    proc, _ = _setup(stock)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "remove .venv" in proc.stderr


def test_setup_reuses_an_active_virtual_environment(stock):
    active = stock["tmp"] / "active-env"
    (active / "bin").mkdir(parents=True)
    shutil.copy(stock["env"]["VENV_STUB"], active / "bin" / "python")
    proc, log = _setup(stock, VIRTUAL_ENV=str(active))
    assert proc.returncode == 0, proc.stderr
    assert "-m venv" not in log and "venv-python -m pip install -q -e ." in log
    link = stock["repo"] / ".venv"
    assert link.is_symlink() and link.resolve() == active.resolve()


def _readme_command(comment: str) -> str:
    """The command line that follows ``# comment`` in the README's set-up block."""
    match = re.search(rf"# {re.escape(comment)}[^\n]*\n([^\n]+)", README)
    assert match, comment
    return match.group(1)


def test_readme_commands_and_ci_use_the_venv():
    demo = _readme_command("the demo")
    tests = _readme_command("the test suite")
    for command in (demo, tests):
        steps = [s.strip() for s in command.split("&&")]
        assert steps[0].startswith("bash scripts/setup.sh")
        assert all(s.startswith(".venv/bin/") for s in steps[1:]), steps
    assert tests == "bash scripts/setup.sh --test && .venv/bin/python -m pytest"
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [
        "bash scripts/setup.sh --test",
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        '.venv/bin/mkdocs build --strict -d "$(mktemp -d)"',
        ".venv/bin/python -m pytest",
    ]
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()


def test_readme_points_to_no_file_outside_the_repository():
    assert "../" not in README and "shared/" not in README
