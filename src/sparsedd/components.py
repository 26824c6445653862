"""The registered components of a run, and what reads their declarations: name checks, the
keys each component reads, presets resolved into a config, and the run id.

Models, datasets, noise kinds and pruning criteria register themselves, each in its own module,
with a ``Needs`` (see ``sparsedd.registry``). This module sits above them and above the config,
so that the config never imports a registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sparsedd.data  # noqa: F401  registers every dataset
import sparsedd.models  # noqa: F401  registers every model
from sparsedd.config import (
    DEFAULTS,
    NON_SEMANTIC,
    NOT_IN_RUN_ID,
    Config,
    apply,
    check_range,
    field_errors,
    parse_assignment,
    to_dict,
)
from sparsedd.config_files import load_yaml_file
from sparsedd.criteria import CRITERIA
from sparsedd.data.datasets import DATASETS
from sparsedd.data.noise import NOISE_KINDS
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, model_needs
from sparsedd.presets import preset_config
from sparsedd.registry import Needs, Registry
from sparsedd.remedies import REMEDIES
from sparsedd.teacher_ref import teacher_identity

#: The config key that names each kind of component, and its registry: the config holds these
#: names as plain text, checked here against the registered names (a new noise kind, model,
#: dataset or criterion is one registration in its own module).
KINDS: dict[str, Registry[Any]] = {
    "model": MODELS,
    "dataset": DATASETS,
    "noise_kind": NOISE_KINDS,
    "prune_criterion": CRITERIA,
    "remedy": REMEDIES,
}
#: Kinds whose keys, set for a component that does not read them, are refused (a model's
#: unread keys are only noted, and left out of the run id: see ``unused_keys``).
REFUSE_UNREAD = ("dataset", "noise_kind", "remedy")


def validate(cfg: Config) -> Config:
    """Check ranges, names, the keys each chosen component reads and cross-field rules; return
    ``cfg`` unchanged, or raise one ConfigError that lists every problem found."""
    errors = field_errors(cfg)
    known = True
    for kind_key, registry in KINDS.items():
        try:
            needs = registry.needs(getattr(cfg, kind_key))
        except ConfigError as err:  # one line naming the key and listing the known names
            errors.append(f"config key {kind_key!r}: {err}")
            known = False
            continue
        errors += _needs_errors(cfg, kind_key, registry, needs)
    if known:
        errors += _input_errors(cfg)
    errors += _teacher_errors(cfg)
    if errors:
        raise ConfigError("; ".join(dict.fromkeys(errors)))
    return cfg


def _needs_errors(cfg: Config, kind_key: str, registry: Registry[Any], needs: Needs) -> list[str]:
    """The chosen component's file key must be set; keys only others read must not be."""
    name = getattr(cfg, kind_key)
    errors = []
    if needs.file_key is not None and not getattr(cfg, needs.file_key):
        errors.append(
            f"{kind_key}={name} needs config key {needs.file_key!r}: the file it reads; set it"
        )
    if kind_key not in REFUSE_UNREAD:
        return errors
    for key in sorted(registry.declared_keys() - needs.keys):
        if getattr(cfg, key) != getattr(DEFAULTS, key):
            readers = [n for n in registry.names() if key in registry.needs(n).keys]
            default = json.dumps(getattr(DEFAULTS, key))
            errors.append(
                f"config key {key!r} is read only with {kind_key}={' or '.join(readers)} "
                f"(now {name}); set {key}={default} (its default) or {kind_key}={readers[0]}"
            )
    return errors


def _teacher_errors(cfg: Config) -> list[str]:
    """``teacher`` must name a run id, an exported ``.safetensors`` file that exists, or a
    registered (or timm) model and its checkpoint (see ``sparsedd.teacher_ref``)."""
    if cfg.teacher is None:
        return []
    try:
        teacher_identity(cfg.teacher)
    except ConfigError as err:
        return [str(err)]
    return []


def _input_errors(cfg: Config) -> list[str]:
    """The model's input check, on the dataset's declared shape (when it declares one)."""
    check, shape = model_needs(cfg.model).input_check, DATASETS.needs(cfg.dataset).shape
    if check is None or shape is None:
        return []
    try:
        check(cfg, InputSpec(*shape))
    except ConfigError as err:
        return [str(err)]
    return []


def resolve_config(
    preset: str = "demo",
    config_file: str | Path | None = None,
    assignments: Iterable[str] = (),
    skip_keys: Iterable[str] = (),
    typed: Mapping[str, Any] | None = None,
) -> Config:
    """The config from preset < YAML file < ``--set`` assignments < ``typed`` values (a
    run's grid values, already typed), validated.

    ``skip_keys`` are file keys read by someone else (a study's ``grid``).
    """
    cfg = preset_config(preset)
    if config_file is not None:
        values = load_yaml_file(config_file)
        for key in skip_keys:
            values.pop(key, None)
        try:
            cfg = apply(cfg, values)
            for key in values:
                check_range(str(key), getattr(cfg, str(key)))
        except ConfigError as err:
            raise ConfigError(f"config file {str(config_file)!r}: {err}") from None
    cfg = apply(cfg, {**dict(parse_assignment(a) for a in assignments), **(typed or {})})
    return validate(cfg)


def from_dict(values: Mapping[str, Any]) -> Config:
    """A validated Config from a mapping of keys (missing keys take defaults)."""
    return validate(apply(DEFAULTS, values))


# ---------------------------------------------------------------- run identity


def unused_keys(cfg: Config) -> frozenset[str]:
    """Keys that ``cfg`` never reads: sizes its model does not declare (keys some other model
    reads), SGD's momentum for Adam."""
    unused = MODELS.declared_keys() - model_needs(cfg.model).keys
    if cfg.optimizer != "sgd":
        unused |= {"momentum"}
    return unused


def canonical(cfg: Config) -> Config:
    """``cfg`` with its unused keys at their defaults: one config per computation."""
    return dataclasses.replace(cfg, **{key: getattr(DEFAULTS, key) for key in unused_keys(cfg)})


def ignored_notes(cfg: Config, given: Iterable[str]) -> list[str]:
    """One line per key in ``given`` (keys the user set) that ``cfg`` does not read."""
    unused = unused_keys(cfg)
    return [
        f"config key {key!r} is not used by model {cfg.model!r} with optimizer "
        f"{cfg.optimizer!r}; it is ignored and does not change the run id"
        for key in dict.fromkeys(given)
        if key in unused
    ]


#: The label seed runs drew with before noise was drawn per seed: a run whose label seed is this
#: keeps the run id it had then (its labels are the same), any other names it.
_FORMER_LABEL_SEED = 0


def normalized(cfg: Config) -> dict[str, Any]:
    """The settings that define what a run computes and differ from the defaults.

    Keys the config does not read and ``rounds`` (see NOT_IN_RUN_ID) are left out.
    ``noise_seed`` enters as the label seed the run draws with (``Config.label_seed``), so that
    ``noise_seed: null`` and the same number pinned name the same run.
    """
    values = {
        key: value
        for key, value in to_dict(canonical(cfg)).items()
        if key not in NON_SEMANTIC | NOT_IN_RUN_ID | {"noise_seed"}
        and value != getattr(DEFAULTS, key)
    }
    if cfg.label_seed != _FORMER_LABEL_SEED:
        values["noise_seed"] = cfg.label_seed
    if values.get("teacher") is not None:  # the teacher's digest, not where its file lies
        values["teacher"] = teacher_identity(values["teacher"])
    return values


def run_id(cfg: Config) -> str:
    """A stable short hash naming the run: same experiment, same id."""
    blob = json.dumps(normalized(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
