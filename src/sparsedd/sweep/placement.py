"""Where the jobs of a sweep run on one machine: one per GPU, or cores shared on a CPU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """A place one job runs at a time: a device and its CPU threads."""

    device: str
    threads: int


def local_slots(device: str, jobs: int | None, gpu_count: int, cpu_count: int) -> list[Slot]:
    """The slots of the local backend.

    ``device`` is the runs' config value. ``auto`` or ``cuda`` on a machine with GPUs: one
    slot per GPU (``cuda:0`` … ``cuda:G-1``; ``jobs`` may ask for fewer). ``cuda:N``: that GPU
    only. On the CPU: ``jobs`` slots (at most one per core) whose threads together never
    exceed the cores.
    """
    cores = max(1, cpu_count)
    if device.startswith("cuda:"):
        return [Slot(device, 1)]
    if device in ("auto", "cuda") and gpu_count > 0:
        n = min(jobs or gpu_count, gpu_count)
        per = max(1, cores // n)
        return [Slot(f"cuda:{i}", per) for i in range(n)]
    n = min(jobs or 1, cores)
    return [Slot("cpu", cores // n) for _ in range(n)]


def job_threads(slot: Slot, configured: int) -> int:
    """Threads a job uses in ``slot``: its config's value, capped by the slot's share."""
    return min(configured, slot.threads) if configured else slot.threads
