"""Names are imported from the module that defines them: no module of the package passes on a
name it imported from another of its modules (a re-export shim), the public API of
``sparsedd/__init__.py`` aside. Checked on the source text (AST), for src, tests and bench."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
    """The statements run at import time, under ``if``/``try`` included (not under ``if
    TYPE_CHECKING:``)."""
    out = []
    for node in body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            continue
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


# ---------------------------------------------------------------- the import graph

#: The layers of docs/architecture.md, top to bottom: a module imports from its own layer or
#: below. ``sparsedd`` itself (the version and the lazily imported public API) is the bottom.
LAYERS = (
    ("sparsedd.cli", "sparsedd.__main__"),
    ("sparsedd.sweep",),
    ("sparsedd.events",),
    ("sparsedd.export",),
    ("sparsedd.training",),
    # analysis reads the components' declarations (their keys' defaults, the keys a model
    # reads), and nothing below it reads analysis
    ("sparsedd.analysis",),
    ("sparsedd.components", "sparsedd.teacher_ref"),
    (
        "sparsedd.models",
        "sparsedd.data",
        "sparsedd.criteria",
        "sparsedd.remedies",
        "sparsedd.presets",
    ),
    ("sparsedd.store",),
    (
        "sparsedd.config",
        "sparsedd.config_files",
        "sparsedd.registry",
        "sparsedd.errors",
        "sparsedd.provenance",
        "sparsedd.plugins",
        "sparsedd.options",
        "sparsedd",
    ),
)
#: Packages too slow to import for a module that does not otherwise need them, and optional
#: extras: the only reasons to import inside a function.
HEAVY = {"numpy", "pandas", "torch", "torchvision", "matplotlib"}
OPTIONAL = {"ray", "mlflow", "timm", "tensorboard"}
#: Imports inside functions for another reason than their cost.
LAZY_BY_DESIGN = {
    # importing this module is the function's job, under a quieter logger
    ("sparsedd.training.execution", "torch.utils.cpp_extension"),
    # which of the two names exists depends on NumPy's version
    ("sparsedd.data.label_files", "numpy._core.multiarray"),
    ("sparsedd.data.label_files", "numpy.core.multiarray"),
}
#: Packages whose ``__init__`` imports every module in them (the registries fill that way).
IMPORTS_ALL = {"sparsedd.data", "sparsedd.models"}


@dataclass
class Imports:
    """The modules one module imports: at import time (``top``) and inside functions."""

    top: set[str] = field(default_factory=set)
    inside: set[str] = field(default_factory=set)


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known) -> list:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = absolute(node, importer, is_package)
    return [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]


def import_graph(src: Path, package: str = PACKAGE) -> dict[str, Imports]:
    """Every module of ``package`` with the modules it imports."""
    paths = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        top_nodes = [n for n in _top_level(tree.body) if isinstance(n, ast.Import | ast.ImportFrom)]
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        inside = [n for f in functions for n in ast.walk(f) if isinstance(n, ast.Import)] + [
            n for f in functions for n in ast.walk(f) if isinstance(n, ast.ImportFrom)
        ]
        imports = Imports()
        for node in top_nodes:
            imports.top |= set(_targets(node, name, is_package, paths))
        for node in inside:
            imports.inside |= set(_targets(node, name, is_package, paths))
        if name in IMPORTS_ALL:
            imports.top |= {m for m in paths if m.startswith(f"{name}.")}
        graph[name] = imports
    return graph


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def packages_loaded(graph: dict[str, Imports], module: str) -> set[str]:
    """The heavy and optional packages importing ``module`` loads (its parents included)."""
    loaded, seen, todo = set(), set(), [module]
    while todo:
        current = todo.pop()
        for name in _prefixes(current):
            if name in seen:
                continue
            seen.add(name)
            if name in graph:
                todo += graph[name].top
            elif name.split(".")[0] in HEAVY | OPTIONAL:
                loaded.add(name.split(".")[0])
    return loaded


def cycles(graph: dict[str, Imports]) -> list[list[str]]:
    """The import circles among modules' import-time imports."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module].top & graph.keys()):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def layer(module: str) -> int:
    """The layer of ``module`` (0 is the top)."""
    for index, group in enumerate(LAYERS):
        if any(module == g or module.startswith(f"{g}.") for g in group if g != PACKAGE):
            return index
    assert module == PACKAGE, f"{module} is in no layer of LAYERS"
    return len(LAYERS) - 1


def test_the_import_graph_has_no_circle() -> None:
    assert cycles(import_graph(ROOT / "src")) == []


def test_the_cycle_check_finds_a_circle(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(
        src,
        {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import pkg.a\n"},
    )
    assert cycles(import_graph(src, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_no_module_imports_from_a_higher_layer() -> None:
    graph = import_graph(ROOT / "src")
    upward = {
        (module, target)
        for module, imports in graph.items()
        for target in (imports.top | imports.inside) & graph.keys()
        if layer(target) < layer(module)
    }
    assert upward == set()


def loaded_at_start_up() -> set[str]:
    """The modules that importing the command line (what `sparsedd --help` runs) loads."""
    code = "import sys, sparsedd.cli.main; print(' '.join(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_imports_inside_functions_are_only_the_slow_or_optional_ones() -> None:
    """An import inside a function loads a package that its module does not load otherwise
    (numpy, pandas, torch, torchvision, matplotlib: from 0.4 s to 4.4 s each) or an optional
    extra; in the command line, a module that `sparsedd --help` does not load. Every other
    import is at the top, and a module with imports inside functions says why in a comment."""
    graph = import_graph(ROOT / "src")
    start_up = loaded_at_start_up()
    needless, unsaid = [], []
    for module, imports in graph.items():
        loaded = packages_loaded(graph, module)
        lazy = {t for t in imports.inside - imports.top if (module, t) not in LAZY_BY_DESIGN}
        for target in lazy:
            if module.startswith("sparsedd.cli"):
                if target in start_up:
                    needless.append(f"{module}: {target} (loaded at start-up anyway)")
            elif not packages_loaded(graph, target) - loaded:
                needless.append(f"{module}: {target}")
        path = (ROOT / "src" / Path(*module.split("."))).with_suffix(".py")
        path = path if path.exists() else path.with_suffix("") / "__init__.py"
        if lazy and "imported inside" not in path.read_text().lower():
            unsaid.append(module)
    assert sorted(needless) == [] and unsaid == []


def test_the_command_line_starts_without_the_slow_packages() -> None:
    """`sparsedd --help` imports the command line, which imports none of the packages that
    take seconds to load: the commands import them when they run."""
    code = f"import sys, sparsedd.cli.main; print(sorted(set(sys.modules) & {HEAVY!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
