"""Shared fixtures: tiny configs on generated data, so every test runs in seconds."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest

from sparsedd.components import validate
from sparsedd.config import Config
from sparsedd.presets import preset_config

# A shell starts background jobs with Ctrl-C ignored, and children inherit that: the processes
# that tests interrupt with SIGINT would then ignore it. Give them the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_VIT = dict(
    model="vit",
    patch_size=4,
    dim=16,
    depth=1,
    heads=2,
    dim_head=8,
    mlp_dim=16,
    dropout=0.1,
    emb_dropout=0.1,
)


def tiny_config(**overrides: Any) -> Config:
    """The `tiny` preset (generated 8×8 data, LeNet) with overrides, validated."""
    return validate(dataclasses.replace(preset_config("tiny"), **overrides))


@pytest.fixture
def tiny() -> Config:
    """The `tiny` preset config."""
    return tiny_config()
