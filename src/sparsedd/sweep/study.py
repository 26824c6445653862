"""Studies: presets with grid axes, built in (the paper's) or written by users in YAML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sparsedd.errors import ConfigError
from sparsedd.sweep.plan import Cell

NOISES = [0.1, 0.2, 0.5]
SEEDS = [0, 1, 2]
# The paper's code gives one λ per optimizer (AdamW 0.03, SGD 1e-4) and not the list it swept;
# we take no ℓ2 plus the default and one decade either side.
VIT_LAMBDAS = [0.0, 0.003, 0.03, 0.3]
RESNET_LAMBDAS = [0.0, 1e-5, 1e-4, 1e-3]
_PAPER_PRESETS = {
    "vit": VIT_LAMBDAS,
    "swin": VIT_LAMBDAS,
    "resnet18": RESNET_LAMBDAS,
}
#: What the studies change from the paper's presets: 5,000 of the 50,000 training images (with
#: their noisy labels) are held out as validation data, so that λ* can be chosen without the
#: test set. The presets themselves stay exactly the paper's (val_size 0).
STUDY_VAL_SIZE = 5000
_WHAT = "the paper's models, data and ε, with our λ grid, 3 seeds and 5,000 validation images"


def _paper_cell(model: str, dataset: str) -> Cell:
    axes = {
        "noise": NOISES,
        "weight_decay": _PAPER_PRESETS[model],
        "seed": SEEDS,
        "val_size": [STUDY_VAL_SIZE],
    }
    return Cell(f"{model}-{dataset}", axes)


def _cifar100n_cell() -> Cell:
    """ViT on CIFAR-100N: human label noise (the file sets every label), so no ε axis."""
    axes = {"weight_decay": VIT_LAMBDAS, "seed": SEEDS, "val_size": [STUDY_VAL_SIZE]}
    return Cell("vit-cifar100n", axes)


#: DSD²'s comparison: its models (the VGG-like student, ResNet-18) on CIFAR-10/100 at its noise
#: levels, each without a remedy and distilled from its own dense round, at λ = 0 and its 1e-4.
DSD2_LAMBDAS = [0.0, 1e-4]


def _dsd2_cells() -> list[Cell]:
    axes = {
        "noise": NOISES,
        "remedy": ["none", "distill"],
        "weight_decay": DSD2_LAMBDAS,
        "seed": SEEDS,
        "val_size": [STUDY_VAL_SIZE],
    }
    presets = [f"{m}-{d}" for m in ("dsd2-vgg", "resnet18") for d in ("cifar10", "cifar100")]
    return [Cell(p, axes) for p in presets]


def _studies() -> dict[str, tuple[str, list[Cell]]]:
    cells = {(m, d): _paper_cell(m, d) for m in _PAPER_PRESETS for d in ("cifar10", "cifar100")}
    studies = {
        "quetu2023": (
            "Quétu et al.'s study: ViT, Swin-T, ResNet-18 × CIFAR-10/100 × ε 10/20/50%, and ViT on "
            f"CIFAR-100N; {_WHAT}",
            [*cells.values(), _cifar100n_cell()],
        )
    }
    for (m, d), cell in cells.items():
        studies[f"quetu2023-{m}-{d}"] = (
            f"slice of quetu2023: {m} on {d} × ε 10/20/50%; {_WHAT}",
            [cell],
        )
    studies["quetu2023-vit-cifar100n"] = (
        f"slice of quetu2023: vit on CIFAR-100N (human labels); {_WHAT}",
        [_cifar100n_cell()],
    )
    studies["dsd2"] = (
        "Quétu & Tartaglione's DSD²: VGG-like and ResNet-18 × CIFAR-10/100 × ε 10/20/50% × "
        "remedy none/distill × λ 0/1e-4, 3 seeds, 5,000 validation images",
        _dsd2_cells(),
    )
    return studies


STUDIES = _studies()


def is_study(name: str) -> bool:
    """Whether ``name`` names a built-in study (not a single preset)."""
    return name in STUDIES


def study_names() -> list[str]:
    """Names of the built-in studies."""
    return list(STUDIES)


def study_description(name: str) -> str:
    """One line describing a study."""
    return STUDIES[name][0]


def check_name(name: str) -> None:
    """Refuse, in one line listing both, a name that is neither a preset nor a study."""
    from sparsedd.presets import preset_names
    from sparsedd.registry import unknown_name_message

    if is_study(name) or name in preset_names():
        return
    studies = study_names()
    message = unknown_name_message("preset", name, [*preset_names(), *studies])
    listed = message.rsplit("; choose one of: ", 1)[0]
    raise ConfigError(
        f"{listed}; choose a preset: {', '.join(preset_names())}; or a study (a grid of "
        f"runs): {', '.join(studies)}"
    )


def study_cells(
    preset: str, config_file: str | None, grid: Mapping[str, Sequence[Any]]
) -> list[Cell]:
    """The cells a `sparsedd run` describes.

    A built-in study gives its cells; otherwise the preset is one cell. A YAML file's
    ``grid:`` mapping adds axes; ``--grid`` axes (``grid``) win over both.
    """
    check_name(preset)
    file_axes = _file_grid(config_file) if config_file else {}
    if is_study(preset):
        return [
            Cell(c.preset, {**c.axes, **file_axes, **grid}, config_file) for c in STUDIES[preset][1]
        ]
    return [Cell(preset, {**file_axes, **grid}, config_file)]


def _file_grid(path: str) -> dict[str, list[Any]]:
    """The ``grid:`` mapping of a YAML config file (``{}`` when it has none)."""
    from sparsedd.config_files import load_yaml_file

    grid = load_yaml_file(path).get("grid")
    if grid is None:
        return {}
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(
            f"config file {path!r}: 'grid' must map config keys to lists of values, "
            f"e.g. grid: {{weight_decay: [0, 0.1]}}"
        )
    axes = {}
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"config file {path!r}: grid key {key!r} lists no values")
        axes[str(key)] = values
    return axes
