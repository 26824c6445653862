"""Name → component registries (models, datasets, noise kinds, pruning criteria, backends).

Each entry is registered by a decorator in the component's own module, with ``Needs``: what the
component declares it reads from a run's config, so that checks and run identity never need a
hand-kept list beside the components.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sparsedd.errors import ConfigError
from sparsedd.plugins import load_plugins

T = TypeVar("T")


@dataclass(frozen=True)
class Needs:
    """What a registered component declares it needs from a run's config.

    ``keys``: the config keys it reads among those that only some components read (a ViT's
    sizes, imagefolder's ``image_size``, human noise's ``noise_file``); a key that no chosen
    component reads is left out of the run id or refused when set. ``shape``: the
    (channels, image side, classes) of a dataset, known without reading its files (None: read
    them to know). ``file_key``: the config key naming a file the component cannot run without.
    """

    keys: frozenset[str] = frozenset()
    shape: tuple[int, int, int] | None = None
    file_key: str | None = None


class Registry(Generic[T]):
    """A map from names to objects and their ``Needs``, filled with
    ``@registry.register("name", needs)``."""

    def __init__(self, kind: str, default_needs: Needs | None = None) -> None:
        self.kind = kind
        self.default_needs = default_needs or Needs()
        self._items: dict[str, T] = {}
        self._needs: dict[str, Needs] = {}
        self._families: dict[str, tuple[T, Callable[[str], None], Needs]] = {}

    def register(self, name: str, needs: Needs | None = None) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``, declaring ``needs``."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._needs[name] = needs or self.default_needs
            return item

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a component registered for a while, e.g. by a test)."""
        self._items.pop(name, None)
        self._needs.pop(name, None)

    def register_family(
        self, prefix: str, item: T, check: Callable[[str], None], needs: Needs | None = None
    ) -> None:
        """Register ``item`` for every name ``prefix + rest``; ``check(rest)`` raises a
        ConfigError for a ``rest`` that the family does not know (e.g. ``timm:NAME``)."""
        self._families[prefix] = (item, check, needs or self.default_needs)

    def get(self, name: str) -> T:
        """The object registered as ``name``; a ConfigError naming the choices otherwise."""
        return self._entry(name)[0]

    def needs(self, name: str) -> Needs:
        """What component ``name`` declares it needs; a ConfigError for an unknown name."""
        return self._entry(name)[1]

    def _entry(self, name: str) -> tuple[T, Needs]:
        load_plugins()  # every read sees the installed plugins' components
        for prefix, (item, check, needs) in self._families.items():
            if isinstance(name, str) and name.startswith(prefix):
                check(name[len(prefix) :])
                return item, needs
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name], self._needs[name]

    def declarations(self) -> dict[str, Needs]:
        """What every registered name declares (a family as ``prefix + "NAME"``), sorted."""
        load_plugins()
        found = {**self._needs, **{f"{p}NAME": n for p, (_, _, n) in self._families.items()}}
        return dict(sorted(found.items()))

    def declared_keys(self) -> frozenset[str]:
        """Every key that some registered component of this kind declares it reads."""
        return frozenset().union(*(n.keys for n in self.declarations().values()))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        load_plugins()
        names = [*self._items, *(f"{prefix}NAME" for prefix in self._families)]
        return sorted(n for n in names if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        load_plugins()
        if isinstance(name, str) and any(name.startswith(p) for p in self._families):
            return True
        return name in self._items


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """One line saying that ``name`` is not a known ``kind``, with the closest choice."""
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(choices)}"
