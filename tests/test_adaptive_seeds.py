"""Adaptive seeds: seeds go only to curves whose verdict is inconclusive, wave after wave,
and a stopped study resumes from its recorded rounds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import tiny_config
from support import RecordingBackend, assert_one_error_line, registered_backend, run_cli

from sparsedd.components import run_id
from sparsedd.store.results import ResultsStore
from sparsedd.sweep import adaptive
from sparsedd.sweep.adaptive import AdaptiveSeeds, parse_adaptive_seeds, replay, seed_axis
from sparsedd.sweep.plan import PlannedRun

TWO_CURVES = ["run", "-p", "tiny", "--grid", "weight_decay=0,0.5"]


@pytest.fixture
def waves() -> Iterator[RecordingBackend]:
    """A backend that remembers each wave's run labels, registered as ``test-waves``."""
    with registered_backend("test-waves", RecordingBackend()) as made:
        yield made


def seeds_by_curve(out: Path, key: str = "weight_decay") -> dict[float, list[int]]:
    """The seeds recorded per value of ``key``."""
    found: dict[float, set[int]] = {}
    for row in ResultsStore(out, create=False).round_rows():
        found.setdefault(row[key], set()).add(row["seed"])
    return {k: sorted(v) for k, v in sorted(found.items())}


def round_files(out: Path) -> dict[Path, int]:
    """Each run's round checkpoints and when they were written."""
    return {p: p.stat().st_mtime_ns for p in out.glob("runs/*/round_*.safetensors")}


# ---------------------------------------------------------------- the wave logic, steered


def _planned(weight_decay: float, seeds: Sequence[int]) -> list[PlannedRun]:
    runs = []
    for seed in seeds:
        cfg = tiny_config(weight_decay=weight_decay, seed=seed)
        runs.append(PlannedRun(cfg, run_id(cfg), f"seed={seed}", 0, 0, 6))
    return runs


def test_replay_gives_seeds_only_to_inconclusive_curves() -> None:
    decided, open_ = _planned(0.0, range(5)), _planned(0.5, range(5))
    asked: list[tuple[float, int]] = []

    def verdict_of(runs: Sequence[PlannedRun]) -> str:
        asked.append((runs[0].cfg.weight_decay, len(runs)))
        return "no SDD" if runs[0].cfg.weight_decay == 0 else "inconclusive"

    spec = AdaptiveSeeds(2, 5)
    first = replay([decided, open_], spec, set(), verdict_of)
    assert first.number == 1 and [p.cfg.seed for p in first.wave] == [0, 1, 0, 1]
    done = {p.id for p in first.wave}
    second = replay([decided, open_], spec, done, verdict_of)
    assert second.number == 2 and [(p.cfg.weight_decay, p.cfg.seed) for p in second.wave] == [
        (0.5, 2)
    ]
    done |= {p.id for c in (decided, open_) for p in c}  # everything recorded
    asked.clear()
    last = replay([decided, open_], spec, done, verdict_of)
    assert last.finished and last.targets == [2, 5] and last.number == 4
    assert [p.cfg.seed for p in last.skipped] == [2, 3, 4]  # the decided curve's rest
    assert last.verdicts == ["no SDD", "inconclusive"] and last.decided == [True, False]
    # the decided curve was judged once, on 2 seeds; the open one on 2, 3, 4 and 5
    assert asked == [(0.0, 2), (0.5, 2), (0.5, 3), (0.5, 4), (0.5, 5)]


def test_a_verdict_on_one_seed_is_only_indicative() -> None:
    curve = _planned(0.0, range(3))
    state = replay([curve], AdaptiveSeeds(1, 3), {curve[0].id}, lambda runs: "SDD")
    assert [p.cfg.seed for p in state.wave] == [1]  # SDD on one seed: a second seed first
    state = replay([curve], AdaptiveSeeds(1, 3), {p.id for p in curve[:2]}, lambda runs: "SDD")
    assert state.finished and state.targets == [2] and state.decided == [True]


