"""The model registry: models by name, built for a dataset's input shape and initialized.

Each family registers itself in its own module (``vit``, ``resnet``, ``lenet``, ``swin``,
``vgg``, ``timm_models``); importing ``sparsedd.models`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsedd.config import Config
from sparsedd.registry import Registry


@dataclass(frozen=True)
class InputSpec:
    """What a model must accept and predict."""

    channels: int
    image_size: int
    num_classes: int


ModelBuilder = Callable[[Config, InputSpec], nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


def create_model(cfg: Config, spec: InputSpec) -> nn.Module:
    """A freshly initialized model ``cfg.model`` for inputs described by ``spec``."""
    model = MODELS.get(cfg.model)(cfg, spec)
    initialize(model, cfg.init)
    return model


@torch.no_grad()
def initialize(model: nn.Module, init: str) -> None:
    """Re-draw weights as config key ``init`` names; ``torch`` keeps the layers' own init.

    ``kaiming_normal``: every Linear and Conv weight from kaiming_normal_ (fan_in, gain √2),
    biases untouched, as open_lth's ``initializers.kaiming_normal`` (He et al.'s code).
    ``kaiming_normal_fan_out``: Conv weights from kaiming_normal_ (fan_out, relu), BatchNorm
    weight 1 and bias 0, as the seed paper's ``models/resnet.py`` (torchvision's ResNet).
    """
    if init == "torch":
        return
    for module in model.modules():
        if init == "kaiming_normal" and isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight)
        elif init == "kaiming_normal_fan_out":
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
