"""Shared fixtures: tiny configs on generated data, so every test runs in seconds."""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from sparsedd.components import validate
from sparsedd.config import Config
from sparsedd.presets import preset_config

# A shell starts background jobs with Ctrl-C ignored, and children inherit that: the processes
# that tests interrupt with SIGINT would then ignore it. Give them the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# CI tries the same examples on every run: a property test that found a new case there would fail
# a submission at random. A developer's run keeps exploring new ones (and remembers failures).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

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
