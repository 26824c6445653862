"""Plugins: components registered by a user's own installed package.

A package declares entry points in the group ``sparsedd.components``; each names a module
(or a callable) whose import (or call) registers models, datasets, noise kinds, criteria,
remedies or backends through the ordinary registries. ``load_plugins`` imports them all, once
per process; every registry calls it before it is read, so the command line, the library API
and every worker process (local or Ray) see the same components.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from types import ModuleType

from sparsedd.errors import PluginError

GROUP = "sparsedd.components"

# Per process: "done" once every entry point was imported (or one failed: "error" keeps why,
# raised again on every later read, so a broken plugin is never silently half-loaded).
_STATE: dict[str, object] = {"started": False, "error": None}


def load_plugins() -> None:
    """Import every ``sparsedd.components`` entry point once; raise PluginError (one line
    naming the plugin) if one fails, now and on every later call."""
    if not _STATE["started"]:
        _STATE["started"] = True  # a plugin that reads a registry while loading must not recurse
        try:
            load_entry_points(importlib.metadata.entry_points(group=GROUP))
        except PluginError as err:
            _STATE["error"] = str(err)
    if _STATE["error"] is not None:
        raise PluginError(str(_STATE["error"]))


def load_entry_points(entry_points: Iterable[importlib.metadata.EntryPoint]) -> None:
    """Import each entry point (calling it when it names a callable rather than a module)."""
    for entry in sorted(entry_points, key=lambda e: e.name):
        try:
            loaded = entry.load()
            if callable(loaded) and not isinstance(loaded, ModuleType):
                loaded()
        except Exception as err:  # any error of a user's package: one line naming it
            raise PluginError(failure_message(entry, err)) from None


def failure_message(entry: importlib.metadata.EntryPoint, err: BaseException) -> str:
    """One line: which plugin failed, the error's first line, and what to do."""
    dist = entry.dist.name if entry.dist is not None else None
    package = f" of package {dist!r}" if dist else ""
    lines = str(err).strip().splitlines()
    detail = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
    fix = f"fix it or uninstall {dist!r}" if dist else "fix it or remove the entry point"
    return (
        f"plugin {entry.name!r} ({GROUP} entry point {entry.name} = {entry.value}{package}) "
        f"failed to load: {detail}; {fix}"
    )
