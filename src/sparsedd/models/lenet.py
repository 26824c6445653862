"""LeNet-300-100, the fully connected network of He et al.'s MNIST study."""

from __future__ import annotations

from torch import nn

from sparsedd.config import Config
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds


@MODELS.register("lenet", ModelNeeds(output="5"))
def _lenet(cfg: Config, spec: InputSpec) -> nn.Module:
    """LeNet-300-100: a fully connected network with hidden widths 300 and 100."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(spec.channels * spec.image_size**2, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, spec.num_classes),
    )
