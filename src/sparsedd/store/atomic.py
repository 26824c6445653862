"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

Readers (and a later run) see the old file or the new one, never half of one: a kill or a full
disk leaves the previous file intact and at worst a ``.NAME.HOST-PID.*.tmp`` file. The next
write of the same file removes those whose writer (a process of this host) is gone; the next
run of the same run folder removes every one in it.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from sparsedd.errors import StoreError

TMP_SUFFIX = ".tmp"
DEFAULT_FIX = "free space or choose another output file"


def temp_files(folder: Path) -> list[Path]:
    """Temporary files that ``atomic_write`` left in ``folder`` (a write was killed)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file())


def _owner_tag() -> str:
    """``HOST-PID`` of this process, as it appears in its temporary files' names."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def remove_orphans(target: Path) -> None:
    """Remove the temporary files of ``target`` that a killed writer of this host left.

    Only files named by a process of this host that no longer runs are removed: a writer on
    another host (shared storage) or one still writing keeps its file.
    """
    host = _owner_tag().rsplit("-", 1)[0]
    name = re.escape(f".{target.name}.{host}-")
    pattern = re.compile(name + r"(\d+)\..*" + re.escape(TMP_SUFFIX))
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*{TMP_SUFFIX}"))
    except OSError:
        return
    for path in candidates:
        found = pattern.fullmatch(path.name)
        if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            path.unlink(missing_ok=True)


def _target(path: Path) -> Path:
    """The file to replace: a symlink's target (the link stays), which must be a regular file."""
    target = path.resolve() if path.is_symlink() else path
    if target.exists() and not target.is_file():
        raise StoreError(
            f"cannot write {path}: {target} is not a regular file; choose another output file"
        )
    return target


def _check_folders(path: Path, folder: Path) -> None:
    """StoreError when a file stands where ``folder`` (or a folder above it) must be."""
    for place in (folder, *folder.parents):
        if place.exists():
            if not place.is_dir():
                raise StoreError(
                    f"cannot write {path}: {place} is a file, not a folder; choose another "
                    f"output file, or move {place} away"
                )
            return


def _file_mode(target: Path) -> int:
    """The permissions the written file gets: the replaced file's, else what the umask allows."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(
    path: str | Path,
    write: Callable[[str], object],
    fix: str = DEFAULT_FIX,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see old or new, never half.

    ``errors`` are the exceptions of ``write`` that mean the disk refused the file (a full disk,
    an unwritable folder); they become one StoreError line ending in ``fix``.
    """
    path = Path(path)
    target = _target(path)
    _check_folders(path, target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = _file_mode(target)
        remove_orphans(target)
        prefix = f".{target.name}.{_owner_tag()}."
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=TMP_SUFFIX)
        os.close(fd)
        os.chmod(tmp, mode)  # mkstemp makes it private (0600); give it a normal file's mode
    except OSError as err:
        if isinstance(err, PermissionError):
            fix = "choose an output file in a folder you may write to"
        raise StoreError(f"cannot write {path}: {err.strerror or err}; {fix}") from None
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer that recreated the file (safetensors does) made it 0600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except errors as err:
        Path(tmp).unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise StoreError(f"cannot write {path}: {reason}; {fix}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, fix: str = DEFAULT_FIX) -> None:
    """Write a UTF-8 text file atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), fix)
