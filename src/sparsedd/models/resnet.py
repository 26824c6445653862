"""ResNet-18 with the CIFAR stem (a 3×3 stride-1 convolution, no max-pool)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem: one 3×3 stride-1 convolution, no max-pool."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(spec.channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("resnet18", ModelNeeds(output="fc"))
def _resnet18(cfg: Config, spec: InputSpec) -> nn.Module:
    return ResNet18(spec)
