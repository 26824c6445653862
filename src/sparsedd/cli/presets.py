"""`sparsedd presets` and `sparsedd models`: what can be run, as plain YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

import click

from sparsedd.errors import UserError

# `sparsedd --help` imports only what it needs; the rest is imported inside the commands that
# use it (torch alone takes 4.4 s to import; measured: docs/architecture.md, "Imports").


@click.command()
@click.argument("name", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@click.option(
    "--parameters",
    is_flag=True,
    help="print the model's size for the preset's dataset (no data is read)",
)
def presets(name: str | None, fmt: str, parameters: bool) -> None:
    """List the presets, or print preset NAME as a fully resolved config."""
    from sparsedd.components import validate
    from sparsedd.config import to_dict, to_yaml
    from sparsedd.presets import preset_config, preset_description, preset_names

    if name is None:
        if parameters:
            raise UserError(
                "--parameters needs a preset NAME, e.g. sparsedd presets demo --parameters"
            )
        from sparsedd.sweep.study import study_description, study_names

        width = max(map(len, [*preset_names(), *study_names()]))
        for preset in preset_names():
            click.echo(f"{preset.ljust(width)}  {preset_description(preset)}")
        for study in study_names():
            click.echo(f"{study.ljust(width)}  study: {study_description(study)}")
        return
    from sparsedd.sweep.study import check_name, is_study, study_cells

    check_name(name)
    if is_study(name):
        cells = [{"preset": c.preset, "grid": dict(c.axes)} for c in study_cells(name, None, {})]
        click.echo(json.dumps(cells, indent=1) if fmt == "json" else _yaml(cells))
        return
    cfg = validate(preset_config(name))
    if parameters:
        total, prunable = _model_size(cfg)
        click.echo(f"parameters {total}\nprunable {prunable}")
        return
    if fmt == "json":
        click.echo(json.dumps(to_dict(cfg), indent=1))
        return
    click.echo(with_notes(to_yaml(cfg).rstrip(), data_notes(cfg)))


def data_notes(cfg: Any) -> dict[str, str]:
    """Comments for the keys whose printed value is not what a run uses: on imagefolder data
    (the own-data preset) the folder is yours, nothing is downloaded, and ``val_size`` is chosen
    from the folder when the run starts."""
    if cfg.dataset != "imagefolder":
        return {}
    from sparsedd.data.own_data import VAL_FRACTION

    return {
        "data_dir": "your folder, with train/ and test/ inside: --set data_dir=DIR",
        "download": "not read: imagefolder data is never downloaded",
        "val_size": f"0 here; a run holds out {VAL_FRACTION:.0%} of the folder's training images "
        "(at least 1) unless --set val_size=N",
    }


def with_notes(yaml_text: str, notes: dict[str, str]) -> str:
    """``yaml_text`` with a ``# note`` after each top-level key that ``notes`` names."""
    lines = []
    for line in yaml_text.splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{line}  # {notes[key]}" if key in notes and ":" in line else line)
    return "\n".join(lines)


def _yaml(value: Any) -> str:
    """Plain YAML: values shared between entries are written out each time (no anchors)."""
    import yaml

    class PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(value, Dumper=PlainDumper, sort_keys=False, allow_unicode=True).rstrip()


def _model_size(cfg: Any) -> tuple[int, int]:
    """(parameters, prunable weights) of a config's model, from its dataset's known shape."""
    from sparsedd.data.datasets import DATASETS, dataset_shape
    from sparsedd.models.base import InputSpec
    from sparsedd.training.prune import model_size

    shape = dataset_shape(cfg.dataset)
    if shape is None:
        known = [name for name in DATASETS.names() if dataset_shape(name) is not None]
        raise UserError(
            f"the image shape of dataset {cfg.dataset!r} is known only from its files; "
            f"--parameters works for: {', '.join(known)}"
        )
    return model_size(cfg, InputSpec(*shape))


@click.command()
def models() -> None:
    """List the registered models, datasets, noise kinds, pruning criteria, remedies, trackers
    and sweep backends, and the config keys of their own that components declare."""
    from sparsedd.components import KINDS
    from sparsedd.events.trackers import TRACKERS
    from sparsedd.options import OPTIONS, declarers
    from sparsedd.sweep.backends import BACKENDS

    labels = {
        "model": "models",
        "dataset": "datasets",
        "noise_kind": "noise kinds",
        "prune_criterion": "pruning criteria",
        "remedy": "remedies",
    }
    registries = [(labels[key], registry) for key, registry in KINDS.items()]
    for label, registry in [*registries, ("trackers", TRACKERS), ("sweep backends", BACKENDS)]:
        click.echo(f"{label}: {', '.join(registry.names())}")
    for name, needs in KINDS["model"].declarations().items():
        click.echo(f"  {name} reads: {', '.join(sorted(needs.keys)) or 'no model-specific key'}")
    click.echo("keys of a component's own (key, default, who reads it: meaning):")
    for key, option in OPTIONS.items():
        click.echo(
            f"  {key}={json.dumps(option.default)} ({', '.join(declarers(key))}): {option.help}"
        )
