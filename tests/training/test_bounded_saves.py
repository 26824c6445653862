"""Per-epoch progress saves are bounded in cost: every `checkpoint_every` epochs, at most once
in `checkpoint_seconds`; a round's end and a stop always save, and resuming stays exact."""

from __future__ import annotations

import pytest
from support import tiny_config

from sparsedd.components import run_id
from sparsedd.errors import Interrupted
from sparsedd.training.engine import StopFlag, save_due
from sparsedd.training.experiment import Experiment


def saves(monkeypatch, tmp_path, **overrides) -> list[tuple[int, int]]:
    """(round, epoch) of every progress save of a `tiny` run with ``overrides``."""
    seen: list[tuple[int, int]] = []
    original = Experiment.save_progress

    def record(self, k, epoch, trainer, seconds) -> None:
        seen.append((k, epoch))
        original(self, k, epoch, trainer, seconds)

    monkeypatch.setattr(Experiment, "save_progress", record)
    cfg = tiny_config(rounds=1, epochs=4, dense_epochs=4, **overrides)
    Experiment(cfg, tmp_path / "out").run()
    return seen


def test_every_epoch_when_unbounded(monkeypatch, tmp_path) -> None:
    assert saves(monkeypatch, tmp_path, checkpoint_seconds=0.0) == [
        (k, e) for k in (0, 1) for e in range(4)
    ]


def test_every_n_epochs(monkeypatch, tmp_path) -> None:
    found = saves(monkeypatch, tmp_path, checkpoint_every=3, checkpoint_seconds=0.0)
    assert found == [(0, 2), (0, 3), (1, 2), (1, 3)]  # the last epoch of a round always saves


def test_seconds_bound_the_saves(monkeypatch, tmp_path) -> None:
    found = saves(monkeypatch, tmp_path, checkpoint_seconds=3600.0)
    assert found == [(0, 3), (1, 3)]  # epochs take milliseconds: only the rounds' ends


def test_save_due_waits_for_both_bounds() -> None:
    cfg = tiny_config(checkpoint_every=2, checkpoint_seconds=60.0)
    assert not save_due(cfg, 1, 59.0)  # epochs due, seconds not
    assert not save_due(cfg, 0, 600.0)  # seconds due, epochs not
    assert save_due(cfg, 1, 60.0)


def test_a_stop_saves_even_when_no_save_is_due(tmp_path) -> None:
    stop = StopFlag()

    class StopAfterEpoch2:
        def round_started(self, *args) -> None: ...
        def round_done(self, *args) -> None: ...
        def epoch_done(self, run, round_, epoch, stats) -> None:
            stop.requested = epoch == 1  # Ctrl-C after epoch 2's save was decided

    cfg = tiny_config(rounds=1, epochs=4, dense_epochs=4, checkpoint_seconds=3600.0)
    exp = Experiment(cfg, tmp_path / "out", reporter=StopAfterEpoch2(), stop=stop)
    with pytest.raises(Interrupted, match="after epoch 2"):
        exp.run()
    from sparsedd.store import checkpoint as ckpt

    _, meta = ckpt.load_tensors(exp.files.progress)
    assert (meta["round"], meta["epoch"]) == (0, 1)


def test_the_bound_is_not_part_of_the_run_id() -> None:
    assert run_id(tiny_config(checkpoint_seconds=5.0)) == run_id(tiny_config())
