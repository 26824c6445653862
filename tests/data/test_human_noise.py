"""Human label noise: labels read from CIFAR-N .pt files, .npy and text files, never executed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from support import assert_one_error_line, run_cli, snapshot, tiny_config

from sparsedd.data.datasets import load_dataset, make_splits
from sparsedd.errors import ConfigError, DataError

# The synthetic dataset of the `tiny` preset: 1,024 training images, 4 classes.
TRAIN = load_dataset(tiny_config())
N, CLASSES = len(TRAIN.train_y), TRAIN.num_classes


def human_labels(seed: int = 0, flip: float = 0.4) -> np.ndarray:
    """The synthetic training labels with a seeded share replaced, as annotators would."""
    rng = np.random.default_rng(seed)
    labels = TRAIN.train_y.numpy().copy()
    chosen = rng.random(N) < flip
    labels[chosen] = rng.integers(0, CLASSES, int(chosen.sum()))
    return labels


def save_like_cifar_n(path: Path, entries: dict) -> Path:
    """``torch.save`` a dict of label arrays, naming NumPy's types as the CIFAR-N release does.

    The release was written under NumPy 1, whose pickles name ``numpy.core.multiarray``;
    NumPy 2 writes ``numpy._core.multiarray``: rewrite the names as the release has them.
    """
    buffer = io.BytesIO()
    torch.save(entries, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            out.writestr(info, data)
    return path


def cifar10n_like(path: Path, worse: np.ndarray) -> Path:
    clean = TRAIN.train_y.numpy().astype(np.int64)
    return save_like_cifar_n(
        path,
        {
            "clean_label": clean,
            "aggre_label": clean.copy(),
            "worse_label": worse.astype(np.int64),
            "random_label1": human_labels(1),
        },
    )


def splits_with(path: Path, label_set: str | None = None, **overrides):
    cfg = tiny_config(
        noise=0.0, noise_kind="human", noise_file=str(path), noise_label_set=label_set, **overrides
    )
    return make_splits(TRAIN, cfg)


def test_cifar_n_release_format_is_read_without_unpickling_code(tmp_path) -> None:
    worse = human_labels()
    path = cifar10n_like(tmp_path / "CIFAR-10_human.pt", worse)
    assert b"numpy.core.multiarray" in path.read_bytes()  # the release's NumPy-1 names
    s = splits_with(path, "worse_label")
    every = torch.cat([s.val_y, s.train_y])
    assert torch.equal(every, torch.from_numpy(worse)[s.pool_indices])
    clean = TRAIN.train_y[s.pool_indices[len(s.val_y) :]]
    assert torch.equal(s.train_is_noisy, s.train_y != clean)
    assert 0.2 < float(s.train_is_noisy.float().mean()) < 0.4  # 40% redrawn, 3 in 4 change


def test_cifar_100n_lists_and_label_set_choice(tmp_path) -> None:
    clean = TRAIN.train_y.numpy().astype(np.int64)
    path = save_like_cifar_n(
        tmp_path / "CIFAR-100_human.pt",
        {
            "clean_label": clean,
            "noisy_label": human_labels(2),
            "clean_coarse_label": [int(v) // 2 for v in clean],
            "noisy_coarse_label": [int(v) // 2 for v in human_labels(2)],
        },
    )
    fine = splits_with(path, "noisy_label", val_size=0)
    coarse = splits_with(path, "noisy_coarse_label", val_size=0)
    assert torch.equal(fine.train_y, torch.from_numpy(human_labels(2))[fine.pool_indices])
    assert torch.equal(coarse.train_y, fine.train_y // 2)


def test_npy_and_text_files(tmp_path) -> None:
    labels = human_labels(3)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "labels.txt").write_text("\n".join(map(str, labels)) + "\n")
    a = splits_with(tmp_path / "labels.npy")
    b = splits_with(tmp_path / "labels.txt")
    assert torch.equal(a.train_y, b.train_y)
    assert torch.equal(a.train_y, torch.from_numpy(labels)[a.pool_indices[len(a.val_y) :]])


def test_relative_noise_file_is_found_in_data_dir(tmp_path) -> None:
    np.save(tmp_path / "labels.npy", human_labels(4))
    s = splits_with(Path("labels.npy"), data_dir=str(tmp_path))
    assert torch.equal(s.train_y, torch.from_numpy(human_labels(4))[s.pool_indices[64:]])


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"worse_label": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="could run code"):
        splits_with(tmp_path / "evil.pt", "worse_label")
    assert not marker.exists()
    np.save(tmp_path / "objects.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a plain NumPy array"):
        splits_with(tmp_path / "objects.npy")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda p: np.save(p / "f.npy", human_labels()[:-1]), ["holds 1023 labels", "1024"]),
        (lambda p: np.save(p / "f.npy", human_labels() + CLASSES), ["outside", "0..3"]),
        (lambda p: np.save(p / "f.npy", np.zeros((N, 2), np.int64)), ["shape (1024, 2)"]),
        (lambda p: np.save(p / "f.npy", human_labels().astype(float)), ["integer class labels"]),
        (lambda p: (p / "f.txt").write_text("1\n2\ncat\n"), ["'cat'", "one integer label"]),
        (lambda p: (p / "f.pt").write_bytes(b"PK\x03\x04cut"), ["not a readable torch file"]),
    ],
)
def test_files_that_do_not_fit_are_refused_in_one_line(tmp_path, capsys, make, needles) -> None:
    make(tmp_path)
    (name,) = [p.name for p in tmp_path.iterdir()]
    out = tmp_path / "out"
    args = ["run", "--preset", "tiny", "--out", str(out), "-q"]
    for kv in ("noise=0", "noise_kind=human", f"noise_file={tmp_path / name}"):
        args += ["--set", kv]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, ["noise_file", *needles])
    assert snapshot(out) == {}


def test_label_sets_are_named_and_checked(tmp_path) -> None:
    path = cifar10n_like(tmp_path / "CIFAR-10_human.pt", human_labels())
    with pytest.raises(ConfigError, match="worse_label"):
        splits_with(path, None)  # several sets, none picked: the error lists them
    with pytest.raises(ConfigError, match="choose one of: clean_label, aggre_label"):
        splits_with(path, "worst_label")
    np.save(tmp_path / "one.npy", human_labels())
    with pytest.raises(ConfigError, match="noise_label_set=null"):
        splits_with(tmp_path / "one.npy", "worse_label")


def test_a_file_made_for_another_image_order_is_refused(tmp_path) -> None:
    clean = TRAIN.train_y.numpy().astype(np.int64)
    path = save_like_cifar_n(
        tmp_path / "shuffled.pt", {"clean_label": clean[::-1].copy(), "noisy_label": clean}
    )
    with pytest.raises(DataError, match="clean_label set disagrees"):
        splits_with(path, "noisy_label")


def test_human_noise_config_rules() -> None:
    with pytest.raises(ConfigError, match="needs config key 'noise_file'"):
        tiny_config(noise=0.0, noise_kind="human")
    with pytest.raises(ConfigError, match="set noise=0"):
        tiny_config(noise=0.2, noise_kind="human", noise_file="x.npy")
    with pytest.raises(ConfigError, match="read only with noise_kind=human"):
        tiny_config(noise_file="x.npy")
