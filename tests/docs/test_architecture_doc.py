"""docs/architecture.md's examples run as written: the model, dataset, criterion and backend
it adds (each from one block) train a sweep through the command line; the round loop it shows
is the code's."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import run_cli, tiny_config

from sparsedd.components import run_id
from sparsedd.criteria import CRITERIA
from sparsedd.data.datasets import DATASETS
from sparsedd.models.base import MODELS
from sparsedd.store.results import ResultsStore
from sparsedd.sweep.backends import BACKENDS
from sparsedd.training.experiment import Experiment

DOC = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
BLOCKS = [part.split("```", 1)[0] for part in DOC.split("```python\n")[1:]]
ADDED = ((MODELS, "mlp-wide"), (DATASETS, "stripes"), (CRITERIA, "magnitude-squared"))


@pytest.fixture
def documented() -> Iterator[None]:
    """Every example block executed, as a user's module would be; removed afterwards."""
    for block in BLOCKS:
        exec(compile(block, "docs/architecture.md", "exec"), {})
    yield
    for registry, name in ADDED:
        registry.unregister(name)
    BACKENDS.unregister("inline")


def test_the_doc_has_four_examples() -> None:
    assert len(BLOCKS) == 4


def test_the_round_loop_shown_is_the_code() -> None:
    shown = DOC.split("## The round loop", 1)[1].split("```py\n", 1)[1].split("```", 1)[0]
    methods = (Experiment.run, Experiment.run_round)
    assert shown == "\n\n".join(textwrap.dedent(inspect.getsource(m)) for m in methods)


def test_the_documented_components_train_a_sweep(documented, tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--out", str(tmp_path), "--backend", "inline", "-q"]
    args += ["--set", "model=mlp-wide", "--set", "dataset=stripes", "--set", "mlp_width=16"]
    args += ["--set", "prune_criterion=magnitude-squared", "--set", "depth=3"]
    args += ["--grid", "seed=0,1"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "config key 'depth' is not used by model 'mlp-wide'" in err
    rows = ResultsStore(tmp_path).round_rows()
    assert len(rows) == 6 and {r["model"] for r in rows} == {"mlp-wide"}
    assert set(rows[0]["layer_density"]) == {"hidden.weight", "out.weight"}
    # the model's own key sized it: (8×8 pixels + a bias) × 16 hidden units + (16 + 1) × 2
    # classes (64 units, were the key ignored)
    dense = [r for r in rows if r["round"] == 0]
    assert {r["params_remaining"] for r in dense} == {65 * 16 + 17 * 2}
    cfg = tiny_config(model="mlp-wide", dataset="stripes", mlp_width=16)
    assert run_id(dataclasses.replace(cfg, mlp_width=17)) != run_id(cfg)
    assert run_id(dataclasses.replace(cfg, depth=3)) == run_id(cfg)


def test_the_documented_model_key_is_checked_and_goes_with_its_model(
    documented, tmp_path, capsys
) -> None:
    run = ["run", "-p", "tiny", "--out", str(tmp_path)]
    code, _, err = run_cli([*run, "--set", "model=mlp-wide", "--set", "mlp_width=0"], capsys)
    assert code == 2 and "config key 'mlp_width' must be ≥ 1" in err and len(err.splitlines()) == 1
    code, _, err = run_cli([*run, "--set", "mlp_widht=8"], capsys)
    assert code == 2 and "did you mean 'mlp_width'?" in err
    MODELS.unregister("mlp-wide")  # its key goes with it
    code, _, err = run_cli([*run, "--set", "mlp_width=8"], capsys)
    assert code == 2 and "unknown config key 'mlp_width'" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
