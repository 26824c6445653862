"""Issue 28's properties, tried by hypothesis: what is read from disk is trusted on content, not
metadata; anything under --out is either used or refused in one line with nothing changed; a
special file among the inputs is refused, never waited on.

- random bytes in dataset files under ``data_dir`` (modification time kept): a load through
  the existing decompressed copy equals a load from a fresh copy of the same files, or both
  refuse;
- random tampering with images or with the image cache (size and modification time kept):
  a load equals a fresh decode with no cache, or refuses;
- random files and folders where sparsedd keeps its own under ``--out``: a run succeeds, or
  exits 2 with one line and nothing under the folder changed;
- random special files (pipes, folders named like images) among the inputs: one line, at once.

Every example runs under an alarm: a read that blocks fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from datafiles import IDX_NAMES, write_idx_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from support import TINY, assert_one_error_line, run_cli, snapshot, tiny_config

from sparsedd.data import datasets as data_module
from sparsedd.data.datasets import load_dataset
from sparsedd.data.imagefolder import cache_path
from sparsedd.errors import UserError

SETTINGS = settings(
    max_examples=int(os.environ.get("SPARSEDD_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Seconds one example may take before it counts as a hang.
ALARM_S = 120


@contextlib.contextmanager
def no_hang(seconds: int = ALARM_S) -> Iterator[None]:
    """Fail (TimeoutError) instead of blocking past ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(load) -> object:
    """The loaded data's arrays, or "refused" for a UserError."""
    try:
        data = load()
    except UserError:
        return "refused"
    return [t.numpy().tobytes() for t in (data.train_x, data.train_y, data.test_x, data.test_y)]


def _keep_times(path: Path, change) -> None:
    stamp = path.stat()
    change()
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def _flip(path: Path, offsets: list[int], values: list[int]) -> None:
    data = bytearray(path.read_bytes())
    for offset, value in zip(offsets, values, strict=False):
        data[offset % len(data)] = value
    _keep_times(path, lambda: path.write_bytes(bytes(data)))


# ---------------------------------------------------------------- dataset files in data_dir


@SETTINGS
@given(
    file=st.sampled_from(IDX_NAMES),
    gz=st.booleans(),
    offsets=st.lists(st.integers(0, 2**20), min_size=1, max_size=6),
    values=st.lists(st.integers(0, 255), min_size=1, max_size=6),
)
def test_random_bytes_in_a_dataset_file_are_seen(monkeypatch, file, gz, offsets, values) -> None:
    with tempfile.TemporaryDirectory() as tmp, no_hang():
        root = Path(tmp) / "data"
        monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", Path(tmp) / "none")
        write_idx_dataset(root, n_train=24, n_test=8, gz=gz)
        cfg = tiny_config(dataset="fashion-mnist", data_dir=str(root), download=False, val_size=0)
        load_dataset(cfg)  # the decompressed copy now exists
        _flip(root / (f"{file}.gz" if gz else file), offsets, values)
        again = _outcome(lambda: load_dataset(cfg))
        fresh_root = Path(tmp) / "fresh"
        fresh_root.mkdir()
        for name in IDX_NAMES:
            source = root / (f"{name}.gz" if gz else name)
            shutil.copy2(source, fresh_root / source.name)
        fresh_cfg = tiny_config(
            dataset="fashion-mnist", data_dir=str(fresh_root), download=False, val_size=0
        )
        assert again == _outcome(lambda: load_dataset(fresh_cfg))


# ---------------------------------------------------------------- image cache


def _folder(root: Path) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (90 * c, 20 * i, 7)).save(root / split / name / f"{i}.bmp")
    return root


