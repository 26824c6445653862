"""Inputs an adversarial user tried that once gave a traceback, mixed data or a wrong line.

Each case gets one ``sparsedd: error:`` line naming the problem and the fix, exit status 2 and
nothing written or changed (``assert_refused_unchanged``); the smaller ones get the line they
should have printed all along.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import (
    TINY,
    assert_one_error_line,
    assert_refused_unchanged,
    console_reporter,
    run_cli,
    snapshot,
)

from sparsedd.store.results import ResultsStore

SRC = str(Path(__file__).resolve().parents[2] / "src")


# ---------------------------------------------------------------- config files and options


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def alias_bomb(levels: int = 5, width: int = 9) -> str:
    """YAML whose last key expands to width**levels values through nested anchors."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\nlr: [{', '.join([f'*a{levels - 1}'] * width)}]\n"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys) -> None:
    cfg = _write(tmp_path / "cfg.yaml", alias_bomb())
    args = [*TINY, "--config", str(cfg), "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["cfg.yaml", "aliases", "10,000 values"], capsys)


def test_yaml_aliases_within_the_bound_still_work(tmp_path, capsys) -> None:
    cfg = _write(tmp_path / "cfg.yaml", "lr: &rate 0.01\nweight_decay: *rate\n")
    code, out, err = run_cli([*TINY, "--config", str(cfg), "--dry-run"], capsys)
    assert code == 0, err


def test_yaml_key_given_twice_is_refused(tmp_path, capsys) -> None:
    cfg = _write(tmp_path / "cfg.yaml", "lr: 0.1\nnoise: 0.2\nlr: 0.2\n")
    args = [*TINY, "--config", str(cfg), "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["cfg.yaml", "'lr'", "twice", "line 3"], capsys)


def test_grid_with_an_empty_value_is_refused(tmp_path, capsys) -> None:
    args = [*TINY, "--grid", "seed=0,,1", "--out", str(tmp_path / "out")]
    assert_refused_unchanged(tmp_path, args, ["--grid", "'seed=0,,1'", "empty value"], capsys)


# ---------------------------------------------------------------- own images


def _images(root: Path, classes: tuple[str, ...], n: int = 3) -> Path:
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (80 * c, 10 * i, 0)).save(folder / f"{i}.png")
    return root


def _imagefolder_args(root: Path, out: Path, *extra: str) -> list[str]:
    sets = [f"data_dir={root}", "dataset=imagefolder", "image_size=8", "val_size=1", *extra]
    return [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(out)]


@pytest.mark.parametrize("noise", ["0", "0.2"])
def test_one_class_folder_is_refused(tmp_path, capsys, noise) -> None:
    root = _images(tmp_path / "imgs", ("cat",))
    args = _imagefolder_args(root, tmp_path / "out", f"noise={noise}")
    assert_refused_unchanged(tmp_path, args, ["one class folder (cat)", "at least two"], capsys)


def test_dangling_symlink_among_images_is_named(tmp_path, capsys) -> None:
    root = _images(tmp_path / "imgs", ("cat", "dog"))
    (root / "train" / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    args = _imagefolder_args(root, tmp_path / "out")
    assert_refused_unchanged(tmp_path, args, ["cannot be read", "train/dog/gone.png"], capsys)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header promises ``width`` × ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_image_is_refused_from_its_header_in_one_line(tmp_path, capsys) -> None:
    root = _images(tmp_path / "imgs", ("cat", "dog"))
    (root / "train" / "cat" / "huge.png").write_bytes(png_header_claiming(10_000, 10_000))
    args = _imagefolder_args(root, tmp_path / "out")
    err = assert_refused_unchanged(tmp_path, args, ["huge.png (10000×10000)", "pixels"], capsys)
    assert "DecompressionBomb" not in err


# ---------------------------------------------------------------- label files


def _human(path: Path, out: Path) -> list[str]:
    sets = ["noise=0", "noise_kind=human", f"noise_file={path}"]
    return [*TINY, *[a for kv in sets for a in ("--set", kv)], "--out", str(out)]


def test_text_label_of_a_hundred_digits(tmp_path, capsys) -> None:
    path = _write(tmp_path / "labels.txt", "1" * 100 + "\n")
    args = _human(path, tmp_path / "out")
    assert_refused_unchanged(tmp_path, args, ["labels.txt", "not a class label"], capsys)


def npy_claiming(path: Path, count: int) -> Path:
    """A .npy file whose header claims ``count`` int64 labels and holds ten."""
    buf = io.BytesIO()
    np.save(buf, np.zeros(10, dtype=np.int64))
    data = buf.getvalue().replace(b"(10,)", f"({count},)".encode())
    header_len = struct.unpack("<H", data[8:10])[0] + len(f"({count},)") - len("(10,)")
    data = data[:8] + struct.pack("<H", header_len) + data[10:]
    path.write_bytes(data)
    return path


def test_npy_header_promising_2_to_the_40_labels_is_refused_from_its_header(
    tmp_path, capsys, monkeypatch
) -> None:
    path = npy_claiming(tmp_path / "labels.npy", 2**40)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the array was read"))
    args = _human(path, tmp_path / "out")
    assert_refused_unchanged(tmp_path, args, ["labels.npy", f"{2**40} labels", "1024"], capsys)


def test_uint64_labels_are_reported_as_they_are(tmp_path, capsys) -> None:
    path = tmp_path / "labels.npy"
    np.save(path, np.full(1024, 2**64 - 1, dtype=np.uint64))
    needles = ["labels.npy", "18446744073709551615..18446744073709551615"]
    assert_refused_unchanged(tmp_path, _human(path, tmp_path / "out"), needles, capsys)


def test_label_file_far_larger_than_the_dataset_is_refused_unread(tmp_path, capsys) -> None:
    path = tmp_path / "labels.txt"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # 64 MiB (sparse) for 1,024 images
    args = _human(path, tmp_path / "out")
    assert_refused_unchanged(tmp_path, args, ["labels.txt", "67,108,864 bytes"], capsys)


# ---------------------------------------------------------------- output folders


@pytest.mark.parametrize("below", [False, True])
def test_out_through_a_symlink_loop(tmp_path, capsys, below) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    out = tmp_path / "a" / "x" if below else tmp_path / "a"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli([*TINY, "--out", str(out)], capsys)
    assert code == 2, err
    assert_one_error_line(err, [str(out), "symlinks that loop", "another --out"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_database_with_another_programs_meta_table(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(out / "results.sqlite")
    conn.execute("CREATE TABLE meta (name TEXT, setting TEXT, since INTEGER)")
    conn.commit()
    conn.close()
    needles = ["results.sqlite", "not a sparsedd results database", "meta table"]
    for args in (["results", str(out)], [*TINY, "--out", str(out)]):
        err = assert_refused_unchanged(tmp_path, args, needles, capsys)
        assert "disk space" not in err


# ---------------------------------------------------------------- damaged databases


def _damaged(src: Path, tmp: Path, sql: str, *params: object) -> Path:
    out = tmp / "out"
    shutil.copytree(src, out)
    conn = sqlite3.connect(out / "results.sqlite")
    conn.execute(sql, params)
    conn.commit()
    conn.close()
    return out


NESTED = "[" * 990 + "]" * 990
CONFIG_DAMAGE = {
    "object-as-number": (
        "UPDATE runs SET config = json_set(config, '$.noise', json('{\"a\": 1}'))",
        ["a dict as config key 'noise'"],
    ),
    "text-as-number": (
        "UPDATE runs SET config = json_set(config, '$.weight_decay', '{\"a\": 1}')",
        ["as config key 'weight_decay'"],
    ),
    "nested-array": (
        f"UPDATE runs SET config = json_set(config, '$.noise', json('{NESTED}'))",
        ["recorded config of run"],
    ),
    "nested-layer-density": (
        f"UPDATE rounds SET layer_density = json_set(layer_density, '$.x', json('{NESTED}'))",
        ["round 0 of run"],
    ),
}
COMMANDS = {
    "results": ["results"],
    "analyze": ["analyze"],
    "plot": ["plot"],
    "report": ["report"],
    "export": ["export", "-o", "{tmp}/rounds.csv"],
    "status": ["status"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damage", sorted(CONFIG_DAMAGE))
def test_damaged_database_values_give_one_line(
    tmp_path,
    capsys,
    finished_results,
    damage,
    command,
) -> None:
    sql, needles = CONFIG_DAMAGE[damage]
    out = _damaged(finished_results, tmp_path, sql)
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    args = [args[0], str(out), *args[1:]]
    assert_refused_unchanged(tmp_path, args, ["results.sqlite", "damaged", *needles], capsys)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_empty_recorded_config_gives_a_table_or_one_line(
    tmp_path,
    capsys,
    finished_results,
    command,
) -> None:
    out = _damaged(finished_results, tmp_path, "UPDATE runs SET config = '{}'")
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    code, stdout, err = run_cli([args[0], str(out), *args[1:]], capsys)
    assert "Traceback" not in err
    if command != "status":  # the rounds, without config columns: one curve, no λ to choose
        assert code == 0, err
    else:
        assert code == 2, err
        assert_one_error_line(err, ["has no 'epochs'"])


SECOND_RUN_WITH_EMPTY_CONFIG = """
INSERT INTO runs SELECT 'emptied', '{}', created FROM runs;
CREATE TEMP TABLE copied AS SELECT * FROM rounds;
UPDATE copied SET run_id = 'emptied';
INSERT INTO rounds SELECT * FROM copied;
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_one_run_of_two_with_an_empty_config_gives_one_line(
    tmp_path,
    capsys,
    finished_results,
    command,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    conn = sqlite3.connect(out / "results.sqlite")
    conn.executescript(SECOND_RUN_WITH_EMPTY_CONFIG)
    conn.close()
    args = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    needles = ["damaged", "run 'emptied' has no 'noise'", "the other runs' configs have"]
    assert_refused_unchanged(tmp_path, [args[0], str(out), *args[1:]], needles, capsys)


# ---------------------------------------------------------------- exports and reports


def test_ambiguous_export_prefix_lists_only_the_runs_it_matches(
    tmp_path,
    capsys,
    finished_results,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    for name in ("ab12", "ab34", "cd56"):
        (out / "runs" / name).mkdir()
    args = ["export", str(out), "--run", "ab", "-o", str(tmp_path / "m.safetensors")]
    err = assert_refused_unchanged(
        tmp_path, args, ["'ab' matches several runs", "ab12, ab34"], capsys
    )
    assert "cd56" not in err


def _finished_child_pid() -> int:
    """The id of a process of this host that has ended."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(proc.stdout)


def _orphan(target: Path, pid: int) -> Path:
    host = "".join(c if c.isalnum() or c == "_" else "_" for c in socket.gethostname())
    path = target.parent / f".{target.name}.{host}-{pid}.abc123.tmp"
    path.write_text("half a file")
    return path


@pytest.mark.parametrize(
    ("command", "target"),
    [
        (["report"], "report.html"),
        (["plot"], "sdd.png"),
        (["export", "-o", "{out}/rounds.csv"], "rounds.csv"),
    ],
)
def test_temporary_file_of_a_killed_write_is_removed_by_the_next(
    tmp_path,
    capsys,
    finished_results,
    command,
    target,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished_results, out)
    dead = _orphan(out / target, _finished_child_pid())
    alive = _orphan(out / target, os.getppid())  # a writer still at work keeps its file
    args = [a.format(out=out) for a in command]
    code, _, err = run_cli([args[0], str(out), *args[1:]], capsys)
    assert code == 0, err
    assert (out / target).is_file()
    assert not dead.exists()
    assert alive.exists()


# ---------------------------------------------------------------- resuming and interrupting


def test_resume_after_the_last_epoch_does_not_say_epoch_n_plus_one_of_n() -> None:
    reporter, out = console_reporter()
    reporter.round_started("abcdef0123456789", 1, 1, 1)
    line = out.getvalue().splitlines()[1]
    assert "epoch 2 of 1" not in line
    assert line == (
        "abcdef01 resuming round 1/2 after its 1 trained epoch(s): evaluating and recording it"
    )


IMPORTING = """
import sys, time
import sparsedd.cli
print("importing", flush=True)
time.sleep(30)  # the rest of the command line's imports (click, rich) take this moment
import sparsedd.cli.main
"""


def test_ctrl_c_while_the_command_line_imports_is_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", IMPORTING],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "importing\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "sparsedd: interrupted; re-run the same command to resume\n"


def test_store_reads_a_whole_database(finished_results: Path) -> None:
    """The checks above refuse damage, not the databases sparsedd writes."""
    store = ResultsStore(finished_results, create=False)
    assert store.round_rows() and store.runs()
    assert snapshot(finished_results)
