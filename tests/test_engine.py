"""The round engine's single definitions: epochs per round, the λ policy, the run folder's
paths, and the round loop's steps in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from sparsedd.config import epochs_before, round_epochs, run_epochs
from sparsedd.models.base import InputSpec, create_model
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.training.experiment import Experiment, Interrupted, StopFlag
from sparsedd.training.reporter import Reporter, SilentReporter
from sparsedd.training.trainer import decay_stage, make_optimizer


def test_round_epochs_is_one_rule_for_configs_and_recorded_configs() -> None:
    cfg = tiny_config(epochs=3, dense_epochs=5, rounds=2)
    recorded = {"epochs": 3, "dense_epochs": 5, "rounds": 2}
    for source in (cfg, recorded):
        assert [round_epochs(source, k) for k in range(3)] == [5, 3, 3]
        assert epochs_before(source, 2) == 8 and run_epochs(source) == 11
    assert round_epochs({"epochs": 3, "dense_epochs": None}, 0) == 3
    assert round_epochs(cfg, 0) == 5


@pytest.mark.parametrize(
    ("optimizer", "l2_mode", "stage", "kind", "own_decay"),
    [
        ("adamw", "decoupled", "before", torch.optim.AdamW, 0.5),
        ("adamw", "coupled", "gradient", torch.optim.Adam, 0.5),
        ("sgd", "coupled", "gradient", torch.optim.SGD, 0.5),
        ("sgd", "decoupled", "after", torch.optim.SGD, 0.0),  # applied after the step
    ],
)
def test_one_lambda_policy(
    optimizer: str, l2_mode: str, stage: str, kind: type, own_decay: float
) -> None:
    cfg = tiny_config(optimizer=optimizer, l2_mode=l2_mode, weight_decay=0.5)
    assert decay_stage(cfg) == stage
    model = create_model(cfg, InputSpec(1, 8, 4))
    single = make_optimizer(model, cfg)
    assert type(single) is kind and single.param_groups[0]["weight_decay"] == own_decay


def test_the_run_folder_names_every_file(tmp_path: Path) -> None:
    folder = ResultsFolder(tmp_path).run("abc")
    assert folder.sibling("def") == ResultsFolder(tmp_path).run("def")
    assert folder.path == ResultsFolder(tmp_path).runs / "abc" == tmp_path / "runs" / "abc"
    assert folder.id == "abc"
    names = [
        folder.config,
        folder.labels,
        folder.data,
        folder.progress,
        folder.lock,
        folder.tensorboard,
    ]
    assert [p.name for p in names] == [
        "config.yaml",
        "labels.safetensors",
        "data.json",
        "progress.safetensors",
        ".lock",
        "tensorboard",
    ]
    assert folder.round_file(7).name == "round_007.safetensors"
    assert ResultsFolder(tmp_path).sweeps == tmp_path / "sweeps"
    folder.path.mkdir(parents=True)
    for k in (2, 0, 11):
        folder.round_file(k).touch()
    (folder.path / "round_x.safetensors").touch()
    assert folder.checkpointed_rounds() == [0, 2, 11]


def test_an_experiment_writes_where_its_run_folder_says(tmp_path: Path) -> None:
    exp = Experiment(tiny_config(rounds=1, epochs=1), tmp_path)
    exp.run()
    assert exp.files == ResultsFolder(tmp_path).run(exp.id)
    assert exp.files.checkpointed_rounds() == [0, 1]
    assert exp.files.config.exists() and exp.files.labels.exists() and exp.files.data.exists()
    assert not exp.files.progress.exists()  # removed once its round is recorded


def test_a_round_runs_its_steps_in_order_and_resumes_without_pruning_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume → prune → train → evaluate → record, then the collapse stop; a round resumed
    from its saved progress is not pruned again."""
    steps = ("resume", "prune", "train", "evaluate", "record", "check_collapse")
    calls: list[tuple[str, int]] = []
    for name in steps:
        original = getattr(Experiment, name)

        def logged(self, k, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, k))
            return _original(self, k, *args, **kwargs)

        monkeypatch.setattr(Experiment, name, logged)
    Experiment(tiny_config(rounds=1, epochs=1), tmp_path).run()
    assert calls == [(name, k) for k in (0, 1) for name in steps]
    calls.clear()
    cfg = tiny_config(rounds=1, epochs=2)
    stop = StopFlag()

    class StopAfterAnEpoch(SilentReporter):
        def epoch_done(self, run, round_, epoch, stats) -> None:
            stop.requested = round_ == 1

    with pytest.raises(Interrupted):
        Experiment(cfg, tmp_path / "stopped", StopAfterAnEpoch(), stop).run()
    calls.clear()
    Experiment(cfg, tmp_path / "stopped").run()
    assert [name for name, k in calls if k == 1] == [
        "resume",  # found round 1's progress: no pruning
        "train",
        "evaluate",
        "record",
        "check_collapse",
    ]


def test_the_silent_reporter_takes_every_event() -> None:
    reporter: Reporter = SilentReporter()
    reporter.note("run", "a line")  # a member of the protocol, not an optional extra
    assert {"round_started", "epoch_done", "round_done", "note"} <= set(dir(SilentReporter))


def test_one_formatter_names_rounds_in_messages() -> None:
    from sparsedd.training.reporter import rounds_span

    assert rounds_span([5]) == "round 5"
    assert rounds_span(range(5, 13)) == "rounds 5..12"
    assert rounds_span([0, 1, 2, 5, 7, 8]) == "rounds 0..2, 5, 7..8"
