"""Bad input thrown at the CLI: exit status 2, one line on stderr, nothing changed on disk.

Every case builds its files under a temporary folder, snapshots that folder (every file's
bytes), runs ``sparsedd`` in-process and checks the status, the single ``sparsedd: error:`` line
(naming the key, value or file and what is allowed), the absence of a traceback, and that the
snapshot is unchanged: a refused command creates no output folder and alters no results folder.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import IDX_NAMES, idx_bytes
from safetensors.torch import save_file
from support import (
    TINY,
    assert_one_error_line,
    run_cli,
    run_process,
    snapshot,
    tiny_folder,
)

from sparsedd.components import resolve_config
from sparsedd.store import results as store_mod


def write_mnist(data_dir: Path, n_train: int = 40, n_test: int = 10) -> Path:
    """Valid MNIST files in torchvision's raw folder; returns that folder."""
    rng = np.random.default_rng(0)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28)),
        rng.integers(0, 10, n_train),
        rng.integers(0, 256, (n_test, 28, 28)),
        rng.integers(0, 10, n_test),
    )
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        (raw / name).write_bytes(idx_bytes(array))
    return raw


class _Evil:
    """Unpickling this creates a marker file: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def write_evil_cifar(data_dir: Path, marker: Path) -> Path:
    """A CIFAR-10 folder of pickles that would create ``marker`` if unpickled."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names:
        (folder / name).write_bytes(pickle.dumps(_Evil(marker)))
    return folder


# ---------------------------------------------------------------- the cases


@dataclass
class Case:
    """One bad command: ``build(tmp)`` makes its files and returns (extra args, needles)."""

    name: str
    build: Callable[[Path], tuple[list[str], list[str]]]
    base: list[str] = field(default_factory=lambda: list(TINY))


def _sets(*assignments: str, needles: list[str]) -> Callable[[Path], tuple[list[str], list[str]]]:
    args = [a for kv in assignments for a in ("--set", kv)]
    return lambda tmp: (args, needles)


def _yaml(text: str | bytes, needles: list[str]) -> Callable[[Path], tuple[list[str], list[str]]]:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        path = tmp / "cfg.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["--config", str(path)], [*needles, "cfg.yaml"]

    return build


def _mnist(
    damage: Callable[[Path], None], needles: list[str]
) -> Callable[[Path], tuple[list[str], list[str]]]:
    def build(tmp: Path) -> tuple[list[str], list[str]]:
        raw = write_mnist(tmp / "data")
        damage(raw)
        sets = ["dataset=mnist", "download=false", "val_size=8", f"data_dir={tmp / 'data'}"]
        return [a for kv in sets for a in ("--set", kv)], needles

    return build


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        data = (raw / name).read_bytes()
        (raw / name).write_bytes(data[:keep])

    return damage


