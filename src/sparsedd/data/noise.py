"""Label noise: replace a seeded random subset of labels (symmetric, random or pairflip), or
read every training label from a file of human labels (human).

A drawn kind registers its relabeling function ``(labels, num_classes, generator) → labels``;
a kind whose labels are read registers a ``ReadNoise``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sparsedd.config import Config
from sparsedd.data.label_files import read_human_labels
from sparsedd.options import Option
from sparsedd.registry import Needs, Registry


@dataclass(frozen=True)
class ReadNoise:
    """A noise kind whose labels are read, not drawn: ``read(cfg, train_labels, num_classes)``
    gives the label of every training image (``train_labels``: the dataset's own)."""

    read: Callable[[Config, torch.Tensor, int], torch.Tensor]


#: Drawn kinds read the rate ``noise``; human noise reads its labels from ``noise_file``.
DRAWN = Needs(keys=frozenset({"noise"}))
NOISE_KINDS: Registry = Registry("noise kind", default_needs=DRAWN)


@NOISE_KINDS.register("symmetric")
def _symmetric(labels: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    # A uniform non-zero offset picks uniformly among the other classes: every label changes.
    offset = torch.randint(1, num_classes, labels.shape, generator=g)
    return (labels + offset) % num_classes


@NOISE_KINDS.register("random")
def _random(labels: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, num_classes, labels.shape, generator=g)


@NOISE_KINDS.register("pairflip")
def _pairflip(labels: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    return (labels + 1) % num_classes


#: The keys of human noise's own.
HUMAN_OPTIONS = (
    Option(
        "noise_file",
        str,
        None,
        "CIFAR-N .pt, .npy or one-label-a-line text file of training labels (a relative path "
        "not found here is looked up in data_dir)",
    ),
    Option(
        "noise_label_set", str, None, "which label set of a CIFAR-N .pt file (e.g. worse_label)"
    ),
)


def _human(cfg: Config, train_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every training label from ``noise_file`` (its ``noise_label_set``), checked against the
    dataset's own labels."""
    return read_human_labels(
        cfg.noise_file or "", cfg.data_dir, cfg.noise_label_set, train_labels, num_classes
    )


NOISE_KINDS.register("human", Needs(options=HUMAN_OPTIONS, file_key="noise_file"))(
    ReadNoise(_human)
)


def noisy_labels(
    cfg: Config, train_labels: torch.Tensor, pool: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy labels of the training images ``pool`` (indices into ``train_labels``) as
    ``cfg.noise_kind`` makes them, and a bool mask of those that differ from the true ones."""
    kind, clean = NOISE_KINDS.get(cfg.noise_kind), train_labels[pool]
    if isinstance(kind, ReadNoise):
        noisy = kind.read(cfg, train_labels, num_classes)[pool]
        return noisy, noisy != clean
    return corrupt_labels(clean, cfg.noise, cfg.noise_kind, num_classes, seed=cfg.label_seed + 1)


def corrupt_labels(
    labels: torch.Tensor, noise: float, kind: str, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copy of ``labels`` and a bool mask of the samples whose label changed.

    ``round(noise · n)`` indices, drawn at random from a generator seeded with ``seed``,
    get a new label of the given kind. With ``symmetric`` exactly that many are wrong; with
    ``random`` about ``noise · (C−1)/C`` are, since the draw may return the true class.
    """
    relabel = NOISE_KINDS.get(kind)
    if isinstance(relabel, ReadNoise):
        raise ValueError(f"noise_kind={kind} reads its labels from a file; nothing is drawn")
    g = torch.Generator().manual_seed(seed)
    labels = labels.to(torch.int64).cpu()
    n_chosen = round(noise * len(labels))
    chosen = torch.randperm(len(labels), generator=g)[:n_chosen]
    noisy = labels.clone()
    noisy[chosen] = relabel(labels[chosen], num_classes, g)
    return noisy, noisy != labels
