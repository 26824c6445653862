"""Where and with what a round was computed: sparsedd version, git commit, torch, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

import sparsedd


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout sparsedd runs from (``+dirty`` with local changes), else None.

    None when the package is installed from a wheel or git is missing.
    """
    root = Path(sparsedd.__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, the CPU's model name otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def provenance(device: torch.device) -> dict[str, str | None]:
    """The provenance fields recorded with every round (see store.PROVENANCE_FIELDS)."""
    return {
        "sparsedd_version": sparsedd.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "device_name": device_name(device),
    }
