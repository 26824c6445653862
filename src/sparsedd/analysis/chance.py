"""Chance: the accuracy of a constant prediction on a curve's test set.

The verdict's collapse is drawn against it (a seed has collapsed once it stays below chance +
80% of its dense accuracy's margin over chance), so it must be the test set's own: the share of
its largest class. The built-in datasets' test-set class counts are known (the test suite checks
them against the loaders and the files); any other dataset falls back to ten balanced classes,
the verdict's default. Pure functions: nothing here reads data files.
"""

from __future__ import annotations

from sparsedd.analysis.verdict import DEFAULT_CHANCE

#: Test images per class of the built-in datasets (label order).
KNOWN_CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "mnist": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    "fashion-mnist": (1000,) * 10,
    "cifar10": (1000,) * 10,
    "cifar100": (100,) * 100,
    "synthetic": (131, 129, 119, 133),
}


def majority_share(counts: tuple[int, ...]) -> float:
    """A constant prediction's accuracy on a test set with these class counts."""
    total = sum(counts)
    return max(counts) / total if total else DEFAULT_CHANCE


def chance_of(dataset: object) -> float:
    """Chance on the test set of ``dataset`` (a recorded config's dataset name): its largest
    class's share where its class counts are known, DEFAULT_CHANCE otherwise."""
    counts = KNOWN_CLASS_COUNTS.get(dataset) if isinstance(dataset, str) else None
    return majority_share(counts) if counts else DEFAULT_CHANCE
