"""VGG-11 and VGG-16 in the CIFAR layout of He et al. (open_lth's ``cifar_vgg``).

Each number of a plan is a 3×3 convolution (padding 1, with bias) followed by BatchNorm and ReLU;
``M`` is a 2×2 max-pool. The last stage has no pool: its 512 channels are averaged (2×2 → 1×1 on
32×32 images) and one Linear maps them to the classes. Conv and Linear weights start
kaiming-normal (fan_in), BatchNorm scales uniform in [0, 1) and shifts 0, as open_lth's
``kaiming_normal`` and ``uniform`` initializers do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds

PLANS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
}
# Four 2×2 max-pools need at least 16 pixels to leave one.
MIN_IMAGE_SIZE = 16


class ConvBlock(nn.Sequential):
    """3×3 convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class VGG(nn.Module):
    """A VGG for small images: conv blocks and max-pools, average pool, one Linear."""

    def __init__(self, plan: list[int | str], spec: InputSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = spec.channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvBlock(cin, int(item)))
                cin = int(item)
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, spec.num_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.layers(x), 1)
        return self.fc(torch.flatten(x, 1))


@torch.no_grad()
def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight)
    elif isinstance(module, nn.BatchNorm2d):
        module.weight.uniform_(0, 1)
        module.bias.zero_()


def check_input(cfg: Config, spec: InputSpec) -> None:
    """ConfigError for images too small to survive four 2×2 max-pools."""
    if spec.image_size < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"model {cfg.model!r} needs images of at least {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE} "
            f"pixels (four 2×2 max-pools), not {spec.image_size}×{spec.image_size}; "
            f"choose another model or dataset"
        )


def _builder(name: str):
    def build(cfg: Config, spec: InputSpec) -> nn.Module:
        return VGG(PLANS[name], spec)

    build.__doc__ = f"{name.upper()} in the CIFAR layout of He et al."
    return build


for _name in PLANS:
    MODELS.register(_name, ModelNeeds(output="fc", input_check=check_input))(_builder(_name))
