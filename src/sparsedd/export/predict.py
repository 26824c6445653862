"""Predict classes of image files with an exported model, preparing each image as in training.

``predict(model_file, images)`` reads the export's ``preprocess`` and ``input`` metadata, decodes
every image as training did (``sparsedd.data.preprocess.read_image``), normalizes it and returns
``(path, class name)`` pairs in the order given. ``Predictor`` keeps the model for many calls.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsedd.data.preprocess import (
    MAX_PIXELS,
    UNREADABLE,
    ImageTooLarge,
    printable,
    read_image,
)
from sparsedd.errors import DataError
from sparsedd.export.pruned import load_pruned, pruned_metadata

#: Images classified per forward pass.
BATCH = 256
#: Unreadable images named in an error; the count says how many more.
NAMED = 5


class Predictor:
    """An exported model with its class names and preprocessing, ready for image files."""

    def __init__(self, model_file: str | Path) -> None:
        """Load and check ``model_file`` (an export of `sparsedd export --run`)."""
        self.model: nn.Module = load_pruned(model_file)  # checks every field and tensor
        info = pruned_metadata(model_file)["input"]
        self.channels: int = info["channels"]
        self.image_size: int = info["image_size"]
        self.classes: list[str] = info.get("classes") or [
            str(i) for i in range(info["num_classes"])
        ]
        self.mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(info["std"]).view(1, -1, 1, 1)

    def pixels(self, images: Sequence[str | Path]) -> torch.Tensor:
        """The images as one uint8 NCHW tensor; DataError naming those that cannot be read
        (or are not regular files, or are larger than training would take), with the cause."""
        out = np.zeros((len(images), self.channels, self.image_size, self.image_size), np.uint8)
        failed, special, too_large = [], [], []
        for i, path in enumerate(images):
            shown = printable(str(path))
            if not _regular_or_missing(path):
                special.append(shown)
                continue
            try:
                out[i] = read_image(path, self.image_size, self.channels, max_pixels=MAX_PIXELS)
            except ImageTooLarge as err:
                too_large.append(f"{shown} ({err.width}×{err.height})")
            except UNREADABLE:
                failed.append(shown)
            except Exception as err:  # e.g. Pillow's DecompressionBombError
                if type(err).__module__.split(".")[0] != "PIL":
                    raise
                failed.append(shown)
        if special:
            raise DataError(
                f"{len(special)} input(s) are not regular files (a folder, pipe or device): "
                f"{_named(special)}; give image files"
            )
        if too_large:
            raise DataError(
                f"{len(too_large)} image(s) have more than {MAX_PIXELS:,} pixels: "
                f"{_named(too_large)}; shrink them: training refuses such images too"
            )
        if failed:
            raise DataError(
                f"{len(failed)} image(s) cannot be read: {_named(failed)}; give image files "
                f"(PNG, JPEG, …) that exist"
            )
        return torch.from_numpy(out)

    @torch.no_grad()
    def labels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Predicted class index of each uint8 NCHW image."""
        out = []
        for start in range(0, len(pixels), BATCH):
            x = (pixels[start : start + BATCH].float() / 255.0 - self.mean) / self.std
            out.append(self.model(x).argmax(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def __call__(self, images: Sequence[str | Path]) -> list[tuple[str, str]]:
        """``(path, predicted class name)`` for each image file, in the order given."""
        labels = self.labels(self.pixels(images)).tolist()
        return [(str(p), self.classes[k]) for p, k in zip(images, labels, strict=True)]


def _regular_or_missing(path: str | Path) -> bool:
    """False for a folder, pipe, device or socket (opening a pipe would wait for ever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # missing or unreadable: said as "cannot be read"
        return True


def _named(items: list[str]) -> str:
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return f"{', '.join(items[:NAMED])}{more}"


def predict(model_file: str | Path, images: Sequence[str | Path]) -> list[tuple[str, str]]:
    """``(path, predicted class name)`` for each image file, by the model exported to
    ``model_file``; images are decoded, resized and normalized exactly as in training."""
    return Predictor(model_file)(images)
