"""``dataset=imagefolder``: the user's own images in torchvision's ImageFolder layout.

``data_dir`` holds ``train/`` and ``test/``, each with one sub-folder per class. Images are decoded
once, converted to RGB, resized to ``image_size`` × ``image_size`` and cached as uint8 tensors in
``data_dir/.sparsedd-cache-<size>px.safetensors``. The cache carries a manifest (every file's path,
SHA-256 digest of its bytes and label) in its metadata: a folder whose files changed in content is
decoded again, whatever their size and modification time say, and a cache whose own tensors no
longer match the digest it was written with is decoded again too. Symlinks to folders are followed,
but one that loops back to a folder above it is refused; a file that is not a regular file (a
pipe, a device) is refused before it is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sparsedd.config import Config
from sparsedd.data.datasets import DATASETS, FILES_IN_DATA_DIR, ImageData, check_image_data
from sparsedd.data.preprocess import MAX_PIXELS, UNREADABLE, ImageTooLarge, printable, read_image
from sparsedd.errors import DataError, UserError
from sparsedd.options import Option
from sparsedd.registry import Needs
from sparsedd.store import checkpoint as ckpt

# Imported inside functions, where used: torchvision (4 s more than torch to import);
# measured: docs/architecture.md, "Imports".

SPLITS = ("train", "test")
# At most this many unreadable files are named; the count says how many more there are.
NAMED_FAILURES = 5


def cache_path(root: Path, image_size: int) -> Path:
    """Where the decoded images of ``root`` at ``image_size`` are cached."""
    return root / f".sparsedd-cache-{image_size}px.safetensors"


def list_images(root: Path) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Class names (from ``train/``) and, per split, (relative path, label) of every image."""
    layout = f"put one sub-folder per class in {root}/train and {root}/test"
    for split in SPLITS:
        if not (root / split).is_dir():
            raise DataError(f"imagefolder data_dir {root} has no {split}/ folder; {layout}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"imagefolder {root}/train holds no class folders; {layout}")
    if len(classes) < 2:
        raise DataError(
            f"imagefolder {root}/train holds one class folder ({_printable(classes[0])}); a "
            f"classifier needs at least two: {layout}"
        )
    extra = sorted({p.name for p in (root / "test").iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise DataError(
            f"imagefolder {root}/test has class folders that train/ lacks "
            f"({_printable(', '.join(extra))}); give both splits the same classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    files = {}
    for split in SPLITS:
        present = {c: i for c, i in index.items() if (root / split / c).is_dir()}
        files[split] = [
            (str(Path(path).relative_to(root)), label)
            for path, label in _class_files(root, root / split, present)
        ]
        if not files[split]:
            raise DataError(
                f"imagefolder {root}/{split} holds no images ({', '.join(_extensions())}); {layout}"
            )
    return classes, files


def _extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def _class_files(root: Path, split: Path, classes: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image under each class folder, in torchvision's order; a
    symlinked folder that loops back to a folder above it is refused (it would repeat images
    without end)."""
    found = []
    for name, label in sorted(classes.items(), key=lambda item: item[1]):
        for folder, _, names in sorted(_walk(root, split / name)):
            found += [
                (os.path.join(folder, n), label)
                for n in sorted(names)
                if n.lower().endswith(_extensions())
            ]
    return found


def _walk(root: Path, top: Path) -> list[tuple[str, list[str], list[str]]]:
    """``os.walk(top, followlinks=True)``, refusing a folder link that leads to a folder
    holding it (a loop)."""
    out = []
    for folder, dirs, names in os.walk(top, followlinks=True):
        here = os.path.realpath(folder)
        for d in dirs:
            target = os.path.realpath(os.path.join(folder, d))
            if here == target or here.startswith(target + os.sep):
                link = Path(folder, d).relative_to(root)
                raise DataError(
                    f"imagefolder {root}: {_printable(str(link))} is a symlink that loops back "
                    f"to a folder above it (its images would be counted without end); remove "
                    f"the link"
                )
        out.append((folder, dirs, names))
    return out


def _printable(text: str) -> str:
    return printable(text)


def build_manifest(
    root: Path, image_size: int, classes: list[str], files: dict[str, list[tuple[str, int]]]
) -> dict[str, Any]:
    """What the cache was made from: size, classes, and each file's path, SHA-256 and label.

    Content, not size and modification time, identifies a file: a picture replaced by
    another with the same size and time (``cp -p``, ``touch -r``) is decoded again.
    """
    entries, failed, special = {}, [], []
    for split, items in files.items():
        rows = []
        for rel, label in items:
            digest = _file_digest(root / rel)
            if digest is None:  # a dangling symlink, a file removed meanwhile, no permission
                failed.append(rel)
            elif digest == "":
                special.append(rel)
            else:
                rows.append([rel, digest, label])
        entries[split] = rows
    if special:
        raise DataError(
            f"{len(special)} file(s) in {root} are not regular files (a pipe, device or "
            f"socket): {_named([_printable(r) for r in special])}; remove them or put the "
            f"image files there"
        )
    if failed:
        raise DataError(unreadable_message(root, failed))
    return {"image_size": image_size, "classes": classes, "files": entries}


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes; "" for a pipe, device or socket (never opened);
    None when it cannot be read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return ""
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def decode_images(
    root: Path, items: list[tuple[str, int]], image_size: int
) -> tuple[torch.Tensor, list[str]]:
    """The images as one uint8 NCHW tensor, and the paths of those that cannot be read."""
    out = np.zeros((len(items), 3, image_size, image_size), dtype=np.uint8)
    failed, too_large = [], []
    for i, (rel, _) in enumerate(items):
        try:
            out[i] = read_image(root / rel, image_size, max_pixels=MAX_PIXELS)
        except ImageTooLarge as err:
            too_large.append(f"{_printable(rel)} ({err.width}×{err.height})")
        except (*UNREADABLE, Image.DecompressionBombError):
            failed.append(rel)
    if too_large:
        raise DataError(
            f"{len(too_large)} image(s) in {root} have more than {MAX_PIXELS:,} pixels: "
            f"{_named(too_large)}; shrink them (or remove them): they would take gigabytes "
            f"to decode"
        )
    return torch.from_numpy(out), failed


def unreadable_message(root: Path, failed: list[str]) -> str:
    """One line naming the images that cannot be read (the first few, then a count)."""
    return (
        f"{len(failed)} image(s) in {root} cannot be read: "
        f"{_named([_printable(f) for f in failed])}; repair or remove them"
    )


def _named(items: list[str]) -> str:
    """The first few of ``items``, then how many more there are."""
    named = ", ".join(items[:NAMED_FAILURES])
    more = f" and {len(items) - NAMED_FAILURES} more" if len(items) > NAMED_FAILURES else ""
    return f"{named}{more}"


def load_imagefolder(cfg: Config) -> ImageData:
    """The ImageFolder data in ``cfg.data_dir`` at ``cfg.image_size``, from the cache if fresh."""
    root = Path(cfg.data_dir).expanduser()
    classes, files = list_images(root)
    manifest = build_manifest(root, cfg.image_size, classes, files)
    cache = cache_path(root, cfg.image_size)
    tensors = _read_cache(cache, manifest)
    if tensors is None:
        tensors, failed = {}, []
        for split in SPLITS:
            images, bad = decode_images(root, files[split], cfg.image_size)
            tensors[f"{split}_x"] = images
            tensors[f"{split}_y"] = torch.tensor([label for _, label in files[split]])
            failed += bad
        if failed:
            raise DataError(unreadable_message(root, failed))
        _write_cache(cache, tensors, manifest)
    train = tensors["train_x"].float().div_(255)
    mean = tuple(float(v) for v in train.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in train.std(dim=(0, 2, 3)))
    data = ImageData(
        tensors["train_x"],
        tensors["train_y"].long(),
        tensors["test_x"],
        tensors["test_y"].long(),
        len(classes),
        mean,
        std,
        tuple(classes),
    )
    check_image_data(data, f"imagefolder images in {root}")
    return data


def _read_cache(path: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The cached tensors if the cache exists, is readable and matches ``manifest``."""
    if not path.is_file():
        return None
    try:
        tensors, meta = ckpt.load_tensors(path)
    except UserError:
        return None  # a damaged cache is rebuilt
    if meta.get("manifest") != json.loads(json.dumps(manifest)):
        return None
    if meta.get("tensors_sha256") != _tensors_digest(tensors):
        return None  # the cache itself was changed: its pixels are not trusted
    return tensors


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the cached tensors' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _write_cache(path: Path, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
    """Cache the decoded images; a read-only data folder only costs decoding again next time."""
    try:
        meta = {"manifest": manifest, "tensors_sha256": _tensors_digest(tensors)}
        ckpt.save_tensors(path, tensors, meta)
    except UserError as err:
        print(f"sparsedd: note: images not cached ({err})", file=sys.stderr)


#: The side images are resized to (a key of imagefolder's own).
IMAGE_SIZE = Option(
    "image_size", int, 32, "side in pixels that imagefolder images are resized to", min=1, max=4096
)
# Its shape is known only from its files.
DATASETS.register("imagefolder", Needs(options=(IMAGE_SIZE,), file_key=FILES_IN_DATA_DIR))(
    load_imagefolder
)