def _replace(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda raw: (raw / name).write_bytes(data)


def _missing_mnist(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "data").mkdir()
    sets = ["dataset=mnist", "download=false", f"data_dir={tmp / 'data'}"]
    return [a for kv in sets for a in ("--set", kv)], ["mnist not found", str(tmp / "data")]


def _gz_corrupt(tmp: Path) -> tuple[list[str], list[str]]:
    data = tmp / "data"
    data.mkdir()
    for name in IDX_NAMES:
        (data / f"{name}.gz").write_bytes(gzip.compress(b"\0" * 64)[:20])  # truncated gzip
    sets = ["dataset=mnist", "download=false", f"data_dir={data}"]
    return [a for kv in sets for a in ("--set", kv)], ["cannot read dataset file", ".gz"]


def _data_dir_unwritable(tmp: Path) -> tuple[list[str], list[str]]:
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    sets = ["dataset=fashion-mnist", "download=false", f"data_dir={blocker / 'data'}"]
    return [a for kv in sets for a in ("--set", kv)], ["data_dir", str(blocker)]


def _cifar_bad_md5(tmp: Path) -> tuple[list[str], list[str]]:
    folder = write_evil_cifar(tmp / "data", tmp / "UNPICKLED")
    sets = ["dataset=cifar10", "download=false", f"data_dir={tmp / 'data'}"]
    return [a for kv in sets for a in ("--set", kv)], ["cifar10", str(folder), "corrupt"]


def _cifar_missing(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "data").mkdir()
    sets = ["dataset=cifar10", "download=false", f"data_dir={tmp / 'data'}"]
    return [a for kv in sets for a in ("--set", kv)], ["cifar10 not found"]


def _out_under_file(tmp: Path) -> tuple[list[str], list[str]]:
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    return ["--out", str(blocker / "out")], ["cannot create output folder", str(blocker)]


BIG = str(10**400)
N = IDX_NAMES
CASES: list[Case] = [
    # unknown and misspelt keys, with a suggestion
    Case("misspelt-key", _sets("nosie=0.1", needles=["'nosie'", "did you mean 'noise'"])),
    Case("misspelt-key2", _sets("batchsize=8", needles=["'batchsize'", "'batch_size'"])),
    Case("unknown-key", _sets("colour=red", needles=["unknown config key 'colour'"])),
    Case("empty-key", _sets("=3", needles=["unknown config key ''"])),
    Case("set-without-equals", _sets("noise", needles=["--set", "KEY=VALUE", "'noise'"])),
    # wrong types
    Case("float-not-number", _sets("weight_decay=abc", needles=["'weight_decay'", "'abc'"])),
    Case("int-not-integer", _sets("epochs=2.5", needles=["'epochs'", "integer", "2.5"])),
    Case("int-from-text", _sets("rounds=three", needles=["'rounds'", "integer"])),
    Case("bool-not-bool", _sets("download=maybe", needles=["'download'", "true or false"])),
    Case("not-nullable", _sets("epochs=null", needles=["'epochs'", "cannot be null"])),
    Case("nan", _sets("lr=nan", needles=["'lr'", "finite"])),
    Case("inf", _sets("lr=inf", needles=["'lr'", "finite"])),
    Case("huge-int-as-float", _sets(f"lr={BIG}", needles=["'lr'", "number", "..."])),
    Case("int-too-large", _sets(f"seed={10**30}", needles=["'seed'", "≤"])),
    Case("threads-too-many", _sets("threads=100000", needles=["'threads'", "≤ 1024"])),
    # out-of-range values
    Case("noise-one", _sets("noise=1.0", needles=["'noise'", "< 1.0", "1.0"])),
    Case("noise-negative", _sets("noise=-0.1", needles=["'noise'", "≥ 0.0", "-0.1"])),
    Case("lambda-negative", _sets("weight_decay=-1e-4", needles=["'weight_decay'", "≥ 0"])),
    Case("lr-zero", _sets("lr=0", needles=["'lr'", "> 0", "0.0"])),
    Case("lr-negative", _sets("lr=-0.1", needles=["'lr'", "> 0", "-0.1"])),
    Case("prune-rate-zero", _sets("prune_rate=0", needles=["'prune_rate'", "> 0"])),
    Case("prune-rate-one", _sets("prune_rate=1", needles=["'prune_rate'", "< 1"])),
    Case("rounds-negative", _sets("rounds=-1", needles=["'rounds'", "≥ 0", "-1"])),
    Case("batch-size-zero", _sets("batch_size=0", needles=["'batch_size'", "≥ 1", "0"])),
    Case("dense-epochs-zero", _sets("dense_epochs=0", needles=["'dense_epochs'", "≥ 1"])),
    Case("dropout-one", _sets("dropout=1", needles=["'dropout'", "< 1"])),
    Case(
        "train-size-too-big",
        _sets("train_size=5000", needles=["'train_size'", "5000", "at most 1024"]),
    ),
    Case("val-size-all", _sets("val_size=1024", needles=["'val_size'", "no training data"])),
    Case(
        "val-size-ge-train-size",
        _sets("train_size=100", "val_size=100", needles=["'val_size'", "'train_size'"]),
    ),
    # unknown names
    Case(
        "unknown-preset",
        lambda tmp: ([], ["unknown preset 'tinyy'", "'tiny'"]),
        base=["run", "--preset", "tinyy", "-q"],
    ),
    Case("unknown-model", _sets("model=resnet", needles=["unknown model 'resnet'", "resnet18"])),
    Case("unknown-dataset", _sets("dataset=cifar11", needles=["unknown dataset 'cifar11'"])),
    Case("unknown-noise-kind", _sets("noise_kind=uniform", needles=["'noise_kind'", "pairflip"])),
    Case("unknown-criterion", _sets("prune_criterion=magnitud", needles=["'magnitude'"])),
    Case("unknown-optimizer", _sets("optimizer=adam", needles=["'optimizer'", "adamw, sgd"])),
    Case("patch-not-dividing", _sets("model=vit", "patch_size=3", needles=["'patch_size'"])),
    # config files
    Case("yaml-missing", lambda tmp: (["--config", str(tmp / "nope.yaml")], ["nope.yaml"])),
    Case("yaml-invalid", _yaml("lr: [1, 2\nnoise: 0.1\n", ["not valid YAML"])),
    Case("yaml-not-mapping", _yaml("- lr\n- noise\n", ["must hold a mapping"])),
    Case("yaml-scalar", _yaml("just words\n", ["must hold a mapping"])),
    Case("yaml-binary", _yaml(b"\xff\xfe\x00lr: \x80\x81", ["not UTF-8"])),
    Case("yaml-misspelt-key", _yaml("nosie: 0.1\n", ["'nosie'", "'noise'"])),
    Case("yaml-wrong-type", _yaml("epochs: [1, 2]\n", ["'epochs'", "integer"])),
    Case("yaml-bad-range", _yaml("noise: 1.5\n", ["'noise'", "< 1.0"])),
    Case("yaml-folder", lambda tmp: (["--config", str(tmp)], ["is a directory"])),
    # grids are checked whole before the first run
    Case("grid-no-equals", lambda tmp: (["--grid", "lr"], ["--grid", "'lr'"])),
    Case("grid-no-values", lambda tmp: (["--grid", "lr="], ["--grid", "no values"])),
    Case("grid-bad-value", lambda tmp: (["--grid", "lr=0.1,-1"], ["'lr'", "-1"])),
    Case(
        "grid-bad-size-last",
        lambda tmp: (["--grid", "train_size=100,5000"], ["'train_size'", "5000"]),
    ),
    # command-line syntax
    Case("jobs-zero", lambda tmp: (["--jobs", "0"], ["--jobs", "0"])),
    Case("unknown-option", lambda tmp: (["--bogus"], ["--bogus"])),
    Case("no-such-command", lambda tmp: ([], ["runn"]), base=["runn"]),
    Case("presets-unknown", lambda tmp: ([], ["unknown preset 'vitt'"]), base=["presets", "vitt"]),
    # dataset files
    Case("mnist-missing", _missing_mnist),
    Case("mnist-truncated-images", _mnist(_truncate(N[0], 5000), ["mnist", "truncated"])),
    Case("mnist-truncated-labels", _mnist(_truncate(N[1], 20), ["mnist", "truncated"])),
    Case("mnist-header-only", _mnist(_truncate(N[2], 3), ["mnist", "corrupt"])),
    Case("mnist-garbage", _mnist(_replace(N[0], os.urandom(4000)), ["mnist", "corrupt"])),
    Case(
        "mnist-count-mismatch",
        _mnist(_replace(N[1], idx_bytes(np.zeros(39))), ["mnist", "number of samples"]),
    ),
    Case(
        "mnist-label-out-of-range",
        _mnist(_replace(N[3], idx_bytes(np.full(10, 200))), ["mnist", "labels", "0..9"]),
    ),
    Case(
        "mnist-shape-mismatch",
        _mnist(_replace(N[2], idx_bytes(np.zeros((10, 20, 20)))), ["mnist", "shape"]),
    ),
    Case("mnist-gz-corrupt", _gz_corrupt),
    Case("data-dir-unwritable", _data_dir_unwritable),
    Case("cifar-bad-md5", _cifar_bad_md5),
    Case("cifar-missing", _cifar_missing),
    # output folder
    Case("out-under-a-file", _out_under_file),
]
if not torch.cuda.is_available():
    CASES.append(Case("cuda-unavailable", _sets("device=cuda", needles=["'device'", "cuda"])))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("out_kind", ["new", "existing"])
def test_bad_input_is_refused_harmlessly(
    case: Case,
    out_kind: str,
    tmp_path: Path,
    finished_results: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    if out_kind == "existing":
        shutil.copytree(finished_results, out)
    extra, needles = case.build(tmp_path)
    if "--out" not in extra and case.base[0] == "run":
        extra = [*extra, "--out", str(out)]
    before = snapshot(tmp_path)
    code, stdout, err = run_cli([*case.base, *extra], capsys)
    assert code == 2, err
    assert_one_error_line(err, needles)
    assert stdout == ""
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "UNPICKLED").exists()


def test_at_least_forty_distinct_cases() -> None:
    assert len({c.name for c in CASES}) >= 40


# ---------------------------------------------------------------- bad files in results folders


def _progress(out: Path) -> Path:
    return tiny_folder(out) / "progress.safetensors"


def _round0(out: Path) -> Path:
    return tiny_folder(out) / "round_000.safetensors"


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncate_file(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_shapes(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file({"model.fc1.weight": torch.zeros(3, 3)}, str(path), metadata=meta)


def _from_other_run(path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    meta = '{"round": 1, "epoch": 0, "seconds": 0.0, "run_id": "0123456789abcdef"}'
    save_file(tensors, str(path), metadata={"sparsedd": meta})


def _bad_optimizer(path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    key = next(k for k in tensors if k.startswith("opt.") and tensors[k].dim() > 1)
    tensors[key] = torch.zeros(2, 2)
    save_file(tensors, str(path), metadata=meta)


def _drop_progress(out: Path) -> None:
    _progress(out).unlink()


CHECKPOINT_CASES = {
    "progress-garbage": (lambda out: _garbage(_progress(out)), ["progress.safetensors", "corrupt"]),
    "progress-truncated": (
        lambda out: _truncate_file(_progress(out)),
        ["progress.safetensors", "truncated"],
    ),
    "progress-empty": (lambda out: _progress(out).write_bytes(b""), ["progress.safetensors"]),
    "progress-wrong-shapes": (
        lambda out: _wrong_shapes(_progress(out)),
        ["progress.safetensors", "does not match the model"],
    ),
    "progress-other-run": (
        lambda out: _from_other_run(_progress(out)),
        ["progress.safetensors", "belongs to run"],
    ),
    "progress-bad-optimizer": (
        lambda out: _bad_optimizer(_progress(out)),
        ["progress.safetensors", "optimizer state"],
    ),
    "round-garbage": (
        lambda out: (_drop_progress(out), _garbage(_round0(out))),
        ["round_000.safetensors", "corrupt"],
    ),
    "round-truncated": (
        lambda out: (_drop_progress(out), _truncate_file(_round0(out))),
        ["round_000.safetensors", "truncated"],
    ),
    "round-wrong-shapes": (
        lambda out: (_drop_progress(out), _wrong_shapes(_round0(out))),
        ["round_000.safetensors", "does not match the model"],
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
def test_bad_checkpoint_is_refused_harmlessly(
    name: str, tmp_path: Path, partial_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    shutil.copytree(partial_results, out)
    damage, needles = CHECKPOINT_CASES[name]
    damage(out)
    before = snapshot(tmp_path)
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 2, err
    assert_one_error_line(err, needles)
    assert snapshot(tmp_path) == before


def _foreign_db(out: Path) -> list[str]:
    out.mkdir()
    conn = sqlite3.connect(out / "results.sqlite")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.commit()
    conn.close()
    return ["results.sqlite", "not a sparsedd results database"]


def _foreign_meta_db(out: Path) -> list[str]:
    out.mkdir()
    conn = sqlite3.connect(out / "results.sqlite")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('app', 'someone-else')")
    conn.commit()
    conn.close()
    return ["results.sqlite", "not a sparsedd results database"]


def _garbage_db(out: Path) -> list[str]:
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"SQLite format 2\0" + os.urandom(4000))
    return ["results.sqlite", "not a sparsedd results database"]


def _newer_schema_db(out: Path) -> list[str]:
    from sparsedd.store.results import ResultsStore

    ResultsStore(out)
    conn = sqlite3.connect(out / "results.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    return ["results.sqlite", "schema 99", "upgrade"]


DB_CASES = {
    "foreign": _foreign_db,
    "foreign-meta": _foreign_meta_db,
    "garbage": _garbage_db,
    "newer-schema": _newer_schema_db,
}


@pytest.mark.parametrize("command", ["run", "results"])
@pytest.mark.parametrize("name", sorted(DB_CASES))
def test_foreign_database_is_refused(
    name: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    needles = DB_CASES[name](out)
    before = snapshot(tmp_path)
    args = [*TINY, "--out", str(out)] if command == "run" else ["results", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert_one_error_line(err, needles)
    assert snapshot(tmp_path) == before


def test_results_of_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["results", str(tmp_path / "none")], capsys)
    assert code == 2
    assert_one_error_line(err, ["no results", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


def test_locked_database_is_refused(
    tmp_path: Path,
    finished_results: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(store_mod, "BUSY_WAIT_S", 0.1)
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    holder = sqlite3.connect(out / "results.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        before = snapshot(tmp_path)
        # another config, so that the run would have to write new rows and files
        code, _, err = run_cli([*TINY, "--set", "seed=5", "--out", str(out)], capsys)
        after = snapshot(tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2, err
    assert_one_error_line(err, ["results.sqlite", "locked"])
    assert after == before


def test_read_only_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod; out-under-a-file covers an unwritable --out")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code, _, err = run_cli([*TINY, "--out", str(parent / "out")], capsys)
    finally:
        parent.chmod(0o755)
    assert code == 2
    assert_one_error_line(err, ["cannot create output folder", str(parent)])


# ---------------------------------------------------------------- resources


def test_gpu_out_of_memory_names_the_batch_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparsedd.models import base as models

    def boom(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    lenet = type(models.create_model(resolve_config("tiny"), models.InputSpec(1, 8, 4)))
    monkeypatch.setattr(lenet, "forward", boom)
    code, _, err = run_cli([*TINY, "--set", "batch_size=64", "--out", str(tmp_path / "o")], capsys)
    assert code == 2, err
    assert_one_error_line(err, ["GPU memory", "'batch_size'", "64", "batch_size=32"], True)


def test_full_disk_gives_a_clear_error(tmp_path: Path) -> None:
    """A file-size limit makes every write past 20 kB fail, as a full disk would."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "from sparsedd.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", code, *TINY, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, [str(out)], allow_announce=True)
    assert "free space" in proc.stderr or "full" in proc.stderr
    # nothing half-written: no temporary files left, every checkpoint there is whole
    assert not list(out.rglob("*.tmp"))
    for path in out.rglob("*.safetensors"):
        from sparsedd.store.checkpoint import load_tensors

        load_tensors(path)


# ---------------------------------------------------------------- never unpickle


def test_cifar_with_wrong_checksums_is_never_unpickled(tmp_path: Path) -> None:
    """The refusal happens in a fresh process; the pickles would create a marker file."""
    marker = tmp_path / "UNPICKLED"
    write_evil_cifar(tmp_path / "data", marker)
    sets = ["--set", "dataset=cifar10", "--set", "download=true"]
    sets += ["--set", f"data_dir={tmp_path / 'data'}"]
    proc = run_process(*TINY, "--out", str(tmp_path / "out"), *sets, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, ["cifar10", "corrupt"])
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_source_never_unpickles() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "sparsedd"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        assert "pickle.load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (path, line)


# ---------------------------------------------------------------- real subprocesses


SUBPROCESS_CASES = [
    ["--set", "nosie=0.1"],
    ["--set", "noise"],
    ["--set", "lr=-1"],
    ["--preset", "nope"],
]


@pytest.mark.parametrize("args", SUBPROCESS_CASES, ids=lambda a: "_".join(a))
def test_subprocess_prints_one_line_and_no_traceback(args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_process("run", "-q", "--out", str(out), *args, timeout=120)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, [])
    assert proc.stdout == ""
    assert not out.exists()


def test_subprocess_corrupt_checkpoint(tmp_path: Path, partial_results: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(partial_results, out)
    _garbage(_progress(out))
    before = snapshot(tmp_path)
    proc = run_process(*TINY, "--out", str(out), timeout=120)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, ["progress.safetensors"])
    assert snapshot(tmp_path) == before
