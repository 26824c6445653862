"""Named configs: the CPU demo and the seed paper's protocols (see shared DESIGN.md)."""

from __future__ import annotations

from typing import Any

from sparsedd.config import DEFAULTS, Config, apply
from sparsedd.errors import ConfigError
from sparsedd.registry import unknown_name_message

_PAPER_VIT: dict[str, Any] = dict(
    model="vit",
    patch_size=4,
    dim=512,
    depth=6,
    heads=8,
    dim_head=64,
    mlp_dim=512,
    dropout=0.1,
    emb_dropout=0.1,
    augment="flip_crop",
    optimizer="adamw",
    lr=1e-4,
    weight_decay=0.03,
    l2_mode="decoupled",
    batch_size=512,
    epochs=200,
    schedule="cosine",
    prune_rate=0.2,
    rounds=34,
    retrain="lr_rewind",
    noise=0.2,
    precision="bf16",
)
_PAPER_RESNET: dict[str, Any] = dict(
    model="resnet18",
    augment="flip_crop",
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    l2_mode="coupled",
    batch_size=128,
    epochs=160,
    schedule="step",
    prune_rate=0.2,
    rounds=34,
    retrain="lr_rewind",
    noise=0.2,
    precision="bf16",
)

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo": (
        "CPU demo: small ViT on 4,000 Fashion-MNIST images, 20% noise; shows SDD in minutes",
        dict(
            model="vit",
            patch_size=7,
            dim=64,
            depth=2,
            heads=4,
            dim_head=16,
            mlp_dim=128,
            dropout=0.0,
            emb_dropout=0.0,
            dataset="fashion-mnist",
            train_size=5000,
            val_size=1000,
            noise=0.2,
            noise_kind="symmetric",
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.0,
            batch_size=128,
            epochs=30,
            dense_epochs=60,
            schedule="cosine",
            prune_rate=0.2,
            rounds=20,
            threads=1,
            # Measured (README, "Speed"): bf16 autocast + torch.compile where the CPU has native
            # bf16 is about 2x the paper's pipeline per round; fp32 eager elsewhere.
            precision="auto",
            compile=None,
        ),
    ),
    "vit-cifar10": (
        "Quétu et al.: ViT on CIFAR-10, AdamW, 200 epochs/round, 34 rounds",
        dict(_PAPER_VIT, dataset="cifar10"),
    ),
    "vit-cifar100": (
        "Quétu et al.: ViT on CIFAR-100, AdamW, 200 epochs/round, 34 rounds",
        dict(_PAPER_VIT, dataset="cifar100"),
    ),
    "swin-cifar10": (
        "Quétu et al.: Swin-T on CIFAR-10, AdamW, 200 epochs/round, 34 rounds",
        dict(_PAPER_VIT, model="swin", dataset="cifar10"),
    ),
    "swin-cifar100": (
        "Quétu et al.: Swin-T on CIFAR-100, AdamW, 200 epochs/round, 34 rounds",
        dict(_PAPER_VIT, model="swin", dataset="cifar100"),
    ),
    "resnet18-cifar10": (
        "Quétu et al.: ResNet-18 on CIFAR-10, SGD, 160 epochs/round",
        dict(_PAPER_RESNET, dataset="cifar10"),
    ),
    "resnet18-cifar100": (
        "Quétu et al.: ResNet-18 on CIFAR-100, SGD, 160 epochs/round",
        dict(_PAPER_RESNET, dataset="cifar100"),
    ),
    "lenet-mnist": (
        "He et al.: LeNet-300-100 on MNIST, SGD, 20% noise",
        dict(
            model="lenet",
            dataset="mnist",
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=0.0,
            l2_mode="coupled",
            batch_size=128,
            epochs=200,
            schedule="step",
            noise=0.2,
            rounds=34,
            dropout=0.0,
            emb_dropout=0.0,
        ),
    ),
    "tiny": (
        "seconds-long smoke test on generated data (used by the tests)",
        dict(
            model="lenet",
            dataset="synthetic",
            optimizer="adamw",
            lr=3e-3,
            weight_decay=0.0,
            batch_size=64,
            epochs=2,
            rounds=2,
            noise=0.2,
            val_size=64,
            threads=1,
            dropout=0.0,
            emb_dropout=0.0,
        ),
    ),
}


def preset_names() -> list[str]:
    """Names of all presets, in the order they are documented."""
    return list(PRESETS)


def preset_description(name: str) -> str:
    """One line describing a preset."""
    return _lookup(name)[0]


def preset_config(name: str) -> Config:
    """The full config of a preset (defaults plus its overrides)."""
    return apply(DEFAULTS, _lookup(name)[1])


def _lookup(name: str) -> tuple[str, dict[str, Any]]:
    if name not in PRESETS:
        raise ConfigError(unknown_name_message("preset", name, preset_names()))
    return PRESETS[name]
