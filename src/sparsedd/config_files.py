"""Config files: YAML read safely into a mapping of config keys.

A key given twice in one mapping and aliases that expand past ``MAX_YAML_VALUES`` values are
refused with one line (merge keys, ``<<: *base``, work as YAML 1.1 says); a file is checked to
be a regular file of at most ``MAX_CONFIG_BYTES`` before it is read; a pipe (``--config
/dev/stdin``) is read once, up to that size, and remembered.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from sparsedd.errors import ConfigError
from sparsedd.options import shown

_PIPE_TEXTS: dict[str, str] = {}


#: The most bytes a config file may hold: a config of every key takes about 3 KB, a study
#: with its grid a few more; a larger file is refused before it is read.
MAX_CONFIG_BYTES = 1 << 20


def _config_text(path: Path) -> str:
    """A config file's text, read only after it proved a regular file (or a pipe) of at most
    MAX_CONFIG_BYTES; a pipe (``--config /dev/stdin``, ``<(...)``) is read only once."""
    mode = path.stat().st_mode  # FileNotFoundError, PermissionError: the caller names them
    if stat.S_ISREG(mode):
        _check_size(path, path.stat().st_size)
        return path.read_text(encoding="utf-8")
    if not stat.S_ISFIFO(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device or socket"
        raise ConfigError(
            f"config file {str(path)!r} is not a regular file ({kind}); give a YAML file"
        )
    # A pipe yields its text to the first read alone; a run reads its config more than once.
    key = str(path)
    if key not in _PIPE_TEXTS:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        _check_size(path, len(data))
        _PIPE_TEXTS[key] = data.decode("utf-8")
    return _PIPE_TEXTS[key]


def _check_size(path: Path, size: int) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {str(path)!r} holds more than {MAX_CONFIG_BYTES:,} bytes, far more "
            f"than a config of every key takes (a few KB); give the YAML file of config keys"
        )


#: The most values (scalars, lists and mappings, counted as aliases expand them) a config
#: file may hold: far above any real config, far below an alias bomb's billions.
MAX_YAML_VALUES = 10_000


class _LoaderRefusal(Exception):
    """A config file that parses but is refused before it is built (one line says why)."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (YAML forbids it;
    PyYAML keeps the last silently) and aliases that expand past MAX_YAML_VALUES values."""

    def construct_document(self, node: yaml.Node) -> Any:
        """Count the values the document expands to before any is built."""
        _expanded_size(node, {})
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping; _LoaderRefusal naming the key and line of a key given twice."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges, it is no key
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML says so itself
                continue
            if duplicate:
                line = key_node.start_mark.line + 1
                raise _LoaderRefusal(
                    f"key {shown(key)} is given twice (again at line {line}); keep one"
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for once its aliases are expanded (memoized per node,
    so that counting costs the size of the file, not of the expansion)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = MAX_YAML_VALUES + 1  # a node inside itself (a recursive alias): refuse
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    if size > MAX_YAML_VALUES:
        raise _LoaderRefusal(
            f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
            f"a config needs a few dozen: write the values out"
        )
    sizes[id(node)] = size
    return size


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; ConfigError if it is missing, unreadable or not a mapping."""
    path = Path(path)
    try:
        text = _config_text(path)
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text; give a YAML file"
        ) from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)
    except _LoaderRefusal as err:
        raise ConfigError(f"config file {str(path)!r}: {err}") from None
    except (yaml.YAMLError, RecursionError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of config keys")
    return data
