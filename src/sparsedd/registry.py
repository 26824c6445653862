"""Name → constructor registries (models, datasets, pruning criteria), filled by decorators."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from sparsedd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A map from names to objects, filled with ``@registry.register("name")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._families: dict[str, tuple[T, Callable[[str], None]]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorate

    def register_family(self, prefix: str, item: T, check: Callable[[str], None]) -> None:
        """Register ``item`` for every name ``prefix + rest``; ``check(rest)`` raises a
        ConfigError for a ``rest`` that the family does not know (e.g. ``timm:NAME``)."""
        self._families[prefix] = (item, check)

    def get(self, name: str) -> T:
        """The object registered as ``name``; a ConfigError naming the choices otherwise."""
        for prefix, (item, check) in self._families.items():
            if isinstance(name, str) and name.startswith(prefix):
                check(name[len(prefix) :])
                return item
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        names = [*self._items, *(f"{prefix}NAME" for prefix in self._families)]
        return sorted(n for n in names if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and any(name.startswith(p) for p in self._families):
            return True
        return name in self._items


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """One line saying that ``name`` is not a known ``kind``, with the closest choice."""
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(choices)}"
