"""The collapse stop: a run whose pruned model has collapsed records its later rounds as
collapsed without training them; turned off, or asked for more rounds, it resumes exactly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_config
from support import run_cli

from sparsedd.components import run_id
from sparsedd.config import Config
from sparsedd.store.results import ResultsStore
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.training.collapse import at_constant, collapse_reason, constant_accuracy
from sparsedd.training.experiment import Experiment

# The tiny preset pruned 80% a round: rounds 2 and 3 sit at a constant prediction's 25.98%.
P08 = dict(prune_rate=0.8, rounds=12)
UNSTABLE = {"seconds", "sparsedd_version", "git_commit", "torch_version", "device_name"}
UNSTABLE |= {"execution", "collapse_stop", "collapse_rounds", "rounds"}


def rows(out: Path, cfg: Config | None = None) -> list[dict[str, Any]]:
    """Recorded rounds (of ``cfg``'s run when given) without wall times and provenance."""
    found = ResultsStore(out).round_rows()
    wanted = [r for r in found if cfg is None or r["run_id"] == run_id(cfg)]
    return [{k: v for k, v in r.items() if k not in UNSTABLE} for r in wanted]


def epochs(out: Path) -> list[tuple[int, int]]:
    """(round, epoch) of every recorded epoch."""
    return [(r["round"], r["epoch"]) for r in ResultsStore(out).epoch_rows()]


def checkpoints(out: Path, cfg: Config) -> list[int]:
    return ResultsFolder(out).run(run_id(cfg)).checkpointed_rounds()


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset at prune_rate 0.8 for 12 rounds, with the stop (the default)."""
    out = tmp_path_factory.mktemp("stopped")
    Experiment(tiny_config(**P08), out).run()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run with the stop off: every round trained."""
    out = tmp_path_factory.mktemp("trained")
    Experiment(tiny_config(**P08, collapse_stop=False), out).run()
    return out


# ---------------------------------------------------------------- the rule


def test_constant_accuracy_is_the_largest_class_share() -> None:
    assert constant_accuracy(torch.tensor([0, 0, 1, 2])) == 0.5


def test_binomial_noise_decides_what_is_at_a_constant_prediction() -> None:
    # p0 = 0.5 on 100 images: one standard deviation is 0.05, the band ±0.1
    assert at_constant(0.59, 0.5, 100) and at_constant(0.41, 0.5, 100)
    assert not at_constant(0.62, 0.5, 100) and not at_constant(0.38, 0.5, 100)
    assert not at_constant(0.59, 0.5, 10_000)  # more images: a narrower band


def test_the_rule_needs_collapse_rounds_rounds_in_a_row() -> None:
    dense, low = (1.0, {"a": 0.5}), (0.26, {"a": 0.1})
    reason = collapse_reason([dense, low, low], set(), 0.2598, 512, 2)
    assert reason is not None and "25.98%" in reason and "2 rounds" in reason
    assert collapse_reason([dense, low, low], set(), 0.2598, 512, 3) is None
    assert collapse_reason([low, dense, low], set(), 0.2598, 512, 2) is None
    assert collapse_reason([dense, (0.40, {"a": 0.1}), low], set(), 0.2598, 512, 2) is None


def test_no_prunable_weight_left_is_a_collapse_but_layers_kept_dense_do_not_count() -> None:
    empty = [(0.9, {"a": 0.0, "head": 1.0})]
    assert collapse_reason(empty, {"head"}, 0.1, 1000, 2) == "no prunable weight is left"
    assert collapse_reason(empty, set(), 0.1, 1000, 2) is None


# ---------------------------------------------------------------- one run


def test_a_collapsed_run_records_its_later_rounds_untrained(stopped, trained) -> None:
    got = rows(stopped)
    assert [r["round"] for r in got] == list(range(13))
    collapsed = [r for r in got if r["collapsed"]]
    assert [r["round"] for r in collapsed] == list(range(4, 13))
    last = got[3]
    for r in collapsed:
        assert (r["round_epochs"], r["test_acc"], r["memorization"]) == (0, None, None)
        expected = 1 - (1 - last["sparsity"]) * 0.2 ** (r["round"] - 3)
        assert r["sparsity"] == pytest.approx(expected)
        assert r["n_test"] == last["n_test"] and r["layer_density"] == {}
    assert checkpoints(stopped, tiny_config(**P08)) == [0, 1, 2, 3]
    # without the stop every round trains: 13 rounds of 2 epochs, against 4 rounds
    assert len(epochs(stopped)) == 8 < len(epochs(trained)) == 26
    assert not any(r["collapsed"] for r in rows(trained))
    assert got[:4] == rows(trained)[:4]  # the rounds before the stop are the same


def test_the_command_line_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    args = ["run", "-p", "tiny", "-q", "--set", "prune_rate=0.8", "--set", "rounds=6"]
    code, out, err = run_cli([*args, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    said = out + err
    assert "collapsed in round 3 (test accuracy at a constant prediction's 25.98% for 2 " in said
    assert "rounds 4..6 recorded as collapsed, not trained" in said
    assert "--set collapse_stop=false trains them" in said


def test_the_stop_turned_off_trains_on_from_where_it_stopped(stopped, trained, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(stopped, out)
    assert rows(out) != rows(trained)  # rounds 4..12 are recorded as collapsed
    Experiment(tiny_config(**P08, collapse_stop=False), out).run()
    # the trained rounds before stay; the rounds after equal a run never stopped
    assert rows(out) == rows(trained)
    assert len(epochs(out)) == 26


def test_rows_that_no_longer_satisfy_the_rule_are_trained(stopped, trained, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(stopped, out)
    Experiment(tiny_config(**P08, collapse_rounds=3), out).run()  # rounds 1..3 are not 3 low
    got = rows(out)
    assert got[:5] == rows(trained)[:5]  # round 4 trained now, as a run never stopped
    assert [r["round"] for r in got if r["collapsed"]] == list(range(5, 13))  # 2, 3, 4 low


def test_more_rounds_with_the_stop_on_adds_collapsed_rows(tmp_path: Path) -> None:
    Experiment(tiny_config(prune_rate=0.8, rounds=5), tmp_path).run()
    before = rows(tmp_path)
    Experiment(tiny_config(prune_rate=0.8, rounds=8), tmp_path).run()
    after = rows(tmp_path)
    assert after[:6] == before
    assert [r["round"] for r in after if r["collapsed"]] == list(range(4, 9))
    assert len(epochs(tmp_path)) == 8  # nothing trained
    assert checkpoints(tmp_path, tiny_config(prune_rate=0.8)) == [0, 1, 2, 3]


def test_status_and_plan_count_a_collapsed_run_as_done(stopped) -> None:
    from sparsedd.sweep.plan import plan
    from sparsedd.sweep.status import sweep_status

    status = sweep_status(stopped)
    assert (status.done, status.rounds_done, status.epochs_left) == (1, 13, 0)
    (planned,) = plan([("", tiny_config(**P08))], stopped)
    assert planned.state == "done" and planned.epochs_left == 0
    # asked for more rounds, it has rounds to record but no epoch to train
    (more,) = plan([("", tiny_config(prune_rate=0.8, rounds=14))], stopped)
    assert more.state.startswith("partial") and more.epochs_left == 0


def test_a_run_recorded_without_the_stop_stops_when_asked_for_more_rounds(
    trained, tmp_path
) -> None:
    """Recorded with the stop off up to round 12, then asked for 14 rounds with it on."""
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    Experiment(tiny_config(prune_rate=0.8, rounds=14), out).run()
    got = rows(out)
    assert got[:13] == rows(trained)
    assert [r["round"] for r in got if r["collapsed"]] == [13, 14]
    assert len(epochs(out)) == 26  # nothing more trained


# ---------------------------------------------------------------- reporters


class _Recording:
    """A tracker that records the name and arguments of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, method: str):
        return lambda *args: self.calls.append((method, *args))


class _Quiet:
    """A console that prints nothing."""

    def __getattr__(self, method: str):
        return lambda *args, **kwargs: None


def test_trackers_log_collapsed_rounds_and_finish_the_run(tmp_path: Path) -> None:
    """Every recorded round reaches the trackers, collapsed ones too, so a stopped run is
    finished (its figure and report written), also when a resumed run trains nothing."""
    from sparsedd.events.trackers import TrackingReporter

    cfg = tiny_config(**P08)
    tracker = _Recording()
    with TrackingReporter(_Quiet(), tmp_path, [tracker]) as reporter:
        Experiment(cfg, tmp_path, reporter=reporter).run()
    rounds = [c[2]["round"] for c in tracker.calls if c[0] == "round"]
    assert rounds == list(range(13))
    assert [c[1] for c in tracker.calls if c[0] == "run_finished"] == [run_id(cfg)]
    more, again = tiny_config(prune_rate=0.8, rounds=14), _Recording()
    with TrackingReporter(_Quiet(), tmp_path, [again]) as reporter:
        Experiment(more, tmp_path, reporter=reporter).run()
    assert [c[2]["round"] for c in again.calls if c[0] == "round"] == [13, 14]
    assert [c[0] for c in again.calls if c[0] != "round"][:1] == ["run_started"]
    assert any(c[0] == "run_finished" for c in again.calls)
