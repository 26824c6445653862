"""Writers of small dataset files in the real formats (MNIST IDX, CIFAR python batches)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in the IDX format (magic 0x0800 | ndim, big-endian sizes)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(
        struct.pack(">I", s) for s in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(
    folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """MNIST-format files (gzip like Debian's, or raw like torchvision's) with random pixels."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28)),
        IDX_NAMES[1]: rng.integers(0, 10, n_train),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28)),
        IDX_NAMES[3]: rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def write_cifar10(root: Path, n_per_batch: int = 8, seed: int = 0) -> dict[str, str]:
    """CIFAR-10 python batches under ``root/cifar-10-batches-py``; returns their MD5s."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {
            "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n_per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [str(i) for i in range(10)]})
    )
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def patch_cifar10_checksums(monkeypatch, md5s: dict[str, str]) -> None:
    """Make torchvision's CIFAR10 expect the generated files' checksums."""
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5s[f"data_batch_{i}"]] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5s["test_batch"]]])
    monkeypatch.setattr(
        CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": md5s["batches.meta"]},
    )
