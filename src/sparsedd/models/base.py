"""The model registry: models by name, built for a dataset's input shape and initialized.

Each family registers itself in its own module (``vit``, ``resnet``, ``lenet``, ``swin``,
``vgg``, ``timm_models``) with a ``ModelNeeds``: the config keys it reads, which layers are
prunable and which one produces the logits (as open_lth's models declare theirs). Importing
``sparsedd.models`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsedd.config import Config
from sparsedd.registry import Needs, Registry


@dataclass(frozen=True)
class InputSpec:
    """What a model must accept and predict."""

    channels: int
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class ModelNeeds(Needs):
    """A model's declaration: ``Needs`` plus its layers' roles.

    ``prunable``: shell-style patterns of the module names whose Linear or Conv weights pruning
    may remove (``*``: every one). ``output``: the module name of the layer producing the
    logits (what ``prune_exclude=output`` keeps dense); None: the last prunable layer.
    ``input_check``: raises a ConfigError for an input shape the model cannot take; it runs
    when a config is validated (for datasets of known shape) and before every build.
    """

    prunable: tuple[str, ...] = ("*",)
    output: str | None = None
    input_check: Callable[[Config, InputSpec], None] | None = None


#: Attribute under which ``create_model`` leaves a built model's ``ModelNeeds``.
ROLES_ATTRIBUTE = "sparsedd_roles"

ModelBuilder = Callable[[Config, InputSpec], nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model", default_needs=ModelNeeds())


def model_needs(name: str) -> ModelNeeds:
    """What model ``name`` declares (a plain ``Needs`` is read as every layer prunable)."""
    needs = MODELS.needs(name)
    if isinstance(needs, ModelNeeds):
        return needs
    return ModelNeeds(keys=needs.keys, shape=needs.shape, file_key=needs.file_key)


def create_model(cfg: Config, spec: InputSpec) -> nn.Module:
    """A freshly initialized model ``cfg.model`` for inputs described by ``spec``, carrying
    its declaration (see ``layer_roles``)."""
    builder, needs = MODELS.get(cfg.model), model_needs(cfg.model)
    if needs.input_check is not None:
        needs.input_check(cfg, spec)
    model = builder(cfg, spec)
    initialize(model, cfg.init)
    setattr(model, ROLES_ATTRIBUTE, needs)
    return model


def layer_roles(model: nn.Module) -> ModelNeeds:
    """The declaration a model was built with (its prunable patterns and output layer);
    every Linear and Conv layer prunable, the last one the output, for a model built by hand."""
    roles = getattr(model, ROLES_ATTRIBUTE, None)
    return roles if isinstance(roles, ModelNeeds) else ModelNeeds()


@torch.no_grad()
def initialize(model: nn.Module, init: str) -> None:
    """Re-draw weights as config key ``init`` names; ``torch`` keeps the layers' own init.

    ``kaiming_normal``: every Linear and Conv weight from kaiming_normal_ (fan_in, gain √2),
    biases untouched, as open_lth's ``initializers.kaiming_normal`` (He et al.'s code).
    ``kaiming_normal_fan_out``: Conv weights from kaiming_normal_ (fan_out, relu), BatchNorm
    weight 1 and bias 0, as the paper's ``models/resnet.py`` (torchvision's ResNet).
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