def test_the_seed_axis_is_extended_after_its_largest_value() -> None:
    assert seed_axis(["0", "5", "2"], 5) == [0, 5, 2, 6, 7]
    assert seed_axis([3, 4, 5, 6], 2) == [3, 4]
    assert seed_axis([0, 0, 1], 3) == [0, 1, 2]


def test_a_steered_study_trains_wave_by_wave(tmp_path, capsys, monkeypatch, waves) -> None:
    """The verdict is replaced (a real one is too slow to steer): λ = 0 is decided after wave 1,
    λ = 0.5 stays inconclusive and gets one seed a wave up to MAX."""
    seen: list[tuple[float, tuple[int, ...]]] = []

    def steered(frame, ids, alpha):
        rows = frame[frame["run_id"].isin(list(ids))]
        seen.append((float(rows["weight_decay"].iloc[0]), tuple(sorted(set(rows["seed"])))))
        # 2:4 has 3 looks: alpha 0.05 spent as 0.0125 at 2 and 3 seeds, 0.025 at 4
        assert alpha == {2: 0.0125, 3: 0.0125, 4: 0.025}[len(set(rows["seed"]))]
        return "SDD" if rows["weight_decay"].iloc[0] == 0 else "inconclusive"

    monkeypatch.setattr(adaptive, "curve_verdict", steered)
    args = [*TWO_CURVES, "--adaptive-seeds", "2:4", "--out", str(tmp_path), "-q"]
    code, _, err = run_cli([*args, "--backend", "test-waves"], capsys)
    assert code == 0, err
    assert waves.waves == [
        ["weight_decay=0 seed=0", "weight_decay=0 seed=1"]
        + ["weight_decay=0.5 seed=0", "weight_decay=0.5 seed=1"],
        ["weight_decay=0.5 seed=2"],
        ["weight_decay=0.5 seed=3"],
    ]
    assert seeds_by_curve(tmp_path) == {0.0: [0, 1], 0.5: [0, 1, 2, 3]}
    # every wave replays the plan from the recorded rounds: the judgements made, each on the
    # seeds a curve had then
    assert sorted(set(seen)) == [
        (0.0, (0, 1)),
        (0.5, (0, 1)),
        (0.5, (0, 1, 2)),
        (0.5, (0, 1, 2, 3)),
    ]
    assert "6 of the full grid's 8 runs, 36 of its 48 epochs (75%)" in err
    code, text, err = run_cli(["status", str(tmp_path)], capsys)
    assert code == 0 and "36 epochs trained; 12 saved so far (25%)" in text

    # Re-running the same command replays the plan from the recorded rounds: nothing trains.
    rows = ResultsStore(tmp_path).round_rows()
    code, _, err = run_cli([*args, "--backend", "test-waves"], capsys)
    assert code == 0, err
    assert len(waves.waves) == 3 and ResultsStore(tmp_path).round_rows() == rows
    assert "0 runs trained now" in err


def test_a_stopped_study_resumes_its_plan(tmp_path, capsys, monkeypatch, waves) -> None:
    """Wave 1's runs recorded by a plain grid (as a study stopped after wave 1 leaves them):
    the adaptive command trains none of them again and goes on with wave 2."""
    monkeypatch.setattr(adaptive, "curve_verdict", lambda frame, ids, alpha: "inconclusive")
    out = ["--out", str(tmp_path), "-q", "--backend", "test-waves"]
    code, _, err = run_cli([*TWO_CURVES, "--grid", "seed=0,1", *out], capsys)
    assert code == 0, err
    before = round_files(tmp_path)
    assert len(before) == 4 * 3
    code, out_text, err = run_cli(
        [*TWO_CURVES, "--adaptive-seeds", "2:3", *out, "--dry-run"], capsys
    )
    assert code == 0, err
    assert "wave 2 trains 2 runs now" in out_text
    code, _, err = run_cli([*TWO_CURVES, "--adaptive-seeds", "2:3", *out], capsys)
    assert code == 0, err
    assert waves.waves[1:] == [["weight_decay=0 seed=2", "weight_decay=0.5 seed=2"]]
    after = round_files(tmp_path)
    assert {k: after[k] for k in before} == before and len(after) == 6 * 3  # wave 1 kept


