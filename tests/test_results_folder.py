"""Every path under a results folder (``--out``) has one owner: ``store/results_folder.py``
for the folder's top, ``store/run_folder.py`` for a run's folder. The names are the on-disk
format, pinned here; no other module of the package spells them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparsedd
from sparsedd.store.results_folder import ResultsFolder, check_out_layout
from sparsedd.store.run_folder import RunFolder

SRC = Path(sparsedd.__file__).resolve().parent  # wherever the tests folder lies
OWNERS = {SRC / "store" / "results_folder.py", SRC / "store" / "run_folder.py"}
#: Names of files and folders sparsedd keeps under --out, distinctive enough to search for.
FILE_NAMES = (
    "results.sqlite",
    "sdd.png",
    "layers.png",
    "report.html",
    "mlflow.db",
    "mlartifacts",
    "config.yaml",
    "labels.safetensors",
    "data.json",
    "progress.safetensors",
    ".lock",
)
#: Folder names that are also ordinary words (a tracker is called "tensorboard"): only a path
#: joined with them counts.
FOLDER_NAMES = ("runs", "sweeps", "tensorboard")


def test_the_results_folder_names_everything_at_its_top(tmp_path: Path) -> None:
    out = ResultsFolder(str(tmp_path))
    assert out.path == tmp_path
    named = {
        "database": out.database,
        "runs": out.runs,
        "sweeps": out.sweeps,
        "figure": out.figure,
        "layers_figure": out.layers_figure,
        "report": out.report,
        "mlflow_db": out.mlflow_db,
        "mlflow_artifacts": out.mlflow_artifacts,
    }
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in named.items()} == {
        "database": "results.sqlite",
        "runs": "runs",
        "sweeps": "sweeps",
        "figure": "sdd.png",
        "layers_figure": "layers.png",
        "report": "report.html",
        "mlflow_db": "mlflow.db",
        "mlflow_artifacts": "mlartifacts",
    }
    assert out.run("0123456789abcdef") == RunFolder(tmp_path / "runs" / "0123456789abcdef")
    assert out.run("0123456789abcdef").tensorboard == (
        tmp_path / "runs" / "0123456789abcdef" / "tensorboard"
    )
    assert out.sweep_file("abc") == tmp_path / "sweeps" / "abc.json"
    out.sweeps.mkdir()
    for name in ("b.json", "a.json", "c.txt"):
        (out.sweeps / name).touch()
    assert [p.name for p in out.sweep_files()] == ["a.json", "b.json"]


def test_a_file_where_the_database_belongs_is_refused_by_its_owner(tmp_path: Path) -> None:
    ResultsFolder(tmp_path).database.mkdir()
    with pytest.raises(Exception, match="results.sqlite is not a regular file"):
        check_out_layout(tmp_path)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def out_folder_names_spelled(path: Path) -> list[str]:
    """Where module ``path`` spells a name of the results folder in code: a distinctive file
    name in a string that is not prose (no docstring, no text with a space such as a help
    text), or a folder name joined onto a path with ``/``."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and id(node) not in docs and not any(c.isspace() for c in text):
            hits += [f"{n!r} at line {node.lineno}" for n in FILE_NAMES if n in text]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in FOLDER_NAMES:
                hits.append(f"/ {right.value!r} at line {node.lineno}")
    return hits


def test_only_the_owners_spell_the_names_under_out() -> None:
    spelled = {
        str(p.relative_to(SRC)): hits
        for p in sorted(SRC.rglob("*.py"))
        if p not in OWNERS and (hits := out_folder_names_spelled(p))
    }
    assert spelled == {}


def test_the_check_finds_a_name_spelled_outside_its_owner(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Writes results.sqlite (a docstring may say so)."""\n'
        "from pathlib import Path\n"
        "def f(out: Path) -> Path:\n"
        '    """Names report.html in words."""\n'
        '    print("no results.sqlite in", out)\n'
        '    return out / "runs" / f"x_{1}.png" if out else out / "sdd.png"\n'
    )
    assert out_folder_names_spelled(module) == ["/ 'runs' at line 6", "'sdd.png' at line 6"]


def test_the_owners_spell_every_name() -> None:
    owned = "".join(p.read_text() for p in OWNERS)
    assert all(name in owned for name in (*FILE_NAMES, *FOLDER_NAMES))
