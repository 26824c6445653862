"""What config key ``teacher`` names, and the digest that names it in a run id.

A teacher is one of: a run id (16 hex digits: that run's dense round, in the same results
folder); an exported model (``PATH.safetensors``, written by ``sparsedd export``); or a model
and its weights, ``MODEL:PATH.safetensors`` for a registered model (``lenet``, ``resnet18``,
``vgg-like`` …) or ``timm:NAME:PATH.safetensors`` for a timm model, the file a plain state
dict saved with safetensors (never a pickle). This module parses the text and checks what can
be checked before a run starts; ``training.teacher`` builds and loads the model.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sparsedd.models  # noqa: F401  registers every model
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS
from sparsedd.models.timm_models import PREFIX as TIMM_PREFIX
from sparsedd.models.timm_models import check_timm_name

_RUN_ID = re.compile(r"[0-9a-f]{16}")
_FORMS = (
    "a run id (16 hex digits), an exported .safetensors file, or MODEL:CHECKPOINT.safetensors "
    "(a registered model, or timm:NAME, and its weights)"
)


@dataclass(frozen=True)
class TeacherRef:
    """A parsed ``teacher``: ``kind`` run (``value`` is the run id), export (``path``: a file
    of ``sparsedd export``) or checkpoint (``model``, built for the run's data, and ``path``,
    its state dict)."""

    kind: Literal["run", "export", "checkpoint"]
    value: str
    model: str | None = None
    path: Path | None = None


def parse_teacher(value: str) -> TeacherRef:
    """The teacher ``value`` names; ConfigError (one line) for text of no known form, a model
    that is not registered (or timm not installed), a file that is missing or not safetensors."""
    if _RUN_ID.fullmatch(value):
        return TeacherRef("run", value)
    model, text = _split_model(value)
    path = Path(text).expanduser()
    if path.suffix != ".safetensors":
        raise ConfigError(
            f"config key 'teacher' takes {_FORMS}, not {value!r}; see `sparsedd results`, "
            f"`sparsedd export` or `sparsedd models`"
        )
    if not path.is_file():
        hint = "save the model's state dict there" if model else "export a run there first"
        raise ConfigError(f"config key 'teacher': no file {str(path)!r}; {hint}")
    if model is None:
        return TeacherRef("export", value, path=path)
    return TeacherRef("checkpoint", value, model=model, path=path)


def _split_model(value: str) -> tuple[str | None, str]:
    """(model name, the rest) of ``MODEL:PATH`` or ``timm:NAME:PATH``; (None, value) when
    ``value`` starts with no registered model name."""
    if value.startswith(TIMM_PREFIX):
        name, sep, rest = value[len(TIMM_PREFIX) :].partition(":")
        if not sep or not name:
            raise ConfigError(
                f"config key 'teacher': a timm teacher is timm:NAME:CHECKPOINT.safetensors, "
                f"not {value!r}"
            )
        try:
            check_timm_name(name)
        except ConfigError as err:  # timm missing or no such model: say which key asked
            raise ConfigError(f"config key 'teacher': {err}") from None
        return TIMM_PREFIX + name, rest
    head, sep, rest = value.partition(":")
    if sep and head in MODELS.names():
        return head, rest
    return None, value


def teacher_identity(teacher: str) -> str:
    """What names a teacher in a run's identity: a run id as given (it hashes the teacher's
    config); an exported file as ``sha256:`` and the digest of its bytes; a model and its
    checkpoint as ``MODEL@sha256:`` and the digest of the name and the bytes. ConfigError for
    anything else (see :func:`parse_teacher`)."""
    ref = parse_teacher(teacher)
    if ref.path is None:
        return ref.value
    stat = ref.path.stat()
    key = (str(ref.path.resolve()), stat.st_mtime_ns, stat.st_size, ref.model)
    # A file changed within the filesystem's timestamp tick can keep its mtime and size (git's
    # "racily clean" case): hash a recently written file anew instead of trusting the cache.
    recent = time.time_ns() - stat.st_mtime_ns < _RACY_NS
    digest = _file_digest.__wrapped__(*key) if recent else _file_digest(*key)
    return digest if ref.model is None else f"{ref.model}@{digest}"


_RACY_NS = 3_000_000_000


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int, model: str | None = None) -> str:
    digest = hashlib.sha256()
    if model is not None:  # the same weights read as another model is another teacher
        digest.update(model.encode() + b"\0")
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
