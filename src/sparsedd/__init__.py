"""sparsedd: study sparse double descent by pruning models trained on noisy labels."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


# The public API, by the module that defines each name (imported when first asked for, so
# that `sparsedd --help` stays fast: load_pruned imports torch, analyze pandas).
_API = {
    "load_results": "sparsedd.analysis.load",
    "analyze": "sparsedd.analysis.tables",
    "load_pruned": "sparsedd.export.pruned",
    "pruned_metadata": "sparsedd.export.pruned",
    "run_sweep": "sparsedd.sweep.service",
    "SweepRequest": "sparsedd.sweep.backends",
    "predict": "sparsedd.export.predict",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sparsedd' has no attribute {name!r}")
