"""How an image file becomes a model input: the one decoding path of training and prediction.

An image is opened with Pillow, converted to RGB (3 channels) or L (1 channel), resized to
``size`` × ``size`` with a bilinear filter (aspect ratio not kept) and stored as uint8 in NCHW
order; models then see ``(pixels / 255 − mean) / std`` per channel. ``describe`` writes the same
rules into an exported model, so that inference needs no source code.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: Pillow's filter used to resize images (training's imagefolder cache and ``predict``).
RESIZE_FILTER = "bilinear"
#: Pillow colour mode per channel count.
COLOR_MODES = {1: "L", 3: "RGB"}
#: The most pixels an image may have (its header says how many before it is decoded), in
#: training and in ``predict``: an 8,000 × 8,000 photo passes; larger ones would take seconds
#: and gigabytes each to decode.
MAX_PIXELS = 64_000_000
#: Errors Pillow raises on a file that is not a readable image.
UNREADABLE = (OSError, ValueError, SyntaxError)


class ImageTooLarge(ValueError):
    """An image whose header promises more pixels than the caller allows (nothing decoded)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}×{height} pixels")
        self.width, self.height = width, height


def read_image(
    path: str | Path, size: int, channels: int = 3, max_pixels: int | None = None
) -> np.ndarray:
    """The image at ``path`` as a (channels, size, size) uint8 array, decoded as in training.

    With ``max_pixels``, an image whose header promises more is refused (ImageTooLarge) before
    it is decoded.
    """

    filter_ = getattr(Image.Resampling, RESIZE_FILTER.upper())
    with warnings.catch_warnings():
        # PIL warns (two raw lines) of images between its limits; the caller's is lower
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open_header(path, max_pixels is not None) as img:  # reads the header only
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(width, height)
            converted = img.convert(COLOR_MODES[channels]).resize((size, size), filter_)
            array = np.asarray(converted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


_PIL_LIMIT = threading.Lock()


@contextlib.contextmanager
def _open_header(path: str | Path, own_bound: bool) -> Iterator[Any]:
    """``Image.open(path)``; with ``own_bound``, Pillow's own pixel limit (an error past 179
    million pixels) is lifted for the open alone, so that the caller's bound names the size."""
    if not own_bound:
        with Image.open(path) as img:
            yield img
        return
    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with img:
        yield img


def printable(text: str) -> str:
    """``text`` with every character that is not printable (tab, newline, escape, other
    control and format characters) written as its Python escape (``\\t``, ``\\x1b``): a
    file or class name can neither break a line of tab-separated output nor steer a terminal."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def describe(channels: int, image_size: int, mean: list[float], std: list[float]) -> dict[str, Any]:
    """The preprocessing of a model's inputs, as plain data (an export's ``preprocess``)."""
    return {
        "decoder": "Pillow",
        "color_mode": COLOR_MODES.get(channels, f"{channels} channels"),
        "channel_order": "RGB" if channels == 3 else "single",
        "resize": [image_size, image_size],
        "resize_filter": RESIZE_FILTER,
        "keep_aspect_ratio": False,
        "layout": "NCHW",
        "scale": "pixels / 255",
        "mean": list(mean),
        "std": list(std),
        "formula": "(pixels / 255 - mean) / std, per channel",
    }
