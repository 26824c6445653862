"""The control arm of a sweep (``run --control``): every run again with pruning off.

The control trains the same seeds, rounds, epochs, rewinding and data as the pruned run it
pairs with; only the pruning step is skipped, so that its curve shows what more training does
without sparsity (see docs/science.md, "The control").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sparsedd.components import run_id
from sparsedd.config import Config
from sparsedd.errors import ConfigError


def with_controls(labelled: Sequence[tuple[str, Config]]) -> list[tuple[str, Config]]:
    """``labelled`` runs followed by their controls (each config with ``pruning: false``).

    Refuses a sweep that already sets pruning off: --control adds those runs itself.
    """
    if any(not cfg.pruning for _, cfg in labelled):
        raise ConfigError(
            "--control adds the runs with pruning off itself; drop 'pruning=false' from --set, "
            "--grid or the config file"
        )
    out = list(labelled)
    seen = {run_id(cfg) for _, cfg in labelled}
    for label, cfg in labelled:
        control = dataclasses.replace(cfg, pruning=False)
        if run_id(control) not in seen:
            seen.add(run_id(control))
            out.append((f"{label} pruning=false".strip(), control))
    return out
