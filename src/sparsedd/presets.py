"""Named configs: the CPU demo and the paper's protocols (see docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from sparsedd.config import DEFAULTS, Config, apply
from sparsedd.errors import ConfigError
from sparsedd.registry import unknown_name_message

# Checked against the paper's code (github VGCQ/SDD_ViT): models/vit.py (layout, sizes
# in main.py), main.py (ImageNet mean/std, flip + crop(32, 4), AdamW, CosineAnnealingLR and
# MultiStepLR stepped once per epoch, fp32), models/resnet.py (kaiming-normal fan_out convs).
_PAPER_COMMON: dict[str, Any] = dict(
    augment="flip_crop",
    normalize="imagenet",
    schedule_every="epoch",
    prune_rate=0.2,
    rounds=34,
    retrain="lr_rewind",
    noise=0.2,
    precision="fp32",
)
_PAPER_VIT: dict[str, Any] = dict(
    _PAPER_COMMON,
    model="vit",
    vit_layout="paper",
    patch_size=4,
    dim=512,
    depth=6,
    heads=8,
    dim_head=64,
    mlp_dim=512,
    dropout=0.1,
    emb_dropout=0.1,
    optimizer="adamw",
    lr=1e-4,
    weight_decay=0.03,
    l2_mode="decoupled",
    batch_size=512,
    epochs=200,
    schedule="cosine",
)
_PAPER_RESNET: dict[str, Any] = dict(
    _PAPER_COMMON,
    model="resnet18",
    init="kaiming_normal_fan_out",
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    l2_mode="coupled",
    batch_size=128,
    epochs=160,
    schedule="step",
)

# Checked against DSD²'s code (github VGCQ/DSD2): kd.py (CIFAR-10/100: SGD lr 0.1, momentum
# 0.9, weight decay 1e-4, 160 epochs, batch 128, MultiStepLR [80, 120] ×0.1 stepped per epoch,
# flip + crop(32, 4), ImageNet mean/std, ε 0.1 by default, 34 rounds of 20% global L1 pruning
# of every Conv2d and Linear weight, the output layer included, lr rewound each round; α 0.8,
# T 10), utils/models.py (VGGlikeModel, δ 5, width 2^5, PyTorch's default initialization).
_DSD2_VGG: dict[str, Any] = dict(
    _PAPER_RESNET, model="vgg-like", vgg_depth=5, vgg_width=32, init="torch", noise=0.1
)

# The small ViT and schedule of the CPU presets (demo, own-data): SDD in minutes on a CPU.
_SMALL_VIT: dict[str, Any] = dict(
    model="vit",
    dim=64,
    depth=2,
    heads=4,
    dim_head=16,
    mlp_dim=128,
    dropout=0.0,
    emb_dropout=0.0,
    noise=0.2,
    noise_kind="symmetric",
    optimizer="adamw",
    lr=1e-3,
    weight_decay=0.0,
    epochs=15,
    dense_epochs=30,
    schedule="cosine",
    prune_rate=0.2,
    rounds=18,
    threads=1,
)

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo": (
        "CPU demo: small ViT on 4,000 Fashion-MNIST images, 20% noise; SDD at λ = 0 in minutes",
        dict(
            _SMALL_VIT,
            patch_size=7,
            dataset="fashion-mnist",
            train_size=5000,
            val_size=1000,
            batch_size=128,
            # Measured (docs/speed.md): bf16 autocast + torch.compile where the CPU has native
            # bf16 is about 2x the paper's pipeline per round; fp32 eager elsewhere.
            precision="auto",
            compile=None,
        ),
    ),
    "own-data": (
        "your images (dataset=imagefolder, data_dir=DIR): small ViT at 32 px, 20% noise, "
        "a tenth held out for validation; what `run` starts from for imagefolder data",
        dict(
            _SMALL_VIT,
            patch_size=4,
            dataset="imagefolder",
            image_size=32,
            batch_size=64,
            # fp32: `sparsedd predict` (fp32) then gives exactly the recorded test accuracy.
            precision="fp32",
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
    "vit-cifar100n": (
        "Quétu et al.: ViT on CIFAR-100N (human labels: noisy_label of CIFAR-100_human.pt)",
        dict(
            _PAPER_VIT,
            dataset="cifar100",
            noise=0.0,
            noise_kind="human",
            noise_file="CIFAR-100_human.pt",
            noise_label_set="noisy_label",
        ),
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
    "dsd2-vgg-cifar10": (
        "Quétu & Tartaglione (DSD²): VGG-like student on CIFAR-10, SGD, 160 epochs/round",
        dict(_DSD2_VGG, dataset="cifar10"),
    ),
    "dsd2-vgg-cifar100": (
        "Quétu & Tartaglione (DSD²): VGG-like student on CIFAR-100, SGD, 160 epochs/round",
        dict(_DSD2_VGG, dataset="cifar100"),
    ),
    # Checked against He et al.'s code (github he-zh/sparse-double-descent, built on open_lth):
    # models/mnist_mlp.py default_hparams (SGD lr 0.1, 160 epochs, batch 128, kaiming_normal,
    # pruning 20% global magnitude ignoring fc.weight), foundations/hparams.py (momentum 0,
    # no milestones: constant lr, no weight decay), models/initializers.py, pruning/magnitude.py,
    # datasets/base.py randomize_labels (new label drawn from all classes), README (--levels=30).
    "lenet-mnist": (
        "He et al.: LeNet-300-100 on MNIST, SGD lr 0.1 constant, 160 epochs, 30 rounds, "
        "output layer dense",
        dict(
            model="lenet",
            init="kaiming_normal",
            dataset="mnist",
            optimizer="sgd",
            lr=0.1,
            momentum=0.0,
            weight_decay=0.0,
            l2_mode="coupled",
            batch_size=128,
            epochs=160,
            schedule="constant",
            noise=0.2,
            noise_kind="random",
            prune_rate=0.2,
            prune_scope="global",
            prune_exclude="output",
            rounds=30,
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
            checkpoint_seconds=0.0,  # save every epoch: the kill/resume tests stop mid-round
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
    # `run` and `presets` check a name against the studies first (sweep.study), which names both
    if name not in PRESETS:
        raise ConfigError(unknown_name_message("preset", name, preset_names()))
    return PRESETS[name]
