"""The typed, flat run config: fields, parsing and ranges (config files: ``config_files``).

This module knows no component: name checks, the keys each component reads, presets and the
run id live in ``sparsedd.components``, which sits above both.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from sparsedd.errors import ConfigError

#: Bounds on the counts of a run, so that a typo cannot ask for work no machine finishes (and
#: no loop over rounds runs for hours before training starts): the paper's protocol takes 34
#: rounds of at most 200 epochs.
MAX_ROUNDS = 1_000
MAX_EPOCHS = 100_000
_ROUNDS_WHY = (
    "each round trains the model again, and 1,000 rounds at 20% a round leave under 1e-96 of "
    "its weights; the paper's protocol takes 34"
)
_EPOCHS_WHY = "an epoch passes over the whole training set; the paper's protocol takes 200"


def _f(default: Any, help: str, **checks: Any) -> Any:
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True)
class Config:
    """Every setting of one run. Field names are part of the public interface."""

    # What is trained
    model: str = _f("vit", "model name (see `sparsedd models`)")
    patch_size: int = _f(4, "ViT patch size in pixels", min=1)
    dim: int = _f(512, "ViT embedding width", min=1)
    depth: int = _f(6, "ViT number of transformer blocks", min=1)
    heads: int = _f(8, "ViT attention heads", min=1)
    dim_head: int = _f(64, "ViT width of one attention head", min=1)
    mlp_dim: int = _f(512, "ViT hidden width of the MLP", min=1)
    dropout: float = _f(0.1, "dropout inside the transformer", min=0.0, max_excl=1.0)
    emb_dropout: float = _f(0.1, "dropout after the patch embedding", min=0.0, max_excl=1.0)
    vit_layout: Literal["modern", "paper"] = _f(
        "modern",
        "ViT layout: paper (the paper's models/vit.py: no LayerNorm around the patch "
        "embedding, no dropout on attention weights) or modern (today's vit-pytorch)",
    )
    vgg_depth: int = _f(5, "vgg-like: blocks of two convolutions and a max-pool (DSD²'s δ)", min=1)
    vgg_width: int = _f(
        32, "vgg-like: channels of the first block, doubled by each next (DSD²'s 2^γ)", min=1
    )
    init: Literal["torch", "kaiming_normal", "kaiming_normal_fan_out"] = _f(
        "torch",
        "weight init: torch (PyTorch's layer defaults), kaiming_normal (every Linear and Conv "
        "weight, fan_in, as open_lth), kaiming_normal_fan_out (Conv weights, fan_out, relu, as "
        "torchvision's ResNet)",
    )
    # Data
    dataset: str = _f("fashion-mnist", "dataset name")
    data_dir: str = _f("~/.cache/sparsedd/data", "folder holding (or receiving) dataset files")
    download: bool = _f(True, "download a missing dataset where the network allows")
    image_size: int = _f(
        32, "side in pixels that imagefolder images are resized to", min=1, max=4096
    )
    train_size: int | None = _f(None, "seeded subset of the training set (null: all)", min=1)
    val_size: int = _f(
        0, "training samples held out, with their noisy labels, as validation", min=0
    )
    augment: Literal["none", "flip_crop"] = _f("none", "on-device batch augmentation")
    normalize: Literal["dataset", "imagenet"] = _f(
        "dataset", "per-channel mean/std: the dataset's own, or ImageNet's (RGB only)"
    )
    noise: float = _f(0.0, "fraction ε of training labels replaced", min=0.0, max_excl=1.0)
    noise_kind: str = _f(
        "symmetric",
        "label noise kind name (see `sparsedd models`; human: every training label read from "
        "noise_file; noise stays 0)",
    )
    noise_file: str | None = _f(
        None,
        "noise_kind=human: CIFAR-N .pt, .npy or one-label-a-line text file of training labels "
        "(a relative path not found here is looked up in data_dir)",
    )
    noise_label_set: str | None = _f(
        None, "which label set of a CIFAR-N .pt file (e.g. worse_label, noisy_label)"
    )
    noise_seed: int | None = _f(
        None,
        "seed of the label noise, subsets and validation split (null: the run's seed, a new "
        "draw for each seed; a number pins one draw for every seed)",
        min=0,
    )
    # Optimization
    optimizer: Literal["adamw", "sgd"] = _f("adamw", "optimizer")
    lr: float = _f(1e-4, "peak learning rate", min_excl=0.0)
    momentum: float = _f(0.9, "SGD momentum", min=0.0, max_excl=1.0)
    weight_decay: float = _f(0.03, "λ, the ℓ2 strength", min=0.0)
    l2_mode: Literal["decoupled", "coupled"] = _f(
        "decoupled", "decoupled weight decay (AdamW) or coupled ℓ2 added to the gradient"
    )
    batch_size: int = _f(512, "training batch size", min=1)
    eval_batch_size: int = _f(1024, "evaluation batch size", min=1)
    epochs: int = _f(200, "epochs of every pruned round", min=1, max=MAX_EPOCHS, why=_EPOCHS_WHY)
    dense_epochs: int | None = _f(
        None, "epochs of the dense round 0 (null: epochs)", min=1, max=MAX_EPOCHS, why=_EPOCHS_WHY
    )
    schedule: Literal["cosine", "step", "constant"] = _f(
        "cosine", "lr schedule of every round (step: ×0.1 at 50% and 75%)"
    )
    schedule_every: Literal["step", "epoch"] = _f(
        "step", "advance the lr schedule after every batch (step) or once per epoch"
    )
    # Pruning
    prune_rate: float = _f(
        0.2, "fraction of remaining prunable weights removed per round", min_excl=0.0, max_excl=1.0
    )
    rounds: int = _f(
        34, "pruning rounds after the dense one", min=0, max=MAX_ROUNDS, why=_ROUNDS_WHY
    )
    pruning: bool = _f(
        True,
        "prune every round; false: the control (each round retrains the unpruned model with "
        "the same schedule, so that a fall that happens without pruning shows as training)",
    )
    prune_scope: Literal["global", "layerwise"] = _f("global", "rank weights globally or per layer")
    prune_criterion: str = _f("magnitude", "pruning criterion name")
    prune_exclude: str = _f(
        "",
        "comma-separated name patterns of layers kept dense (e.g. 'fc,head.*'; 'output': the "
        "layer producing the logits)",
    )
    collapse_stop: bool = _f(
        True,
        "stop training a run that collapsed (no prunable weight left, or test accuracy at a "
        "constant prediction's for collapse_rounds rounds): later rounds are recorded as "
        "collapsed, not trained",
    )
    collapse_rounds: int = _f(
        2,
        "consecutive pruned rounds at a constant prediction's accuracy that stop a run",
        min=1,
        max=MAX_ROUNDS,
        why=_ROUNDS_WHY,
    )
    settle_rounds: int = _f(
        3,
        "a control (pruning false) stops once its test accuracy in each of its last "
        "settle_rounds rounds (k ≥ 1) is within one binomial SD of their mean (with "
        "collapse_stop): later rounds are recorded as settled, not trained",
        min=1,
        max=MAX_ROUNDS,
        why=_ROUNDS_WHY,
    )
    retrain: Literal["lr_rewind", "finetune", "lottery"] = _f(
        "lr_rewind",
        "lr_rewind: weights carry over, full schedule; finetune: weights carry over, constant "
        "lr/100; lottery: weights rewound to their initialization",
    )
    # Remedy (registered in sparsedd.remedies): what the training loss adds beside ℓ2
    remedy: str = _f(
        "none",
        "remedy for the dip beside ℓ2: none, label_smooth or distill (DSD²'s knowledge "
        "distillation from a dense teacher; see `sparsedd models`)",
    )
    kd_alpha: float = _f(
        0.8,
        "remedy=distill: weight α of the distillation term (1 − α: the labels')",
        min=0.0,
        max=1.0,
    )
    kd_temperature: float = _f(10.0, "remedy=distill: softmax temperature T", min_excl=0.0)
    teacher: str | None = _f(
        None,
        "remedy=distill: the teacher, a run id (in the same runs folder), an exported "
        ".safetensors, or MODEL:WEIGHTS.safetensors (a registered model or timm:NAME and its "
        "state dict) (null: the dense round of this run without a remedy, trained first if "
        "missing)",
    )
    label_smoothing: float = _f(
        0.1, "remedy=label_smooth: label smoothing s", min=0.0, max_excl=1.0
    )
    # Execution
    seed: int = _f(0, "seed of initialization, batch order, augmentation and dropout", min=0)
    device: str = _f("auto", "device: auto (cuda when available), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = _f(
        "fp32", "fp32, bf16 autocast, or auto: bf16 where the device computes it natively"
    )
    threads: int = _f(0, "CPU threads for torch (0: torch's default)", min=0, max=1024)
    compile: bool | None = _f(
        False, "torch.compile the model (auto or null: where measured to pay, a CPU in bf16)"
    )
    checkpoint_every: int = _f(
        1, "save resumable state (progress.safetensors) at most every N epochs", min=1
    )
    checkpoint_seconds: float = _f(
        60.0,
        "... and at most once in this many seconds (0: every N epochs); a round's end and "
        "Ctrl-C always save: a killed run loses under this many seconds plus N epochs",
        min=0.0,
    )

    @property
    def label_seed(self) -> int:
        """The seed of the label noise, subsets and validation split (``noise_seed`` or seed)."""
        return self.seed if self.noise_seed is None else self.noise_seed


#: ``cuda:N`` with N a GPU index: at most 3 digits (no machine has 1,000 GPUs; a longer
#: number overflows torch's device index).
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]{1,3})?")
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
DEFAULTS = Config()
# Settings that change where or how fast a run executes, never what it computes.
NON_SEMANTIC = frozenset(
    {
        "data_dir",
        "download",
        "device",
        "threads",
        "checkpoint_every",
        "checkpoint_seconds",
        "eval_batch_size",
        "compile",
    }
)
#: Keys outside the run id because they never change what earlier rounds compute: asking a
#: recorded run for more rounds continues it, asking for fewer shows what it has.
#: The collapse stop (and a control's settle stop) only decides whether later rounds are
#: trained at all.
NOT_IN_RUN_ID = frozenset({"rounds", "collapse_stop", "collapse_rounds", "settle_rounds"})


def round_epochs(cfg: Config | Mapping[str, Any], round_: int) -> int:
    """Epochs round ``round_`` trains: ``dense_epochs`` (or ``epochs``) for the dense round 0,
    ``epochs`` for every pruning round. ``cfg`` may be a recorded config (a mapping)."""
    if isinstance(cfg, Mapping):
        epochs, dense = cfg["epochs"], cfg.get("dense_epochs")
    else:
        epochs, dense = cfg.epochs, cfg.dense_epochs
    return dense if round_ == 0 and dense else epochs


def epochs_before(cfg: Config | Mapping[str, Any], round_: int) -> int:
    """Epochs a run trains before round ``round_`` starts (the step of its first epoch)."""
    return round_epochs(cfg, 0) + (round_ - 1) * round_epochs(cfg, 1) if round_ > 0 else 0


def run_epochs(cfg: Config | Mapping[str, Any]) -> int:
    """Epochs a whole run trains: the dense round and every pruning round."""
    rounds = cfg["rounds"] if isinstance(cfg, Mapping) else cfg.rounds
    return round_epochs(cfg, 0) + rounds * round_epochs(cfg, 1)  # no loop over rounds


def shown(value: Any) -> str:
    """A value as written in error messages, shortened to keep them one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _check_key(key: str) -> None:
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown config key {shown(key)}; {hint}see `sparsedd presets demo` for all keys"
        )


