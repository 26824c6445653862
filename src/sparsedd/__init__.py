"""sparsedd: study sparse double descent by pruning models trained on noisy labels."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # load_pruned imports torch: only when asked for, so that `sparsedd --help` stays fast.
    if name in ("load_pruned", "pruned_metadata"):
        from sparsedd import pruned_export

        return getattr(pruned_export, name)
    raise AttributeError(f"module 'sparsedd' has no attribute {name!r}")
