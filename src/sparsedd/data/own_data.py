"""Sizes for a run on the user's own images, chosen from the data (the ``own-data`` preset).

A folder of a few hundred images trains with no other setting: ``train_size`` stays null (all
images), and a tenth of the training images (at least one) is held out as validation, so that
``export --round best`` can pick a round without looking at the test images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparsedd.config import Config
from sparsedd.data.imagefolder import list_images

#: Fraction of the training images held out for validation when ``val_size`` is not given.
VAL_FRACTION = 0.1


def training_images(cfg: Config) -> int:
    """Number of training images in the imagefolder ``cfg.data_dir`` (no decoding)."""
    _, files = list_images(Path(cfg.data_dir).expanduser())
    return len(files["train"])


def sized_for_data(cfg: Config) -> Config:
    """``cfg`` with ``val_size`` a tenth of its imagefolder's training images (at least 1)."""
    n = training_images(cfg)
    return dataclasses.replace(cfg, val_size=max(1, int(n * VAL_FRACTION)) if n > 1 else 0)