def _type_parts(key: str) -> tuple[type | None, tuple[str, ...] | None, bool]:
    """(base type, literal choices, nullable) of a field."""
    hint = _HINTS[key]
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = True
        hint = args[0]
    if typing.get_origin(hint) is Literal:
        return str, typing.get_args(hint), nullable
    return hint, None, nullable


def coerce(key: str, value: Any) -> Any:
    """``value`` converted to the type of config key ``key``; ConfigError if it cannot be."""
    _check_key(key)
    base, choices, nullable = _type_parts(key)
    # "none" is text (augment=none) unless the key is nullable: then it, like null, means None.
    # A nullable switch (compile) reads "auto" as null: the run decides on its device.
    nulls = ("null", "none", "auto") if base is bool else ("null", "none")
    if value is None or (nullable and isinstance(value, str) and value.lower() in nulls):
        if nullable:
            return None
        raise ConfigError(f"config key {key!r} cannot be null; it takes a {base.__name__}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        choices = "true, false or auto" if nullable else "true or false"
        raise ConfigError(f"config key {key!r} takes {choices}, not {shown(value)}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} takes an integer, not {shown(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r} takes an integer, not {shown(value)}")
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} takes a number, not {shown(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config key {key!r} takes a number, not {shown(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config key {key!r} takes a finite number, not {shown(value)}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r} takes a name, not {shown(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(
            f"config key {key!r} does not allow {shown(value)}; choose one of: {', '.join(choices)}"
        )
    return value


# Larger integers overflow torch's seeds and sizes (C longs): refuse them as config errors.
INT_MAX = 2**63 - 2


def check_range(key: str, value: Any) -> None:
    """ConfigError if ``value`` is outside the range that config key ``key`` allows."""
    if value is None:
        return
    meta = FIELDS[key].metadata
    limit = meta.get("max", INT_MAX if isinstance(value, int) else None)
    if limit is not None and value > limit:
        why = f" ({meta['why']})" if "why" in meta else ""
        raise ConfigError(f"config key {key!r} must be ≤ {limit}{why}, not {shown(value)}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"config key {key!r} must be ≥ {meta['min']}, not {shown(value)}")
    if "min_excl" in meta and value <= meta["min_excl"]:
        raise ConfigError(f"config key {key!r} must be > {meta['min_excl']}, not {shown(value)}")
    if "max_excl" in meta and value >= meta["max_excl"]:
        raise ConfigError(f"config key {key!r} must be < {meta['max_excl']}, not {shown(value)}")


def field_errors(cfg: Config) -> list[str]:
    """Every problem of ``cfg`` that the config alone shows: ranges and cross-field rules.

    Names (model, dataset, …) and the keys each component reads are checked where the
    components are known: ``sparsedd.components.validate``.
    """
    errors = []
    for key in FIELDS:
        try:
            check_range(key, getattr(cfg, key))
        except ConfigError as err:
            errors.append(str(err))
    if not DEVICE_PATTERN.fullmatch(cfg.device):
        errors.append(
            f"config key 'device' takes auto, cpu, cuda or cuda:N (N a GPU index, 0..999), "
            f"not {shown(cfg.device)}"
        )
    if cfg.train_size is not None and cfg.val_size >= cfg.train_size:
        errors.append(
            f"config key 'val_size' ({cfg.val_size}) must be smaller than 'train_size' "
            f"({cfg.train_size}) to leave training data"
        )
    return errors


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line → (key, typed value)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r} (no '=')")
    key, raw = text.split("=", 1)
    key = key.strip()
    return key, parse_value(key, raw)


def parse_value(key: str, raw: str) -> Any:
    """A value typed on the command line (``--set``, ``--grid``) → config key ``key``'s type."""
    _check_key(key)
    base, _, _ = _type_parts(key)
    if base is str:  # names and paths are text as typed (data_dir=2024 and data_dir=~ are folders)
        return coerce(key, raw.strip())
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except Exception:  # any YAML failure (syntax, nesting depth): keep the text as typed
        value = raw
    if isinstance(value, (dict, list)):
        value = raw
    return coerce(key, value)


def apply(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """``cfg`` with ``overrides`` coerced and applied (not yet validated)."""
    values = {}
    for key, value in overrides.items():
        values[str(key)] = coerce(str(key), value)
    return dataclasses.replace(cfg, **values)


def to_dict(cfg: Config) -> dict[str, Any]:
    """All keys of ``cfg`` as a plain dict, in field order."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The full config as readable YAML, in field order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
