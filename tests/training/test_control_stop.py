"""The control's own stop: a control run (``pruning: false``) whose test accuracy has settled
within the noise records its later rounds as settled, untrained; one still moving trains on."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Notes, tiny_config

from sparsedd.components import run_id
from sparsedd.store.results import ResultsStore
from sparsedd.training.collapse import settled_reason
from sparsedd.training.experiment import Experiment

# lr 1e-9: every round repeats the dense round's accuracy, so the control settles at once.
FLAT = dict(pruning=False, rounds=8, lr=1e-9)


def _epochs(out: Path) -> list[tuple[int, int]]:
    return [(r["round"], r["epoch"]) for r in ResultsStore(out).epoch_rows()]


def test_the_rule_needs_settle_rounds_rounds_within_one_binomial_sd() -> None:
    # 512 test images: one SD about 1.8 points; 400 wrong labels: about 2 points at 50%
    flat = [(0.80, {}, 0.50), (0.81, {}, 0.51), (0.80, {}, 0.50)]
    reason = settled_reason(flat, 512, 400, 3)
    assert reason is not None and "3 rounds" in reason and "80.33%" in reason
    assert settled_reason(flat, 512, 400, 4) is None  # not yet settle_rounds rounds
    assert settled_reason(flat[1:], 512, 400, 2) is not None
    assert settled_reason([(0.85, {}, 0.5), *flat[1:]], 512, 400, 3) is None  # test acc moving
    assert settled_reason(flat, 100_000, 400, 3) is None  # more images: a narrower band
    assert settled_reason([(0.8, {}, 0.5), (None, {}, 0.5), (0.8, {}, 0.5)], 512, 400, 3) is None
    # test accuracy paused while memorization still climbs: not settled
    climbing = [(0.80, {}, 0.30), (0.81, {}, 0.40), (0.80, {}, 0.50)]
    assert settled_reason(climbing, 512, 400, 3) is None
    assert settled_reason(climbing, 512, 0, 3) is not None  # no wrong label: test acc alone
    # memorization at 100%: its SD is taken at 99%, so it can settle
    full = [(0.65, {}, 0.996), (0.65, {}, 0.998), (0.65, {}, 1.0)]
    assert settled_reason(full, 512, 800, 3) is not None


def test_a_flat_control_stops_and_records_its_later_rounds_settled(tmp_path: Path) -> None:
    notes = Notes()
    cfg = tiny_config(**FLAT)
    rows = Experiment(cfg, tmp_path, reporter=notes).run()
    assert [r["round"] for r in rows] == list(range(9))
    assert [r["round"] for r in rows if r["collapsed"]] == list(range(4, 9))
    for r in rows[4:]:
        assert (r["round_epochs"], r["test_acc"], r["sparsity"]) == (0, None, 0.0)
    assert sorted({k for k, _ in _epochs(tmp_path)}) == [0, 1, 2, 3]  # rounds 4..8 untrained
    said = " ".join(notes.notes)
    assert f"run {run_id(cfg)} settled in round 3 (test accuracy within" in said
    assert "rounds 4..8 recorded as settled, not trained" in said
    from sparsedd.cli.main import format_rows

    shown = format_rows(rows, "table", ["round", "test_acc"]).splitlines()
    assert shown[5].split() == ["4", "settled"] and "collapsed" not in "".join(shown)
    # resume, status and the planner agree: nothing is left to train
    from sparsedd.sweep.plan import plan
    from sparsedd.sweep.status import sweep_status

    before = _epochs(tmp_path)
    Experiment(cfg, tmp_path).run()
    assert _epochs(tmp_path) == before
    status = sweep_status(tmp_path)
    assert (status.done, status.rounds_done, status.epochs_left) == (1, 9, 0)
    (planned,) = plan([("", cfg)], tmp_path)
    assert planned.state == "done" and planned.epochs_left == 0
    # the stop turned off trains the settled rounds, from the last trained round
    Experiment(tiny_config(**FLAT, collapse_stop=False), tmp_path).run()
    assert sorted({k for k, _ in _epochs(tmp_path)}) == list(range(9))
    assert not any(r["collapsed"] for r in ResultsStore(tmp_path).round_rows())


@pytest.mark.parametrize("pruning", [True, False])
def test_a_moving_control_and_a_pruned_run_train_every_round(tmp_path: Path, pruning) -> None:
    # the tiny control's accuracy falls round after round (100% → 96.7% by round 5)
    rows = Experiment(tiny_config(pruning=pruning, rounds=5), tmp_path).run()
    assert not any(r["collapsed"] for r in rows)
    assert sorted({k for k, _ in _epochs(tmp_path)}) == list(range(6))


def test_a_flat_pruned_run_is_not_stopped_as_settled(tmp_path: Path) -> None:
    notes = Notes()
    Experiment(tiny_config(**{**FLAT, "pruning": True}), tmp_path, reporter=notes).run()
    assert not any("settled" in n for n in notes.notes)  # settling is a control's stop only


# ---------------------------------------------------------------- the shared dense round


def test_a_control_adopts_its_twins_dense_round_without_training_it(tmp_path: Path) -> None:
    pruned, control = tiny_config(rounds=2), tiny_config(rounds=2, pruning=False)
    Experiment(pruned, tmp_path).run()
    notes = Notes()
    Experiment(control, tmp_path, reporter=notes).run()
    rows = {(r["run_id"], r["round"]): r for r in ResultsStore(tmp_path).round_rows()}
    mine, twins = rows[(run_id(control), 0)], rows[(run_id(pruned), 0)]
    skip = {"run_id", "pruning"}
    assert {k: v for k, v in mine.items() if k not in skip} == {
        k: v for k, v in twins.items() if k not in skip
    }
    epochs = ResultsStore(tmp_path).epoch_rows()
    trained = sorted({r["round"] for r in epochs if r["run_id"] == run_id(control)})
    assert trained == [1, 2]  # no dense epoch trained for the control
    assert any(f"round 0 is run {run_id(pruned)}'s dense round" in n for n in notes.notes)
    # its rounds 1.. train from the adopted checkpoint, as if it had trained round 0 itself
    alone = tmp_path / "alone"
    Experiment(control, alone).run()
    again = {r["round"]: r["test_acc"] for r in ResultsStore(alone).round_rows()}
    assert again == {k: rows[(run_id(control), k)]["test_acc"] for k in (0, 1, 2)}


def test_the_reverse_a_pruned_run_adopts_its_controls_dense_round(tmp_path: Path) -> None:
    pruned, control = tiny_config(rounds=1), tiny_config(rounds=1, pruning=False)
    Experiment(control, tmp_path).run()
    Experiment(pruned, tmp_path).run()
    epochs = ResultsStore(tmp_path).epoch_rows()
    assert sorted({r["round"] for r in epochs if r["run_id"] == run_id(pruned)}) == [1]
