"""Config options: what a key is (type, default, help, range), and the table of the options
that components declare for themselves.

A component (a model, dataset, noise kind, remedy, …) declares the keys only it reads as
``Option``s in its registration (``Needs(options=...)``); the registry enters them here, and the
config reads them from here to parse, check and default those keys. This module sits at the
bottom: it imports nothing of sparsedd but its errors and the plugin loader (``declared``
loads the installed plugins, whose components declare options too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sparsedd.errors import ConfigError
from sparsedd.plugins import load_plugins

# Larger integers overflow torch's seeds and sizes (C longs): refuse them as config errors.
INT_MAX = 2**63 - 2


@dataclass(frozen=True)
class Option:
    """One config key: ``type`` is int, float, bool or str; ``choices`` the names a str key
    allows (None: any text); ``nullable``: null is a value (None as default implies it);
    ``min``/``max`` inclusive, ``min_excl``/``max_excl`` exclusive bounds; ``why``: the reason
    for ``max``, said when a value passes it."""

    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    min_excl: float | None = None
    max_excl: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    why: str | None = None

    @property
    def can_be_null(self) -> bool:
        """Whether null is a value of this key."""
        return self.nullable or self.default is None


def shown(value: Any) -> str:
    """A value as written in error messages, shortened to keep them one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def coerce(option: Option, value: Any) -> Any:
    """``value`` converted to the type of ``option``; ConfigError if it cannot be."""
    key, base, nullable = option.name, option.type, option.can_be_null
    # "none" is text (augment=none) unless the key is nullable: then it, like null, means None.
    # A nullable switch (compile) reads "auto" as null: the run decides on its device.
    nulls = ("null", "none", "auto") if base is bool else ("null", "none")
    if value is None or (nullable and isinstance(value, str) and value.lower() in nulls):
        if nullable:
            return None
        raise ConfigError(f"config key {key!r} cannot be null; it takes a {base.__name__}")
    if base is bool:
        return _boolean(option, value)
    if base is int:
        return _integer(key, value)
    if base is float:
        return _number(key, value)
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r} takes a name, not {shown(value)}")
    if option.choices is not None and value not in option.choices:
        raise ConfigError(
            f"config key {key!r} does not allow {shown(value)}; choose one of: "
            f"{', '.join(option.choices)}"
        )
    return value


def _boolean(option: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    choices = "true, false or auto" if option.can_be_null else "true or false"
    raise ConfigError(f"config key {option.name!r} takes {choices}, not {shown(value)}")


def _integer(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"config key {key!r} takes an integer, not {shown(value)}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"config key {key!r} takes a number, not {shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"config key {key!r} takes a number, not {shown(value)}") from None
    if not math.isfinite(number):
        raise ConfigError(f"config key {key!r} takes a finite number, not {shown(value)}")
    return number


def check_range(option: Option, value: Any) -> None:
    """ConfigError if ``value`` is outside the range that ``option`` allows."""
    if value is None or isinstance(value, (str, bool)):
        return
    key = option.name
    limit = option.max if option.max is not None else INT_MAX if isinstance(value, int) else None
    if limit is not None and value > limit:
        why = f" ({option.why})" if option.why else ""
        raise ConfigError(f"config key {key!r} must be ≤ {limit}{why}, not {shown(value)}")
    if option.min is not None and value < option.min:
        raise ConfigError(f"config key {key!r} must be ≥ {option.min}, not {shown(value)}")
    if option.min_excl is not None and value <= option.min_excl:
        raise ConfigError(f"config key {key!r} must be > {option.min_excl}, not {shown(value)}")
    if option.max_excl is not None and value >= option.max_excl:
        raise ConfigError(f"config key {key!r} must be < {option.max_excl}, not {shown(value)}")


class OptionValues(Mapping[str, Any]):
    """An immutable, hashable mapping of component option names to values (a Config's)."""

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"OptionValues({self._values!r})"


#: The options that registered components declare, by name, in the order first declared; an
#: option stays while some component that declares it is registered.
OPTIONS: dict[str, Option] = {}
_DECLARERS: dict[str, set[str]] = {}


def declared() -> dict[str, Option]:
    """Every registered component's options, an installed plugin's included (loaded first)."""
    load_plugins()
    return OPTIONS


def declare(options: Iterable[Option], owner: str) -> None:
    """Enter ``owner``'s options in the table; ValueError for a name that another component
    declares differently (two components may share a key only with one declaration)."""
    options = tuple(options)
    for option in options:
        known = OPTIONS.get(option.name)
        if known is not None and known != option:
            raise ValueError(
                f"{owner} declares option {option.name!r} unlike {sorted(_DECLARERS[option.name])}"
                f" do; declare it once and share the Option"
            )
    for option in options:
        OPTIONS.setdefault(option.name, option)
        _DECLARERS.setdefault(option.name, set()).add(owner)


def withdraw(owner: str) -> None:
    """Remove ``owner``'s declarations; an option no registered component declares goes."""
    for name in [n for n, owners in _DECLARERS.items() if owner in owners]:
        _DECLARERS[name].discard(owner)
        if not _DECLARERS[name]:
            del _DECLARERS[name], OPTIONS[name]


def declarers(name: str) -> list[str]:
    """The components (``"kind name"``) that declare option ``name``, sorted."""
    return sorted(_DECLARERS.get(name, ()))


def _cell(value: Any) -> str:
    """A default as the docs' table shows it: YAML's spelling (null, true), text as is."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return str(value) if value != "" else "''"


def key_table() -> str:
    """The Markdown table of every declared option: key, default, who reads it, meaning (the
    docs' config keys page shows it, generated when the docs are built)."""
    lines = ["| key | default | read by | meaning |", "|---|---|---|---|"]
    for name, option in OPTIONS.items():
        readers = ", ".join(
            f"{o.rsplit(' ', 1)[0]} `{o.rsplit(' ', 1)[1]}`" for o in declarers(name)
        )
        help_text = option.help.replace("|", "\\|")
        lines.append(f"| `{name}` | `{_cell(option.default)}` | {readers} | {help_text} |")
    return "\n".join(lines)
