"""One process at a time trains a run: an advisory lock file in each run folder.

Two sweeps that share a run (overlapping grids into one folder, on one machine or on Ray
workers that share the storage) would otherwise train it twice at once, each reading and
replacing the other's progress and checkpoint files. The lock is ``fcntl.flock`` on
``runs/<id>/.lock``: the kernel releases it when its process dies, however it dies, so a
killed run never leaves a folder locked. Waiting polls, so that Ctrl-C still stops a run
that waits for another.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sparsedd.errors import Interrupted, StoreError
from sparsedd.store.run_folder import RunFolder

POLL_S = 0.2


def _try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` if no other process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _locked(
    folder: Path, stopped: Callable[[], bool], waiting: Callable[[Path], None]
) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunFolder(folder).lock
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise StoreError(f"cannot create {lock}: {err.strerror}; choose a writable --out") from None
    try:
        if not _try_lock(fd):
            waiting(folder)
            while not _try_lock(fd):
                if stopped():
                    raise Interrupted(f"stopped while waiting for {folder}")
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_running(folder: Path) -> bool:
    """Whether a process holds the lock of run folder ``folder`` now (it is training the run).

    Only reads: the lock file is opened read-only and never created.
    """
    try:
        fd = os.open(RunFolder(folder).lock, os.O_RDONLY)
    except OSError:
        return False  # never locked: no process has trained the run here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def run_locks(
    folders: Sequence[Path],
    stopped: Callable[[], bool] = lambda: False,
    waiting: Callable[[Path], None] = lambda folder: None,
) -> Iterator[None]:
    """Hold the lock of every run folder in ``folders``, waiting while another process does.

    Locks are taken in sorted order, so that two batched groups sharing runs cannot wait on
    each other. ``waiting(folder)`` is called once when a lock is held elsewhere; while
    waiting, ``stopped()`` true raises Interrupted.
    """
    with ExitStack() as stack:
        for folder in sorted(set(folders)):
            stack.enter_context(_locked(folder, stopped, waiting))
        yield
