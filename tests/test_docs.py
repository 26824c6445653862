"""The README documents every config key and every preset."""

from pathlib import Path

from sparsedd.config import FIELDS
from sparsedd.presets import preset_names

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_lists_every_config_key() -> None:
    missing = [key for key in FIELDS if f"| `{key}` |" not in README]
    assert not missing


def test_readme_lists_every_preset() -> None:
    assert not [name for name in preset_names() if f"`{name}`" not in README]
