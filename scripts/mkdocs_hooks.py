"""mkdocs hook: docs/studies.md's table of the keys that components declare for themselves,
generated from the declarations when the docs are built (a new model's key needs no edit)."""

from __future__ import annotations

from typing import Any

import sparsedd.components  # noqa: F401  registers every built-in component and its options
from sparsedd.options import key_table

#: Where the generated table goes.
MARKER = "<!-- component keys: generated from the declarations (scripts/mkdocs_hooks.py) -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """The page with the marker replaced by the table of every declared option."""
    return markdown.replace(MARKER, key_table())
