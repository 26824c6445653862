"""What a sweep decides before planning: the preset for own data, sizes chosen from the data,
and notes on models that do not suit the images (returned as lines; the caller prints them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsedd.config import parse_assignment
from sparsedd.config_files import load_yaml_file

# Imported inside functions, where used: torch (4.4 s to import);
# measured: docs/architecture.md, "Imports".

OWN_DATA_PRESET = "own-data"


def given_keys(config_file: str | None, options: Sequence[str]) -> list[str]:
    """Config keys the user set in a YAML file or with --set/--grid."""
    given = [str(k) for k in load_yaml_file(config_file)] if config_file else []
    return given + [item.split("=", 1)[0].strip() for item in options]


def default_preset(config_file: str | None, assignments: Sequence[str]) -> str:
    """``own-data`` when the user's keys choose dataset=imagefolder, else ``demo``."""
    values = dict(load_yaml_file(config_file)) if config_file else {}
    values.update(
        parse_assignment(a) for a in assignments if a.split("=", 1)[0].strip() == "dataset"
    )
    return OWN_DATA_PRESET if values.get("dataset") == "imagefolder" else "demo"


def own_data_note() -> str:
    """The line saying that a run without --preset on imagefolder data starts from own-data."""
    return (
        f"dataset=imagefolder without --preset: starting from preset {OWN_DATA_PRESET} "
        f"(see `sparsedd presets {OWN_DATA_PRESET}`)"
    )


def sized_for_data(
    labelled: list[tuple[str, Any]], config_file: str | None, options: Sequence[str]
) -> list[tuple[str, Any]]:
    """Runs of the own-data preset with ``val_size`` chosen from their folders (unless set)."""
    if "val_size" in given_keys(config_file, options):
        return labelled
    from sparsedd.data.own_data import sized_for_data as sized

    return [(label, sized(cfg) if cfg.dataset == "imagefolder" else cfg) for label, cfg in labelled]


def model_fit_notes(configs: Sequence[Any]) -> list[str]:
    """One line per timm model whose stem shrinks the images too far."""
    from sparsedd.data.datasets import dataset_shape
    from sparsedd.models.base import InputSpec
    from sparsedd.models.timm_models import PREFIX, stem_note

    notes = {}
    for cfg in configs:
        if not cfg.model.startswith(PREFIX):
            continue
        channels, size, classes = dataset_shape(cfg.dataset) or (3, cfg.image_size, 10)
        note = stem_note(cfg, InputSpec(channels, size, classes))
        if note:
            notes[note] = None
    return list(notes)
