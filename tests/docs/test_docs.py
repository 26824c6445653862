"""The README and the docs pages: every config key, preset and study documented, the README's
Python example runs, the README stays short and its links lead to files that exist."""

import re
import runpy
from pathlib import Path

import pytest
from support import BASE, curve, fill

from sparsedd.config import FIELDS
from sparsedd.models.base import MODELS, ModelNeeds
from sparsedd.options import OPTIONS, Option
from sparsedd.presets import preset_names
from sparsedd.sweep.study import study_names

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
#: The page that holds the presets table and the config keys table.
STUDIES_PAGE = (ROOT / "docs" / "studies.md").read_text()


def test_docs_list_every_config_key() -> None:
    missing = [key for key in FIELDS if f"| `{key}` |" not in STUDIES_PAGE]
    assert not missing


def test_docs_generate_the_keys_that_components_declare() -> None:
    """The table of the components' own keys is the mkdocs hook's, from the declarations: a
    key a new model declares is in it with no docs edit."""
    hook = runpy.run_path(str(ROOT / "scripts" / "mkdocs_hooks.py"))
    assert hook["MARKER"] in STUDIES_PAGE
    page = hook["on_page_markdown"](STUDIES_PAGE)
    assert "| `dim` | `512` | model `vit` | ViT embedding width |" in page
    assert not [key for key in OPTIONS if f"| `{key}` |" not in page]
    width = Option("docs_test_width", int, 3, "a test model's width", min=1)
    MODELS.register("docs-test-model", ModelNeeds(options=(width,)))(lambda cfg, spec: None)
    try:
        page = hook["on_page_markdown"](STUDIES_PAGE)
    finally:
        MODELS.unregister("docs-test-model")
    assert "| `docs_test_width` | `3` | model `docs-test-model` | a test model's width |" in page


def test_docs_list_every_preset_and_study() -> None:
    names = [*preset_names(), *study_names()]
    assert not [name for name in names if f"`{name}`" not in STUDIES_PAGE]


def test_readme_python_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python example, run as written on a results folder."""
    snippet = README.split("### Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    fill(tmp_path / "sparsedd-runs", [("a", BASE, curve([0.5, 0.4, 0.6, 0.3]))])
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)
    assert len(scope["rounds"]) == 4 and len(scope["result"].curves) == 1


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 200


def test_readme_links_lead_to_files_that_exist() -> None:
    """Relative links and images in the README (the docs pages' own links are checked by
    `mkdocs build --strict`, which CI runs)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "the README links to no docs page"
    assert not [t for t in local if not (ROOT / t).is_file()]
