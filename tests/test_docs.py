"""The README documents every config key and every preset, and its Python example runs."""

from pathlib import Path

import pytest
from test_totality import BASE, curve, fill

from sparsedd.config import FIELDS
from sparsedd.presets import preset_names

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_lists_every_config_key() -> None:
    missing = [key for key in FIELDS if f"| `{key}` |" not in README]
    assert not missing


def test_readme_lists_every_preset() -> None:
    assert not [name for name in preset_names() if f"`{name}`" not in README]


def test_readme_python_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python example, run as written on a results folder."""
    snippet = README.split("### Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    fill(tmp_path / "sparsedd-runs", [("a", BASE, curve([0.5, 0.4, 0.6, 0.3]))])
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)
    assert len(scope["rounds"]) == 4 and len(scope["result"].curves) == 1
