"""A whole run: what is recorded per round, files written, resume after an interruption."""

import dataclasses

import pytest
import torch
import yaml
from conftest import TINY_VIT, tiny_config

from sparsedd.components import run_id
from sparsedd.store.checkpoint import load_tensors
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.store.run_folder import RunFolder
from sparsedd.store.schema import ROUND_FIELDS
from sparsedd.training.experiment import Experiment, Interrupted, StopFlag

VARYING = {"seconds"}


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in VARYING} for r in rows]


def test_run_records_every_round(tmp_path) -> None:
    cfg = tiny_config(rounds=3, epochs=2, dense_epochs=3)
    rows = Experiment(cfg, tmp_path).run()
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert set(ROUND_FIELDS) <= set(r)
        assert r["sparsity"] == pytest.approx(1 - 0.8 ** r["round"], abs=1e-3)
        for key in ("test_acc", "train_acc", "train_acc_clean", "memorization", "val_acc"):
            assert 0.0 <= r[key] <= 1.0
        assert r["round_epochs"] == (3 if r["round"] == 0 else 2) and r["epochs"] == 2
        assert set(r["layer_density"]) == {"1.weight", "3.weight", "5.weight"}
    assert rows[0]["params_remaining"] > rows[3]["params_remaining"]
    epochs = ResultsStore(tmp_path).epoch_rows()
    assert len(epochs) == 3 + 3 * 2
    # the run's folder: readable config, noisy labels, one checkpoint per round
    folder = tmp_path / "runs" / rows[0]["run_id"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["noise"] == 0.2
    labels, _ = load_tensors(folder / "labels.safetensors")
    assert torch.equal(labels["is_noisy"], labels["noisy_label"] != labels["clean_label"])
    state, meta = load_tensors(RunFolder(folder).round_file(3))
    assert meta["round"] == 3
    mask = state["mask.1.weight"]
    assert torch.all(state["model.1.weight"][~mask] == 0)
    assert not (folder / "progress.safetensors").exists()


def test_noisy_labels_stored_with_exact_count(tmp_path) -> None:
    cfg = tiny_config(rounds=0, epochs=1, val_size=0, noise=0.25)
    Experiment(cfg, tmp_path).run()
    (folder,) = (tmp_path / "runs").iterdir()
    labels, meta = load_tensors(folder / "labels.safetensors")
    assert int(labels["is_noisy"].sum()) == 256 and meta["noise"] == 0.25


def test_same_config_gives_identical_numbers(tmp_path) -> None:
    cfg = tiny_config(**TINY_VIT, rounds=2, epochs=2, augment="flip_crop")
    a = Experiment(cfg, tmp_path / "a").run()
    b = Experiment(cfg, tmp_path / "b").run()
    assert comparable(a) == comparable(b)


class StopAfter:
    """A reporter that asks the run to stop after a given number of epochs."""

    def __init__(self, stop: StopFlag, epochs: int) -> None:
        self.stop, self.left = stop, epochs

    def round_started(self, *args) -> None: ...

    def round_done(self, *args) -> None: ...

    def epoch_done(self, *args) -> None:
        self.left -= 1
        if self.left <= 0:
            self.stop.requested = True


@pytest.mark.parametrize("stop_after", [1, 4, 6])
def test_interrupted_run_resumes_to_identical_results(tmp_path, stop_after: int) -> None:
    cfg = tiny_config(**TINY_VIT, rounds=2, epochs=3)
    reference = Experiment(cfg, tmp_path / "ref").run()
    stop = StopFlag()
    with pytest.raises(Interrupted):
        Experiment(cfg, tmp_path / "cut", reporter=StopAfter(stop, stop_after), stop=stop).run()
    resumed = Experiment(cfg, tmp_path / "cut").run()
    assert comparable(resumed) == comparable(reference)
    store = ResultsStore(tmp_path / "cut")
    assert len(store.epoch_rows()) == 3 * 3
    ref_epochs = ResultsStore(tmp_path / "ref").epoch_rows()
    assert store.epoch_rows() == ref_epochs


def test_rerun_of_finished_run_trains_nothing(tmp_path) -> None:
    cfg = tiny_config(rounds=1, epochs=1)
    first = Experiment(cfg, tmp_path).run()
    mtime = ResultsFolder(tmp_path).run(first[0]["run_id"]).round_file(1).stat().st_mtime_ns
    second = Experiment(cfg, tmp_path).run()
    assert second == first
    assert ResultsFolder(tmp_path).run(first[0]["run_id"]).round_file(1).stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    "retrain,criterion",
    [("lottery", "magnitude"), ("finetune", "gradient"), ("lr_rewind", "random")],
)
def test_retraining_modes_and_criteria(tmp_path, retrain, criterion) -> None:
    cfg = tiny_config(
        rounds=2, epochs=1, retrain=retrain, prune_criterion=criterion, prune_scope="layerwise"
    )
    rows = Experiment(cfg, tmp_path).run()
    assert [r["sparsity"] for r in rows] == pytest.approx([0, 0.2, 0.36], abs=2e-3)
    density = rows[-1]["layer_density"]
    assert all(d == pytest.approx(0.64, abs=0.01) for d in density.values())


def test_runs_differing_in_lambda_get_their_own_folders(tmp_path) -> None:
    cfg = tiny_config(rounds=0, epochs=1)
    other = dataclasses.replace(cfg, weight_decay=0.01)
    Experiment(cfg, tmp_path).run()
    Experiment(other, tmp_path).run()
    runs = ResultsStore(tmp_path).runs()
    assert sorted(runs) == sorted([run_id(cfg), run_id(other)])
    assert sorted(c["weight_decay"] for c in runs.values()) == [0.0, 0.01]
    for rid in runs:
        assert (tmp_path / "runs" / rid / "round_000.safetensors").exists()


def test_more_rounds_continue_a_finished_run(tmp_path) -> None:
    cfg = tiny_config(rounds=1, epochs=1)
    short = Experiment(cfg, tmp_path / "cont").run()
    folder = tmp_path / "cont" / "runs" / short[0]["run_id"]
    mtime = RunFolder(folder).round_file(1).stat().st_mtime_ns
    longer = Experiment(dataclasses.replace(cfg, rounds=3), tmp_path / "cont").run()
    assert [r["run_id"] for r in longer] == [short[0]["run_id"]] * 4
    assert (
        RunFolder(folder).round_file(1).stat().st_mtime_ns == mtime
    )  # rounds 0-1 were not retrained
    straight = Experiment(dataclasses.replace(cfg, rounds=3), tmp_path / "straight").run()
    assert comparable(longer) == comparable(straight)
    assert ResultsStore(tmp_path / "cont").runs()[short[0]["run_id"]]["rounds"] == 3
    # fewer rounds than recorded: nothing is trained, nothing is lost, the config keeps 3
    fewer = Experiment(dataclasses.replace(cfg, rounds=2), tmp_path / "cont").run()
    assert fewer == longer
    assert yaml.safe_load((folder / "config.yaml").read_text())["rounds"] == 3
    assert ResultsStore(tmp_path / "cont").runs()[short[0]["run_id"]]["rounds"] == 3


def test_unused_keys_are_recorded_at_their_defaults(tmp_path) -> None:
    cfg = tiny_config(rounds=0, epochs=1)  # LeNet: the ViT sizes are not read
    Experiment(dataclasses.replace(cfg, dim=7), tmp_path).run()
    rows = Experiment(cfg, tmp_path).run()
    (config,) = ResultsStore(tmp_path).runs().values()
    assert len(rows) == 1 and config["dim"] == 512 and config["dropout"] == 0.1