# ---------------------------------------------------------------- end to end, real verdicts


def test_real_verdicts_feed_open_curves_up_to_max(tmp_path, capsys) -> None:
    """prune_rate 0.2 over 4 rounds keeps the tiny model flat, but 5 rounds of a 512-image test
    set cannot bound its deepest valley below the minimum rise at the looks' shares of alpha
    before MAX (``inconclusive`` on 2 and 3 seeds, ``no SDD`` on 4); prune_rate 0.97 collapses
    at once (too few rounds: ``inconclusive``). Both get seeds up to MAX (a decided curve
    stopping early: the steered tests). Two processes (--jobs 2) train each wave."""
    args = ["run", "-p", "tiny", "--set", "rounds=4", "--grid", "prune_rate=0.2,0.97"]
    args += ["--adaptive-seeds", "2:4", "--out", str(tmp_path), "-q", "--jobs", "2"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert seeds_by_curve(tmp_path, "prune_rate") == {0.2: [0, 1, 2, 3], 0.97: [0, 1, 2, 3]}
    assert "curves: 1 no SDD, 1 inconclusive" in err
    code, text, err = run_cli(["status", str(tmp_path)], capsys)
    assert code == 0, err
    # 8 runs of 5 rounds x 2 epochs: the collapse stop saved 16 of the 80 epochs (the 4 runs at
    # prune_rate 0.97 sit at chance in rounds 1 and 2, so rounds 3 and 4 are recorded as
    # collapsed, not trained)
    assert "adaptive seeds 2:4: 64 epochs trained; 16 saved so far (20%)" in text
    assert "of the full grid's 80 epochs (8 runs; 0 not needed)" in text
    assert "runs: 8 done, 0 running, 0 waiting" in text
    sweep_files = list((tmp_path / "sweeps").glob("*.json"))
    assert len(sweep_files) == 1  # one file per study, rewritten after every wave
    assert len(json.loads(sweep_files[0].read_text())["adaptive"]["grid"]) == 8


def test_dry_run_shows_the_first_wave_and_the_full_grid(tmp_path, capsys) -> None:
    args = [*TWO_CURVES, "--adaptive-seeds", "2:5", "--out", str(tmp_path), "--dry-run"]
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    assert "adaptive seeds 2:5: wave 1 trains 4 runs now, 24 epochs left (of 24)" in text
    assert "full grid: 2 curves x 5 seeds = 10 runs, 60 epochs (60 left)" in text
    assert text.count(" new ") == 4 and "seed=4" not in text  # only wave 1's runs listed
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_study_yaml_asks_for_adaptive_seeds(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("epochs: 1\nadaptive_seeds: '1:3'\ngrid:\n  seed: [4]\n")
    args = ["run", "-p", "tiny", "--config", str(study), "--out", str(tmp_path / "o"), "--dry-run"]
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    assert "wave 1 trains 1 runs now" in text and "seed=4" in text
    assert "full grid: 1 curves x 3 seeds = 3 runs, 9 epochs" in text
    # the option wins over the file
    code, text, err = run_cli([*args, "--adaptive-seeds", "2:2"], capsys)
    assert code == 0 and "full grid: 1 curves x 2 seeds" in text and "seed=5" in text


@pytest.mark.parametrize(
    "value, needle",
    [("5:2", "MAX (2) is below START (5)"), ("x", "expects START:MAX"), ("0:3", "at least 1")],
)
def test_a_bad_value_is_one_line(tmp_path, capsys, value, needle) -> None:
    args = [*TWO_CURVES, "--adaptive-seeds", value, "--out", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_error_line(err, ["--adaptive-seeds", needle])
    assert not (tmp_path / "o").exists()


def test_an_unquoted_yaml_value_is_refused(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("adaptive_seeds: 2:5\n")  # YAML 1.1 reads 125
    code, _, err = run_cli(["run", "-p", "tiny", "--config", str(study), "--dry-run"], capsys)
    assert code == 2
    assert_one_error_line(err, ["adaptive_seeds", "quoted '2:5'", "125"])


def test_a_study_files_adaptive_max_is_bounded_like_the_options(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("adaptive_seeds: '1:100000000'\n")
    out = tmp_path / "o"
    code, _, err = run_cli(
        ["run", "-p", "tiny", "--config", str(study), "--out", str(out), "--dry-run"], capsys
    )
    assert code == 2
    assert_one_error_line(err, ["adaptive_seeds", "100,000,000", "MAX ≤ 1,000"])
    assert not out.exists()


def test_parse_adaptive_seeds() -> None:
    assert parse_adaptive_seeds(" 2 : 5 ") == AdaptiveSeeds(2, 5)
    assert str(parse_adaptive_seeds("3:3")) == "3:3"


def test_the_plan_groups_curves_by_everything_but_seed() -> None:
    a = [*_planned(0.0, [0, 1]), *_planned(0.5, [0]), *_planned(0.0, [2])]
    groups = adaptive.curves_of(a)
    assert [[(p.cfg.weight_decay, p.cfg.seed) for p in c] for c in groups] == [
        [(0.0, 0), (0.0, 1), (0.0, 2)],
        [(0.5, 0)],
    ]


def test_the_plan_and_the_analysis_share_one_definition_of_a_curve() -> None:
    """A grid's curves are the analysis's curves of the same runs (``curve_identity``)."""
    import dataclasses

    import pandas as pd

    from sparsedd.analysis.load import add_curve_column
    from sparsedd.config import to_dict

    a = [*_planned(0.0, [0, 1]), *_planned(0.5, [0, 1])]
    a += [dataclasses.replace(p, cfg=dataclasses.replace(p.cfg, prune_rate=0.5)) for p in a[:2]]
    frame = add_curve_column(pd.DataFrame([{**to_dict(p.cfg), "run_id": str(i)} for i, p in
                                           enumerate(a)]))  # fmt: skip
    by_analysis = frame.groupby("curve", sort=False)["run_id"].apply(list).tolist()
    by_plan = [[str(a.index(p)) for p in c] for c in adaptive.curves_of(a)]
    assert by_plan == by_analysis == [["0", "1"], ["2", "3"], ["4", "5"]]


def test_waves_run_on_ray(tmp_path, capsys, monkeypatch) -> None:
    """Each wave goes to the Ray backend like any grid (rows sent to this driver)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sparsedd[ray]')")

    def steered(frame, ids, alpha):
        return "no SDD" if 0 in set(frame[frame.run_id.isin(ids)].weight_decay) else "inconclusive"

    monkeypatch.setattr(adaptive, "curve_verdict", steered)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        args = [*TWO_CURVES, "--adaptive-seeds", "2:3", "--out", str(tmp_path), "-q"]
        code, _, err = run_cli([*args, "--backend", "ray"], capsys)
    finally:
        ray.shutdown()
    assert code == 0, err
    assert seeds_by_curve(tmp_path) == {0.0: [0, 1], 0.5: [0, 1, 2]}


def test_the_looks_spend_alpha_at_most_once_in_all() -> None:
    for start, most in [(2, 5), (1, 4), (3, 3), (2, 2), (2, 10)]:
        spec = adaptive.AdaptiveSeeds(start, most)
        looks = [adaptive.look_alpha(spec, n) for n in range(max(start, 2), most + 1)]
        assert sum(looks) == pytest.approx(0.05) or looks == [0.05]
        assert all(a <= 0.05 for a in looks)
    spec = adaptive.AdaptiveSeeds(2, 5)
    assert adaptive.look_alpha(spec, 5) == 0.025 and adaptive.look_alpha(spec, 2) < 0.025
    assert adaptive.look_alpha(spec, 1) == 0.05  # one seed decides nothing, spends nothing
