"""Issue 28: nothing read from disk is trusted on metadata; every count has a bound and every
read an end; folders under --out are checked as found; output cannot be turned against the
terminal. Each case failed (silently mixed data, a hang, a traceback or misleading advice)
before its fix."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from datafiles import IDX_NAMES, idx_bytes, write_idx_dataset
from PIL import Image
from support import (
    BASE,
    TINY,
    assert_one_error_line,
    assert_refused_unchanged,
    curve,
    fill,
    run_cli,
)

from sparsedd.data import datasets as data_module
from sparsedd.data.datasets import load_dataset
from sparsedd.errors import DataError

#: The sources a child process imports: PYTHONPATH's first entry (as the tests were started),
#: else this checkout's src/.
SRC = str(
    Path(
        os.environ.get("PYTHONPATH", "").split(":")[0] or Path(__file__).parents[1] / "src"
    ).resolve()
)

# ---------------------------------------------------------------- dataset files in data_dir


def _fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    root = tmp_path / "data"
    return root, write_idx_dataset(root, gz=True)


def _fashion_cfg(root: Path):
    return tiny_config(dataset="fashion-mnist", data_dir=str(root), download=False, val_size=0)


def test_an_edited_dataset_file_replaces_its_decompressed_copy(tmp_path, monkeypatch) -> None:
    root, arrays = _fashion(tmp_path, monkeypatch)
    first = load_dataset(_fashion_cfg(root))
    assert np.array_equal(first.train_y.numpy(), arrays[IDX_NAMES[1]])
    edited = (arrays[IDX_NAMES[1]] + 1) % 10  # every label changed
    (root / f"{IDX_NAMES[1]}.gz").write_bytes(gzip.compress(idx_bytes(edited)))
    again = load_dataset(_fashion_cfg(root))
    assert np.array_equal(again.train_y.numpy(), edited)


def test_a_resume_sees_an_edited_dataset_file(tmp_path, monkeypatch, capsys) -> None:
    root, arrays = _fashion(tmp_path, monkeypatch)
    sets = [f"data_dir={root}", "dataset=fashion-mnist", "download=false", "val_size=0"]
    args = [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(tmp_path / "out")]
    code, _, err = run_cli([*args, "--set", "rounds=0"], capsys)
    assert code == 0, err
    edited = (arrays[IDX_NAMES[1]] + 1) % 10
    (root / f"{IDX_NAMES[1]}.gz").write_bytes(gzip.compress(idx_bytes(edited)))
    code, _, err = run_cli([*args, "--set", "rounds=1"], capsys)
    assert code == 2, err
    assert "other data" in err


def test_an_unreadable_dataset_copy_is_not_called_corrupt(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data"
    write_idx_dataset(root / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    from sparsedd.data import idx_files

    monkeypatch.setattr(idx_files, "open", _refuse_open, raising=False)  # as mode 000
    with pytest.raises(DataError) as err:
        load_dataset(_fashion_cfg(root))
    assert "cannot read" in str(err.value) and "corrupt" not in str(err.value)
    assert "Permission denied" in str(err.value)
    assert "delete" not in str(err.value)


def test_a_fifo_as_a_dataset_file_is_refused_at_once(tmp_path, monkeypatch) -> None:
    root = tmp_path / "data"
    write_idx_dataset(root / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "no-system")
    target = root / "FashionMNIST" / "raw" / IDX_NAMES[1]
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset(_fashion_cfg(root))


# ---------------------------------------------------------------- image folders


def _images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 3) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (80 * c, 10 * i, 0)).save(folder / f"{i}.bmp")
    return root


def _image_cfg(root: Path):
    return tiny_config(dataset="imagefolder", data_dir=str(root), image_size=8, val_size=1)


def test_images_replaced_with_size_and_time_kept_are_decoded_again(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    first = load_dataset(_image_cfg(root))
    # another picture, same size in bytes (BMP), the old modification time put back
    target = root / "train" / "cat" / "0.bmp"
    stamp = target.stat()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(target)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert target.stat().st_size == stamp.st_size
    again = load_dataset(_image_cfg(root))
    assert not np.array_equal(first.train_x.numpy(), again.train_x.numpy())
    assert int(again.train_x[0].min()) == 255  # the new, white picture


def test_a_symlink_loop_in_a_class_folder_is_refused(tmp_path, capsys) -> None:
    root = _images(tmp_path / "imgs")
    (root / "train" / "cat" / "again").symlink_to(".")
    with pytest.raises(DataError, match="again is a symlink that loops back"):
        load_dataset(_image_cfg(root))


def test_a_symlinked_folder_that_does_not_loop_is_followed_once(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    extra = _images(tmp_path / "more", ("cat",), n=2) / "train" / "cat"
    (root / "train" / "cat" / "more").symlink_to(extra)
    assert len(load_dataset(_image_cfg(root)).train_y) == 6 + 2


def test_a_fifo_among_training_images_is_refused_not_opened(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    os.mkfifo(root / "train" / "dog" / "pipe.png")
    with pytest.raises(DataError, match=r"not regular files .*pipe\.png"):
        load_dataset(_image_cfg(root))


def test_control_characters_in_image_names_are_escaped_in_errors(tmp_path) -> None:
    root = _images(tmp_path / "imgs")
    (root / "train" / "dog" / "x\x1b[31m.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        load_dataset(_image_cfg(root))
    assert "\x1b" not in str(err.value) and "x\\x1b[31m.png" in str(err.value)


# ---------------------------------------------------------------- bounds on every count


@pytest.mark.parametrize(
    "setting, needles",
    [
        ("rounds=1000000000", ["'rounds' must be ≤ 1000", "34"]),
        ("epochs=100000000000", ["'epochs' must be ≤ 100000"]),
        ("dense_epochs=100000000000", ["'dense_epochs' must be ≤ 100000"]),
        ("collapse_rounds=99999999999", ["'collapse_rounds' must be ≤ 1000"]),
    ],
)
def test_counts_past_their_bound_are_refused_at_once(tmp_path, capsys, setting, needles) -> None:
    args = [*TINY, "--set", setting, "--dry-run", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, needles, capsys)


def test_the_largest_allowed_rounds_plan_at_once(tmp_path, capsys) -> None:
    code, out, err = run_cli([*TINY, "--set", "rounds=1000", "--dry-run"], capsys)
    assert code == 0, err
    assert "new" in out


def test_adaptive_seeds_past_their_bound_are_refused(tmp_path, capsys) -> None:
    args = [*TINY, "--adaptive-seeds", "1:100000000", "--dry-run", "--out", str(tmp_path / "o")]
    assert_refused_unchanged(tmp_path, args, ["MAX (100,000,000)", "≤ 1,000"], capsys)


def test_adaptive_seeds_from_zero_suggest_a_spec_that_is_accepted(tmp_path, capsys) -> None:
    args = [*TINY, "--adaptive-seeds", "0:0", "--dry-run", "--out", str(tmp_path / "o")]
    err = assert_refused_unchanged(tmp_path, args, ["START must be at least 1"], capsys)
    suggested = err.split("e.g. ")[1].split()[0]
    code, _, err = run_cli([*TINY, "--adaptive-seeds", suggested, "--dry-run"], capsys)
    assert code == 0, err


def test_a_grid_past_its_bound_is_refused_before_it_is_built(tmp_path, capsys) -> None:
    seeds = ",".join(str(i) for i in range(200))
    lrs = ",".join(str(0.01 * (i + 1)) for i in range(60))
    args = [*TINY, "--grid", f"seed={seeds}", "--grid", f"lr={lrs}", "--dry-run"]
    assert_refused_unchanged(tmp_path, args, ["12,000 runs", "200 seed × 60 lr", "10,000"], capsys)


def test_a_long_grid_error_is_summarised(tmp_path, capsys) -> None:
    seeds = ",".join(str(i) for i in range(2000))
    args = [*TINY, "--grid", f"seed={seeds}", "--grid", "lr=0.1,-1", "--dry-run"]
    err = assert_refused_unchanged(tmp_path, args, ["2000 of 4000 runs", "and 1997 more"], capsys)
    assert len(err) < 1000


# ---------------------------------------------------------------- output and leftovers


def _process(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, **kw.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "sparsedd", *args], env=env, text=True, timeout=600, **kw
    )


def test_results_to_a_full_or_closed_stdout_end_in_one_line(tmp_path) -> None:
    out = fill(tmp_path / "out", [("abcdef0123456789", BASE, curve([0.5, 0.4]))])
    with open("/dev/full", "w") as full:
        proc = _process("results", str(out), stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, ["cannot write to standard output", "No space left"])
    proc = _process(
        "results",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(),
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, ["cannot write to standard output", "closed"])


def test_a_run_leaves_nothing_in_tmpdir_and_caches_compiles_in_its_own_folder(tmp_path) -> None:
    tmp, home = tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), "HOME": str(home), "XDG_CACHE_HOME": ""}
    env = {k: v for k, v in env.items() if v}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON"))}
    base.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsedd",
            *TINY,
            "--set",
            "rounds=1",
            "--set",
            "epochs=1",
            "--out",
            str(tmp_path / "out"),
        ],
        env={**base, "PYTHONPATH": SRC, **env},
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp.iterdir()) == []
    assert (home / ".cache" / "sparsedd" / "torch-compile" / "inductor").is_dir()


# ---------------------------------------------------------------- config files


def test_a_device_as_config_file_is_refused_unread(tmp_path, capsys) -> None:
    args = [*TINY, "--config", "/dev/zero", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["/dev/zero", "not a regular file"], capsys)


def test_a_huge_config_file_is_refused_by_its_size(tmp_path, capsys) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(200_000_000)  # sparse: 200 MB that take no disk
    args = [*TINY, "--config", str(big), "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["big.yaml", "1,048,576 bytes"], capsys)


def test_a_yaml_merge_key_is_read_as_yaml_says(tmp_path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("grid:\n  lr: &rates [0.01, 0.02]\n<<: {epochs: 2, rounds: 1}\n")
    code, out, err = run_cli([*TINY, "--config", str(cfg), "--dry-run"], capsys)
    assert code == 0, err
    assert "2 runs" in out and "not valid YAML" not in err


# ---------------------------------------------------------------- folders under --out


@pytest.mark.parametrize("name", ["runs", "sweeps"])
def test_a_file_where_a_folder_belongs_is_refused_before_writing(tmp_path, capsys, name) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("not a folder")
    args = [*TINY, "--grid", "seed=0,1", "--set", "rounds=0", "--out", str(out)]
    assert_refused_unchanged(tmp_path, args, [str(out / name), "move it away"], capsys)


def test_a_run_folder_replaced_by_a_file_is_refused_on_resume(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--set", "rounds=0", "--out", str(out)], capsys)
    assert code == 0, err
    (folder,) = (out / "runs").iterdir()
    import shutil

    shutil.rmtree(folder)
    folder.write_text("a file")
    args = [*TINY, "--set", "rounds=1", "--out", str(out)]
    assert_refused_unchanged(tmp_path, args, [folder.name, "not a folder", "move it"], capsys)


@pytest.mark.parametrize("command", ["results", "analyze", "status"])
def test_a_database_that_is_a_folder_is_named_with_a_fix(tmp_path, capsys, command) -> None:
    (tmp_path / "out" / "results.sqlite").mkdir(parents=True)
    args = [command, str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["results.sqlite", "move it away"], capsys)


def test_a_figure_under_a_file_names_the_file(tmp_path, capsys) -> None:
    out = fill(tmp_path / "out", [("abcdef0123456789", BASE, curve([0.5, 0.4, 0.45]))])
    (tmp_path / "afile").write_text("x")
    args = ["plot", str(out), "-o", str(tmp_path / "afile" / "x.png")]
    err = assert_refused_unchanged(tmp_path, args, ["afile is a file, not a folder"], capsys)
    assert "free space" not in err


# ---------------------------------------------------------------- messages that name the cause


@pytest.mark.parametrize("token", ["--1", "²", "1_0"])
def test_odd_text_labels_are_named_not_a_traceback(tmp_path, capsys, token) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["1"] * 10 + [token]) + "\n", encoding="utf-8")
    sets = ["noise=0", "noise_kind=human", f"noise_file={labels}"]
    args = [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["labels.txt", repr(token), "not a class"], capsys)


def test_a_deflated_pt_label_file_is_refused_before_it_expands(tmp_path, capsys) -> None:
    import zipfile

    path = tmp_path / "labels.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels/data.pkl", b"\0" * 50_000_000)  # 50 MB of zeros: ~50 KB packed
    assert path.stat().st_size < 1_000_000
    sets = ["noise=0", "noise_kind=human", f"noise_file={path}"]
    args = [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["unpacks to 50,000,000 bytes"], capsys)


def test_a_device_index_too_large_for_torch_is_a_config_error(tmp_path, capsys) -> None:
    args = [*TINY, "--set", "device=cuda:9999999999", "--dry-run", "--out", str(tmp_path / "o")]
    assert_refused_unchanged(tmp_path, args, ["'device'", "0..999"], capsys)


def test_weight_decay_past_one_over_lr_names_weight_decay(tmp_path, capsys) -> None:
    args = [*TINY, "--set", "weight_decay=1e308", "--set", "rounds=0", "--out", str(tmp_path)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, ["'weight_decay'", "lower weight_decay below"], True)
    assert "lower config key 'lr'" not in err


# ---------------------------------------------------------------- unreadable is not corrupt


def _refuse_open(*args, **kw):
    raise PermissionError(13, "Permission denied")


def test_an_unreadable_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch) -> None:
    import torch

    from sparsedd.errors import CheckpointError
    from sparsedd.store import checkpoint as ckpt

    path = tmp_path / "round_001.safetensors"
    ckpt.save_tensors(path, {"w": torch.ones(2)}, {"round": 1})
    monkeypatch.setattr(ckpt, "open", _refuse_open, raising=False)  # as mode 000 for a user
    with pytest.raises(CheckpointError) as err:
        ckpt.load_tensors(path)
    message = str(err.value)
    assert "cannot read" in message and "Permission denied" in message and "chmod" in message
    assert "corrupt" not in message and "delete" not in message
    assert path.exists()


def test_a_fifo_as_checkpoint_is_refused_unopened(tmp_path) -> None:
    from sparsedd.errors import CheckpointError
    from sparsedd.store import checkpoint as ckpt

    os.mkfifo(tmp_path / "round_001.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        ckpt.load_tensors(tmp_path / "round_001.safetensors")


def test_an_unreadable_data_json_is_not_to_be_deleted(tmp_path, capsys, monkeypatch) -> None:
    from sparsedd.training import data_identity

    out = tmp_path / "out"
    code, _, err = run_cli([*TINY, "--set", "rounds=0", "--out", str(out)], capsys)
    assert code == 0, err
    real = Path.read_text

    def read_text(self, *args, **kw):
        if self.name == "data.json":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kw)

    monkeypatch.setattr(data_identity.Path, "read_text", read_text)
    code, _, err = run_cli([*TINY, "--set", "rounds=1", "--out", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, ["cannot read", "data.json", "Permission denied"], True)
    assert "delete" not in err


def test_an_exact_run_id_is_chosen_beside_a_copy_it_begins(tmp_path) -> None:
    from sparsedd.export.pruned import find_run_folder

    runs = tmp_path / "runs"
    (runs / "abcdef0123456789").mkdir(parents=True)
    (runs / "abcdef0123456789.old").mkdir()
    assert find_run_folder(tmp_path, "abcdef0123456789").name == "abcdef0123456789"
    assert find_run_folder(tmp_path, "abcdef0123456789.o").name == "abcdef0123456789.old"


# ---------------------------------------------------------------- collapsed rows


def test_collapsed_rows_are_written_in_one_transaction(tmp_path, monkeypatch) -> None:
    from support import round_row

    from sparsedd.store.results import ResultsStore
    from sparsedd.store.round_record import RoundRecord

    store = ResultsStore(tmp_path)
    store.record_run("abcdef0123456789", BASE)
    opened = []
    real = ResultsStore._connect
    monkeypatch.setattr(ResultsStore, "_connect", lambda self: (opened.append(1), real(self))[1])
    rows = [RoundRecord(**round_row(k, None, collapsed=True)) for k in range(1, 501)]
    store.record_rounds("abcdef0123456789", rows)
    assert len(opened) == 1
    monkeypatch.undo()
    assert store.rounds_done("abcdef0123456789") == set(range(1, 501))
