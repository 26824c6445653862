"""The MNIST-format (IDX) files of a dataset: found in ``data_dir`` (or the system copy) and
kept, decompressed, in torchvision's ``raw`` folder, which must hold exactly what its sources
hold.

The files the user gave are the source, identified by content: at every load each copy in
``raw`` is compared byte for byte with its (decompressed) source and replaced when they differ,
so that an edited source file is what training reads, never a stale copy.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
import zlib
from pathlib import Path

from sparsedd.errors import DataError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def gather_idx_files(raw: Path, places: list[Path]) -> None:
    """Make torchvision's ``raw`` folder hold the IDX files found in ``places`` (decompressed).

    The files the user gave (the first place holding each) are the source: a copy in ``raw``
    whose content differs from its source is replaced, so that an edited source file is what
    training reads (never a stale copy). Without a source, ``raw``'s own file is the data.
    """
    for fname in IDX_FILES:
        source = _source_file(fname, places, raw / fname)
        if source is not None and not _same_content(source, raw / fname):
            _copy_decompressed(source, raw / fname)


def _source_file(fname: str, places: list[Path], derived: Path) -> Path | None:
    """The first regular file ``fname`` or ``fname.gz`` in ``places`` (not ``derived`` itself)."""
    for place in places:
        for candidate in (place / fname, place / f"{fname}.gz"):
            if candidate.is_file() and not _is_same_file(candidate, derived):
                return candidate
    return None


def _is_same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _same_content(src: Path, derived: Path) -> bool:
    """Whether ``derived`` holds exactly the (decompressed) bytes of ``src``."""
    if not derived.is_file():
        return False
    opener = gzip.open if src.suffix == ".gz" else open
    try:
        with opener(src, "rb") as a, open(derived, "rb") as b:
            while True:
                chunk = a.read(1 << 20)
                if chunk != b.read(len(chunk) or 1):
                    return False
                if not chunk:
                    return True
    except (OSError, EOFError, zlib.error):  # the copy below says what cannot be read
        return False


def _copy_decompressed(src: Path, dst: Path) -> None:
    opener = gzip.open if src.suffix == ".gz" else open
    created = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    except OSError as err:
        raise DataError(
            f"cannot write dataset files to {dst.parent}: {err.strerror or err}; "
            f"set data_dir to a writable folder"
        ) from None
    try:
        with opener(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, dst)
    except (OSError, EOFError, zlib.error) as err:
        Path(tmp).unlink(missing_ok=True)
        for folder in created:  # leave data_dir as it was
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, PermissionError):
            raise DataError(
                f"cannot read dataset file {src}: permission denied; make it readable "
                f"(chmod u+r) or give another data_dir"
            ) from None
        raise DataError(f"cannot read dataset file {src}: {err}; fetch a fresh copy") from None


def check_readable(path: Path, what: str) -> None:
    """DataError (the cause, never "corrupt") unless ``path`` is a regular file we may read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DataError(
                f"{what} {path} is not a regular file (a folder, pipe or device); put the "
                f"file itself there"
            )
        with open(path, "rb"):
            pass
    except OSError as err:
        raise DataError(
            f"cannot read {what} {path}: {err.strerror or err}; make it readable "
            f"(chmod u+r) or give another data_dir"
        ) from None
