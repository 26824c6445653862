"""Names are imported from the module that defines them: no module of the package passes on a
name it imported from another of its modules (a re-export shim), the public API of
``sparsedd/__init__.py`` aside. Checked on the source text (AST), for src, tests and bench."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sparsedd"


@dataclass
class ModuleNames:
    """The top-level names of one module: those it defines and those it imports (name → the
    module it was imported from)."""

    defined: set[str] = field(default_factory=set)
    imported: dict[str, str] = field(default_factory=dict)
    exported: list[str] = field(default_factory=list)


def module_name(path: Path, src: Path) -> str:
    """``src/a/b.py`` → ``a.b``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a ``from … import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements run at import time, under ``if``/``try`` included."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse)
            for handler in getattr(node, "handlers", []):
                out += _top_level(handler.body)
    return out


def module_names(tree: ast.Module, name: str, is_package: bool) -> ModuleNames:
    """What module ``name`` (parsed as ``tree``) defines, imports and lists in ``__all__``."""
    names = ModuleNames()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.defined |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                elements = getattr(node.value, "elts", [])
                names.exported = [e.value for e in elements if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node, name, is_package)
            for alias in node.names:
                names.imported[alias.asname or alias.name] = source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names.imported[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def package_names(src: Path, package: str) -> dict[str, ModuleNames]:
    """Every module of ``package`` under ``src``, by module name."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        name = module_name(path, src)
        found[name] = module_names(ast.parse(path.read_text()), name, path.name == "__init__.py")
    return found


def _shim(modules: dict[str, ModuleNames], module: str, name: str, package: str) -> str | None:
    """Where ``name`` really lives when reaching it as ``module.name`` goes through a shim."""
    names = modules.get(module)
    if names is None or module == package or f"{module}.{name}" in modules:
        return None
    source = names.imported.get(name)
    if name in names.defined or source is None or not source.startswith(package):
        return None
    return source


def reexports(src: Path, users: list[Path], package: str = PACKAGE) -> list[str]:
    """Every place a name of ``package`` is listed in ``__all__`` of a module that imported it,
    or imported (``from m import name``, or ``m.name`` on an imported module ``m``) from a
    module that did not define it but imported it from another module of the package."""
    modules = package_names(src, package)
    problems = [
        f"{module}: __all__ lists {name}, imported from {names.imported[name]}"
        for module, names in modules.items()
        if module != package
        for name in names.exported
        if name in names.imported and name not in names.defined
    ]
    for path in users:
        in_src = path.is_relative_to(src)
        importer = module_name(path, src) if in_src else ""
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = absolute(node, importer, path.name == "__init__.py")
                for alias in node.names:
                    if f"{module}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
                    elif source := _shim(modules, module, alias.name, package):
                        problems.append(
                            f"{path}:{node.lineno}: import {alias.name} from {source}, not {module}"
                        )
            elif isinstance(node, ast.Import):
                aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in modules}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                module = aliases.get(node.value.id, "")
                if source := _shim(modules, module, node.attr, package):
                    problems.append(
                        f"{path}:{node.lineno}: {node.value.id}.{node.attr} lives in {source}"
                    )
    return problems


def python_files(*folders: Path) -> list[Path]:
    """The .py files under ``folders``."""
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_no_name_is_reached_through_a_shim() -> None:
    src = ROOT / "src"
    users = python_files(src, ROOT / "tests", ROOT / "bench")
    assert reexports(src, users) == []


def _write(root: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def test_the_check_finds_each_kind_of_shim(tmp_path: Path) -> None:
    """A shim through ``__all__``, through ``from … import`` and through a module attribute is
    found; importing from the defining module, a stdlib name used by a module, and the
    package's own ``__init__`` are not."""
    src = tmp_path / "src"
    paths = _write(
        src,
        {
            "pkg/__init__.py": "from pkg.low import helper\n__all__ = ['helper']\n",
            "pkg/low.py": "import os\nLIMIT = 3\n\ndef helper():\n    return os.sep\n",
            "pkg/mid.py": (
                "from pkg.low import LIMIT, helper\n__all__ = ['helper', 'own']\n\n"
                "def own():\n    return helper() * LIMIT\n"
            ),
            "pkg/top.py": "from pkg.mid import own\nfrom pkg.low import helper\n",
            "pkg/bad_from.py": "from pkg.mid import LIMIT\n",
            "pkg/bad_relative.py": "from .mid import helper\n",
            "pkg/bad_attr.py": "from pkg import mid\n\nx = mid.LIMIT + len(mid.own())\n",
            "pkg/fine_attr.py": "from pkg import low\n\nx = low.os.sep + str(low.LIMIT)\n",
        },
    )
    found = reexports(src, paths, package="pkg")
    assert sorted(found) == sorted(
        [
            "pkg.mid: __all__ lists helper, imported from pkg.low",
            f"{src}/pkg/bad_attr.py:3: mid.LIMIT lives in pkg.low",
            f"{src}/pkg/bad_from.py:1: import LIMIT from pkg.low, not pkg.mid",
            f"{src}/pkg/bad_relative.py:1: import helper from pkg.low, not pkg.mid",
        ]
    )
