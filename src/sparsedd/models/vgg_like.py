"""DSD²'s VGG-like student (Quétu & Tartaglione, AAAI 2024: ``utils/models.py``, ``VGGlikeModel``).

``vgg_depth`` (δ) blocks, each two 3×3 convolutions (padding 1, with bias), every one followed by
ReLU then BatchNorm (their ``conv_block`` order), and a 2×2 max-pool. The first block is
``vgg_width`` wide (2^γ), each later one twice the one before. An adaptive average pool to 7×7
and one Linear (``classifier.0``) give the logits. PyTorch's default initialization, as theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds
from sparsedd.options import Option

#: Side of the adaptive average pool before the classifier (their ``AdaptiveAvgPool2d(7)``).
POOLED = 7


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3×3 convolution, ReLU, BatchNorm (DSD²'s order)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), nn.BatchNorm2d(cout))


class VGGLike(nn.Module):
    """δ blocks of two convolutions and a max-pool, widths w·2^i; pool to 7×7; one Linear."""

    def __init__(self, depth: int, width: int, spec: InputSpec) -> None:
        super().__init__()
        self.features = nn.Sequential()
        cin = spec.channels
        for i in range(depth):
            cout = width * 2**i
            self.features.add_module(f"conv_block{i + 1}_1", conv_block(cin, cout))
            self.features.add_module(f"conv_block{i + 1}_2", conv_block(cout, cout))
            self.features.add_module(f"maxpool{i + 1}", nn.MaxPool2d(2))
            cin = cout
        self.features.add_module("avg_pool", nn.AdaptiveAvgPool2d(POOLED))
        self.classifier = nn.Sequential(nn.Linear(POOLED * POOLED * cin, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def check_input(cfg: Config, spec: InputSpec) -> None:
    """ConfigError for images too small to survive ``vgg_depth`` 2×2 max-pools."""
    if spec.image_size >> cfg.vgg_depth < 1:
        deepest = max(spec.image_size.bit_length() - 1, 0)
        raise ConfigError(
            f"model 'vgg-like' with vgg_depth={cfg.vgg_depth} needs images of at least "
            f"{2**cfg.vgg_depth}×{2**cfg.vgg_depth} pixels ({cfg.vgg_depth} 2×2 max-pools), "
            f"not {spec.image_size}×{spec.image_size}; set vgg_depth={deepest} or less"
        )


@MODELS.register(
    "vgg-like",
    ModelNeeds(
        options=(
            Option(
                "vgg_depth",
                int,
                5,
                "blocks of two 3×3 convolutions and a 2×2 max-pool (DSD²'s δ); images need at "
                "least 2^δ pixels a side",
                min=1,
            ),
            Option(
                "vgg_width",
                int,
                32,
                "channels of the first block, doubled by each next block (DSD²'s 2^γ)",
                min=1,
            ),
        ),
        output="classifier.0",
        input_check=check_input,
    ),
)
def vgg_like(cfg: Config, spec: InputSpec) -> nn.Module:
    """DSD²'s VGG-like student: ``vgg_depth`` blocks, the first ``vgg_width`` wide."""
    return VGGLike(cfg.vgg_depth, cfg.vgg_width, spec)
