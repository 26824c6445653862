"""A label-free signal per round: the entropy of the nonlinearity units' activation states.

As DSD² (Quétu & Tartaglione, AAAI 2024, github VGCQ/DSD2 ``entropy.py``) defines it for ReLU
networks: a unit is *on* for an input when its pre-activation is positive. Over a fixed sample of
training images, a unit on with probability p has entropy H(p) = −p log₂ p − (1−p) log₂(1−p)
bits: 0 when it is always on or always off (it acts linearly, or is dead), 1 when it splits the
sample in half. A layer's entropy is the mean over its units (every element of its activation
but the batch); the model's is the mean over its layers. GELU units are on when their
pre-activation is positive, the sign that separates GELU's two regimes as it does ReLU's.

Unlike DSD²'s script, which hooks ``nn.ReLU`` modules and so misses functional calls (its ResNet
reuses one module, and ours calls ``F.relu``), every call of a ReLU or GELU counts as a layer,
module or functional: the calls are seen through a ``TorchFunctionMode``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

#: Training images the signal is measured on: the first ones of the run's training split.
ENTROPY_SAMPLE = 512
_ACTIVATIONS = frozenset(
    {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.gelu}
)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) in bits, elementwise, with 0 · log 0 = 0."""
    p = p.double()
    q = 1 - p
    terms = torch.where(p > 0, -p * torch.log2(p.clamp_min(1e-300)), 0.0)
    return terms + torch.where(q > 0, -q * torch.log2(q.clamp_min(1e-300)), 0.0)


def state_entropy(on: torch.Tensor) -> float:
    """Mean over units of the entropy of their on/off state; ``on`` is (samples, *units) bool."""
    if on.shape[0] == 0 or on[0].numel() == 0:
        return math.nan
    return float(binary_entropy(on.flatten(1).double().mean(0)).mean())


class ActivationStates(TorchFunctionMode):
    """Records, for every ReLU or GELU call, which of its inputs' units are on (positive)."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        """Record the pre-activation's signs, then call ``func`` as asked."""
        if func in _ACTIVATIONS and args and isinstance(args[0], torch.Tensor):
            self.states.append((args[0] > 0).detach().cpu())
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def activation_entropy(model: torch.nn.Module, inputs: torch.Tensor) -> float | None:
    """The model's mean activation-state entropy (bits) on ``inputs`` (a normalized batch),
    in eval mode and fp32; None for a model without ReLU or GELU units."""
    was_training = model.training
    model.eval()
    try:
        with ActivationStates() as recorder:
            model(inputs.float())
    finally:
        model.train(was_training)
    layers = [state_entropy(on) for on in recorder.states]
    layers = [h for h in layers if not math.isnan(h)]
    return float(sum(layers) / len(layers)) if layers else None
