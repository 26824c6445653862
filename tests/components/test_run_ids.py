"""Every preset's run id, pinned: restructuring the package must leave stored runs findable."""

from __future__ import annotations

import pytest

from sparsedd.components import run_id, validate
from sparsedd.presets import preset_config, preset_names

# Measured from the code before components declared the keys they read (issue 18).
PINNED = {
    "demo": "15f3540b53b503e0",
    "vit-cifar10": "3366fa5793751d24",
    "vit-cifar100": "a3f07ede54922ec2",
    "vit-cifar100n": "ecacbf3533f4e08c",
    "swin-cifar10": "7588369295d904b0",
    "swin-cifar100": "cfbc01d124ef6ab9",
    "resnet18-cifar10": "3398ebd566f45438",
    "resnet18-cifar100": "3c2a2827e62f7596",
    "lenet-mnist": "a23bfe61f7e2cfd7",
    "tiny": "a16f68afdece6d22",
    # added after that measurement (issue 19): its id as first recorded
    "own-data": "1f160dfe5d3fd352",
    # added with the remedies (issue 26): their ids as first recorded
    "dsd2-vgg-cifar10": "e8effe540173d0fd",
    "dsd2-vgg-cifar100": "7b064a8fed4e24a2",
}


def test_every_preset_is_pinned() -> None:
    assert sorted(PINNED) == sorted(preset_names())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_preset_run_id_is_unchanged(name: str) -> None:
    assert run_id(validate(preset_config(name))) == PINNED[name]
