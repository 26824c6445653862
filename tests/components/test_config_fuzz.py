"""Hypothesis on the config parser: any input gives a value or a ConfigError, never another
exception; every valid value survives a round trip through text."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsedd.components import validate
from sparsedd.config import (
    DEFAULTS,
    FIELDS,
    _type_parts,
    apply,
    coerce,
    parse_assignment,
    to_dict,
)
from sparsedd.config_files import load_yaml_file
from sparsedd.errors import ConfigError

KEYS = sorted(FIELDS)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
keyish = st.sampled_from(KEYS) | st.text(max_size=20)


@FAST
@given(st.text(max_size=60))
def test_parse_assignment_any_text(text: str) -> None:
    try:
        key, value = parse_assignment(text)
    except ConfigError as err:
        assert "\n" not in str(err) or "\\n" in repr(err)
        return
    assert key in FIELDS
    assert coerce(key, value) == value or (isinstance(value, float) and math.isnan(value))


@FAST
@given(st.sampled_from(KEYS), st.text(max_size=40))
def test_parse_assignment_known_key_any_value(key: str, raw: str) -> None:
    try:
        parsed_key, value = parse_assignment(f"{key}={raw}")
    except ConfigError:
        return
    assert parsed_key == key
    assert coerce(key, value) == value


@FAST
@given(keyish, anything)
def test_coerce_any_value(key: str, value: Any) -> None:
    with contextlib.suppress(ConfigError):
        coerce(key, value)


@FAST
@given(st.dictionaries(keyish, anything, max_size=4))
def test_apply_then_validate_any_mapping(values: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        validate(apply(DEFAULTS, values))


def _valid_value(key: str) -> st.SearchStrategy[Any]:
    """Values that config key ``key`` accepts (its type and range)."""
    base, choices, nullable = _type_parts(key)
    meta = FIELDS[key].metadata
    if choices is not None:
        strategy: st.SearchStrategy[Any] = st.sampled_from(choices)
    elif base is bool:
        strategy = st.booleans()
    elif base is int:
        strategy = st.integers(int(meta.get("min", -(2**40))), int(meta.get("max", 2**40)))
    elif base is float:
        low = meta.get("min", meta.get("min_excl", -1e9))
        high = meta.get("max_excl", 1e9)
        strategy = st.floats(
            low,
            high,
            exclude_min="min_excl" in meta,
            exclude_max="max_excl" in meta,
            allow_nan=False,
        )
    else:
        strategy = st.text(
            st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20
        ).filter(lambda s: s.strip() == s and s.lower() not in ("null", "none"))
    return (st.none() | strategy) if nullable else strategy


@st.composite
def key_and_value(draw: st.DrawFn) -> tuple[str, Any]:
    key = draw(st.sampled_from(KEYS))
    return key, draw(_valid_value(key))


@FAST
@given(key_and_value())
def test_valid_values_round_trip_through_set(pair: tuple[str, Any]) -> None:
    key, value = pair
    assert coerce(key, value) == value
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    if isinstance(value, str):
        text = value  # names and paths are taken as typed on the command line
    parsed_key, parsed = parse_assignment(f"{key}={text}")
    assert parsed_key == key
    assert parsed == value and type(parsed) is type(value)


@FAST
@given(key_and_value())
def test_valid_values_round_trip_through_yaml(pair: tuple[str, Any]) -> None:
    key, value = pair
    cfg = apply(DEFAULTS, yaml.safe_load(yaml.safe_dump({key: value})))
    assert getattr(cfg, key) == value
    again = apply(DEFAULTS, yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


@FAST
@given(st.binary(max_size=200))
def test_any_config_file_bytes(data: bytes) -> None:
    path = Path("/tmp") / f"sparsedd-fuzz-{id(data)}.yaml"
    path.write_bytes(data)
    try:
        validate(apply(DEFAULTS, load_yaml_file(path)))
    except ConfigError:
        pass
    finally:
        path.unlink()


@FAST
@given(st.text(max_size=200))
def test_any_config_file_text(text: str) -> None:
    path = Path("/tmp") / f"sparsedd-fuzz-{id(text)}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        data = load_yaml_file(path)
        validate(apply(DEFAULTS, data))
    except ConfigError:
        pass
    finally:
        path.unlink()


def test_whole_config_round_trips() -> None:
    cfg = dataclasses.replace(DEFAULTS, data_dir="2024", train_size=10, noise=0.5)
    again = apply(
        DEFAULTS, {k: str(v) if isinstance(v, str) else v for k, v in to_dict(cfg).items()}
    )
    assert again == cfg