@SETTINGS
@given(
    target=st.sampled_from(["cache", "train/cat/0.bmp", "test/dog/2.bmp", "train/dog/1.bmp"]),
    offsets=st.lists(st.integers(0, 2**16), min_size=1, max_size=4),
    values=st.lists(st.integers(0, 255), min_size=1, max_size=4),
)
def test_random_tampering_is_seen_through_the_cache(target, offsets, values) -> None:
    with tempfile.TemporaryDirectory() as tmp, no_hang():
        root = _folder(Path(tmp) / "imgs")
        cfg = tiny_config(dataset="imagefolder", data_dir=str(root), image_size=8, val_size=1)
        load_dataset(cfg)  # writes the cache
        path = cache_path(root, 8) if target == "cache" else root / target
        if target != "cache":  # past the 54-byte header: pixels, same size
            offsets = [54 + o % (path.stat().st_size - 54) for o in offsets]
        _flip(path, offsets, values)
        cached = _outcome(lambda: load_dataset(cfg))
        cache_path(root, 8).unlink(missing_ok=True)
        assert cached == _outcome(lambda: load_dataset(cfg))


# ---------------------------------------------------------------- folders under --out

PLACES = ["runs", "sweeps", "results.sqlite", "runs/RUN", "runs/RUN/round_000.safetensors"]


@SETTINGS
@given(placed=st.dictionaries(st.sampled_from(PLACES), st.sampled_from(["file", "folder"])))
def test_random_files_and_folders_under_out_are_used_or_refused(placed) -> None:
    with tempfile.TemporaryDirectory() as tmp, no_hang():
        out = Path(tmp) / "out"
        out.mkdir()
        run = _tiny_run_id()
        for place, kind in sorted(placed.items()):
            path = out / place.replace("RUN", run)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if kind == "folder":
                    path.mkdir(exist_ok=True)
                else:
                    path.write_text("placed by a test")
            except OSError:  # a file placed above it, or a folder of that name
                continue
        before = snapshot(out)
        code, _, err = run_cli([*TINY, "--set", "rounds=0", "--out", str(out)])
        assert code in (0, 2)
        if code == 2:
            assert snapshot(out) == before


def _tiny_run_id() -> str:
    from sparsedd.components import resolve_config, run_id

    return run_id(resolve_config("tiny", assignments=["rounds=0"]))


# ---------------------------------------------------------------- special files among inputs


@SETTINGS
@given(
    where=st.sampled_from(["train/cat", "train/dog", "test/cat", "train/dog/sub"]),
    name=st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=8),
    suffix=st.sampled_from([".png", ".jpg", ".bmp"]),
    kind=st.sampled_from(["fifo", "folder"]),
)
def test_random_special_files_among_images_are_refused_at_once(where, name, suffix, kind) -> None:
    with tempfile.TemporaryDirectory() as tmp, no_hang():
        root = _folder(Path(tmp) / "imgs")
        folder = root / where
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{suffix}"
        if path.exists():
            return
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
        cfg = tiny_config(dataset="imagefolder", data_dir=str(root), image_size=8, val_size=1)
        outcome = _outcome(lambda: load_dataset(cfg))
        if kind == "fifo":
            assert outcome == "refused"


@SETTINGS
@given(
    kind=st.sampled_from(["fifo", "folder", "device"]), role=st.sampled_from(["config", "label"])
)
def test_random_special_files_as_inputs_are_one_line(capsys, kind, role) -> None:
    with tempfile.TemporaryDirectory() as tmp, no_hang():
        path = Path(tmp) / ("input.yaml" if role == "config" else "labels.txt")
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        else:
            path = Path("/dev/zero")
        if role == "config" and kind == "fifo":
            return  # a pipe is how --config /dev/stdin arrives: it is read (up to its bound)
        if role == "config":
            args = [*TINY, "--config", str(path), "--out", str(Path(tmp) / "out")]
        else:
            sets = ["noise=0", "noise_kind=human", f"noise_file={path}"]
            args = [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", f"{tmp}/out"]
        code, _, err = run_cli(args, capsys)
        assert code == 2
        assert_one_error_line(err, [])
        assert not (Path(tmp) / "out").exists()
