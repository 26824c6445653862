"""Writers of small dataset files in the real formats (MNIST IDX, CIFAR python batches) and of
a folder of generated shape images (imagefolder layout)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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


#: The classes of the generated own-data folder (docs/own-data.md shows a run on it).
SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, rng: np.random.Generator) -> Image.Image:
    """One shape on a noisy background, in a random colour, size and aspect ratio."""
    w, h = (int(v) for v in rng.integers(24, 90, 2))
    background = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    x0, y0 = w * rng.uniform(0.05, 0.2), h * rng.uniform(0.05, 0.2)
    x1, y1 = w * rng.uniform(0.8, 0.95), h * rng.uniform(0.8, 0.95)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    else:
        draw.polygon(((x0, y1), (x1, y1), ((x0 + x1) / 2, y0)), fill=colour)
    return img


def write_shapes(root: Path, train: int = 50, test: int = 20, seed: int = 0) -> None:
    """``train`` and ``test`` images per class, PNG and JPEG, of many sizes."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True)
            for i in range(n):
                draw_shape(shape, rng).save(folder / f"{shape}{i}.{'png' if i % 2 else 'jpg'}")
