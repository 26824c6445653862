"""Label noise: replace a seeded random subset of labels (symmetric, random or pairflip)."""

from __future__ import annotations

import torch

from sparsedd.registry import Needs, Registry

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


@NOISE_KINDS.register(
    "human",
    Needs(keys=frozenset({"noise_file", "noise_label_set"}), file_key="noise_file"),
)
def _human(labels: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    # Human labels are read whole from noise_file (data/label_files.py), never drawn.
    raise ValueError("noise_kind=human reads its labels from noise_file; nothing is drawn")


def corrupt_labels(
    labels: torch.Tensor, noise: float, kind: str, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copy of ``labels`` and a bool mask of the samples whose label changed.

    ``round(noise · n)`` indices, drawn at random from a generator seeded with ``seed``,
    get a new label of the given kind. With ``symmetric`` exactly that many are wrong; with
    ``random`` about ``noise · (C−1)/C`` are, since the draw may return the true class.
    """
    relabel = NOISE_KINDS.get(kind)
    g = torch.Generator().manual_seed(seed)
    labels = labels.to(torch.int64).cpu()
    n_chosen = round(noise * len(labels))
    chosen = torch.randperm(len(labels), generator=g)[:n_chosen]
    noisy = labels.clone()
    noisy[chosen] = relabel(labels[chosen], num_classes, g)
    return noisy, noisy != labels
