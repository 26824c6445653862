"""Plugins: a package installed for the test (its module plus a ``.dist-info`` with an entry
point in ``sparsedd.components``, on PYTHONPATH) registers a model that the command line, its
``--jobs`` worker processes and Ray workers all train; a broken plugin is one line, exit 2."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import run_process

from sparsedd import plugins
from sparsedd.errors import PluginError

SRC = Path(__file__).resolve().parent.parent / "src"
TINY = ["--preset", "tiny", "--set", "rounds=1", "--set", "epochs=1", "-q"]

#: The plugin's module: a small MLP registered as `plugin-mlp`; each process that imports it
#: appends its pid to the file named by SDDPLUG_LOG (who loaded the entry point).
PLUGIN_MODEL = """
import os
import subprocess
import sys
import tomllib
from collections import OrderedDict

from torch import nn

from sparsedd.models.base import MODELS, InputSpec, ModelNeeds

if os.environ.get("SDDPLUG_LOG"):
    with open(os.environ["SDDPLUG_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")


@MODELS.register("plugin-mlp", ModelNeeds(output="out"))
def plugin_mlp(cfg, spec: InputSpec) -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            flat=nn.Flatten(),
            hidden=nn.Linear(spec.channels * spec.image_size**2, 32),
            act=nn.ReLU(),
            out=nn.Linear(32, spec.num_classes),
        )
    )
"""


def install(site: Path, module: str, source: str, entry_point: str | None) -> Path:
    """Write package ``module`` and its distribution's metadata into ``site`` (a folder put on
    PYTHONPATH, where importlib.metadata finds it as installed); ``entry_point``: the line
    under ``[sparsedd.components]``, None for a package that declares none."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    if entry_point is not None:
        (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{entry_point}\n")
    return site


def env_with(site: Path, log: Path | None = None) -> dict[str, str]:
    """The environment of a `sparsedd` process that sees ``site`` (and this checkout's code,
    by absolute path: Ray workers do not start in this folder)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(SRC), env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    if log is not None:
        env["SDDPLUG_LOG"] = str(log)
    return env


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A site folder holding the `sddplug_demo` distribution, which declares its entry point."""
    return install(tmp_path / "site", "sddplug_demo", PLUGIN_MODEL, "demo = sddplug_demo")


def recorded_rows(out: Path, env: dict[str, str]) -> list[dict]:
    proc = run_process("results", str(out), "--format", "json", check=True, env=env)
    return json.loads(proc.stdout)


def test_a_plugin_model_trains_in_the_workers_of_a_jobs_sweep(plugin_site, tmp_path) -> None:
    log = tmp_path / "loaded-by.txt"
    env = env_with(plugin_site, log)
    args = ["run", *TINY, "--set", "model=plugin-mlp", "--grid", "seed=0,1", "--jobs", "2"]
    run_process(*args, "--out", str(tmp_path / "out"), check=True, env=env, timeout=300)
    # the parent and each of its two spawned workers loaded the entry point
    assert len(set(log.read_text().split())) == 3
    rows = recorded_rows(tmp_path / "out", env)
    assert len(rows) == 2 * 2 and {r["model"] for r in rows} == {"plugin-mlp"}
    assert {r["seed"] for r in rows} == {0, 1}
    assert set(rows[0]["layer_density"]) == {"hidden.weight", "out.weight"}


def test_without_the_entry_point_the_model_is_unknown(tmp_path) -> None:
    site = install(tmp_path / "site", "sddplug_demo", PLUGIN_MODEL, None)
    args = ["run", *TINY, "--set", "model=plugin-mlp", "--out", str(tmp_path / "out")]
    proc = run_process(*args, env=env_with(site))
    assert proc.returncode == 2
    assert "unknown model 'plugin-mlp'" in proc.stderr


def test_the_models_command_lists_a_plugins_model(plugin_site) -> None:
    proc = run_process("models", check=True, env=env_with(plugin_site))
    models_line = proc.stdout.splitlines()[0]
    assert models_line.startswith("models:") and "plugin-mlp" in models_line
    assert "plugin-mlp reads: no model-specific key" in proc.stdout


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("raise RuntimeError('the plugin cannot start')", "RuntimeError: the plugin cannot start"),
        ("import sddplug_no_such_module", "No module named 'sddplug_no_such_module'"),
        (
            PLUGIN_MODEL.replace('"plugin-mlp"', '"lenet"'),
            "ValueError: model 'lenet' is registered twice",
        ),
    ],
    ids=["raises", "import-error", "name-twice"],
)
def test_a_broken_plugin_is_one_line_and_exit_2(tmp_path, source, error) -> None:
    site = install(tmp_path / "site", "sddplug_broken", source, "broken = sddplug_broken")
    out = tmp_path / "out"
    proc = run_process("run", *TINY, "--out", str(out), env=env_with(site))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("sparsedd: error: plugin 'broken' (sparsedd.components entry point")
    assert error in lines[0] and "of package 'sddplug-broken'" in lines[0]
    assert lines[0].endswith("fix it or uninstall 'sddplug-broken'")
    assert not out.exists()


def test_a_plugin_that_names_a_callable_is_called(tmp_path, monkeypatch) -> None:
    module = tmp_path / "sddplug_callable.py"
    module.write_text("CALLS = []\n\ndef register():\n    CALLS.append(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint("c", "sddplug_callable:register", plugins.GROUP)
    plugins.load_entry_points([entry])
    import sddplug_callable

    assert sddplug_callable.CALLS == [1]


def test_a_failed_plugin_fails_every_later_read_too(monkeypatch) -> None:
    broken = importlib.metadata.EntryPoint("gone", "sddplug_missing_module", plugins.GROUP)
    monkeypatch.setattr(plugins, "_STATE", {"started": False, "error": None})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])
    for _ in range(2):
        with pytest.raises(PluginError, match="plugin 'gone' .* No module named"):
            plugins.load_plugins()


def test_a_plugin_model_trains_on_ray_workers(plugin_site, tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparsedd[ray]')")
    log = tmp_path / "loaded-by.txt"
    env = env_with(plugin_site, log)
    args = ["run", *TINY, "--set", "model=plugin-mlp", "--backend", "ray", "--grid", "seed=0,1"]
    run_process(*args, "--out", str(tmp_path / "out"), check=True, env=env, timeout=400)
    # the driver and at least one Ray worker process loaded the entry point
    assert len(set(log.read_text().split())) >= 2
    rows = recorded_rows(tmp_path / "out", env)
    assert len(rows) == 2 * 2 and {r["model"] for r in rows} == {"plugin-mlp"}


def test_the_library_api_sees_a_plugins_model(plugin_site) -> None:
    code = (
        "from sparsedd.components import from_dict, run_id; "
        "cfg = from_dict({'model': 'plugin-mlp'}); print(cfg.model, run_id(cfg))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env_with(plugin_site), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "plugin-mlp"


def test_the_documented_entry_points_use_the_group_the_loader_reads() -> None:
    doc = (SRC.parent / "docs" / "architecture.md").read_text()
    snippet = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    declared = tomllib.loads(snippet)["project"]["entry-points"]
    assert list(declared) == [plugins.GROUP]
    for value in declared[plugins.GROUP].values():
        assert importlib.metadata.EntryPoint("x", value, plugins.GROUP).module


def test_commands_that_read_no_registry_import_no_plugin(plugin_site, tmp_path) -> None:
    log = tmp_path / "loaded-by.txt"
    run_process("--help", check=True, env=env_with(plugin_site, log))
    assert not log.exists()  # plugins load with the first registry read, not at start-up
