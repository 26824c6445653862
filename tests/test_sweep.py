"""The sweep library: grids, plans (states and epoch costs), studies, placement, status."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import tiny_config
from support import run_cli

from sparsedd.components import resolve_config, run_id
from sparsedd.errors import ConfigError, UserError
from sparsedd.store.results import ResultsStore
from sparsedd.store.run_lock import run_locks
from sparsedd.sweep.jobs import place
from sparsedd.sweep.placement import Slot, local_slots
from sparsedd.sweep.plan import (
    Cell,
    expand,
    format_plan,
    parse_grid_options,
    plan,
    seconds_per_epoch,
    sweep_configs,
)
from sparsedd.sweep.status import sweep_status, write_sweep_file
from sparsedd.sweep.study import study_cells
from sparsedd.training.experiment import Experiment

# ------------------------------------------------------------ grids


def test_grid_options_expand_to_every_combination_with_labels() -> None:
    axes = parse_grid_options(["weight_decay=0,0.1", "seed=0,1,2"])
    combos = expand(axes)
    assert len(combos) == 6
    labelled = sweep_configs([Cell("tiny", axes)])
    assert labelled[0][0] == "weight_decay=0 seed=0"
    assert {(c.weight_decay, c.seed) for _, c in labelled} == {
        (w, s) for w in (0.0, 0.1) for s in (0, 1, 2)
    }


def test_a_grid_value_is_typed_once_and_reaches_the_config_as_typed(monkeypatch) -> None:
    from sparsedd.sweep import plan as plan_module
    from sparsedd.sweep.backends import SweepRequest

    request = SweepRequest("out", grid=("weight_decay=0,0.1", "seed=0,1,2", "augment=none"))
    axes = request.grid_axes
    assert axes is request.grid_axes  # split once per request, then read by every part
    assert axes == {"weight_decay": ["0", "0.1"], "seed": ["0", "1", "2"], "augment": ["none"]}
    typed: list[tuple[str, object]] = []
    original = plan_module.grid_value

    def counted(key: str, value: object) -> object:
        typed.append((key, value))
        return original(key, value)

    monkeypatch.setattr(plan_module, "grid_value", counted)
    labelled = sweep_configs([Cell("tiny", axes)])
    assert len(labelled) == 6 and len(typed) == 6  # 2 + 3 + 1 distinct values, not 6 × 3
    assert labelled[1] == ("weight_decay=0 seed=1 augment=none", labelled[1][1])
    cfg = labelled[1][1]
    assert (cfg.weight_decay, cfg.seed, cfg.augment) == (0.0, 1, "none")
    assert type(cfg.weight_decay) is float and type(cfg.seed) is int
    assert plan_module.grid_value("noise", 0.2) == 0.2  # a YAML file's value, already typed
    assert plan_module.grid_value("compile", "auto") is None  # as --set reads it


def test_a_grid_key_given_twice_is_refused() -> None:
    with pytest.raises(UserError, match="given twice"):
        parse_grid_options(["seed=0", "seed=1"])


def test_runs_named_twice_in_a_study_run_once() -> None:
    cells = [Cell("tiny", {"seed": [0, 1]}), Cell("tiny", {"seed": [1, 2]})]
    assert len(sweep_configs(cells)) == 3


# ------------------------------------------------------------ plans


def test_plan_says_done_partial_and_new_with_epochs_left(tmp_path) -> None:
    done_cfg, partial_cfg, new_cfg = (tiny_config(weight_decay=w) for w in (0.0, 0.1, 0.2))
    Experiment(done_cfg, tmp_path).run()
    exp = Experiment(partial_cfg, tmp_path)
    exp.write_run_files()
    exp.run_round(0, exp.splits)
    per_run = done_cfg.epochs * (done_cfg.rounds + 1)
    planned = plan([("a", done_cfg), ("b", partial_cfg), ("c", new_cfg)], tmp_path)
    assert [p.state for p in planned] == ["done", "partial at round 1", "new"]
    assert [p.epochs_left for p in planned] == [0, per_run - done_cfg.epochs, per_run]
    text = format_plan(planned)
    assert run_id(new_cfg) in text
    assert text.splitlines()[-2] == (
        f"3 runs: 1 done, 1 partial, 1 new; {2 * per_run - done_cfg.epochs} epochs left "
        f"of {3 * per_run}"
    )
    # time left: each run's own recorded pace, else that of runs alike (the new run)
    rows = ResultsStore(tmp_path).round_rows()
    own = [r for r in rows if r["run_id"] == planned[1].id]
    assert planned[1].seconds_per_epoch == pytest.approx(
        sum(r["seconds"] for r in own) / sum(r["round_epochs"] for r in own)
    )
    assert planned[2].seconds_per_epoch == pytest.approx(seconds_per_epoch(rows))
    assert planned[2].seconds_left == pytest.approx(per_run * seconds_per_epoch(rows))
    assert planned[0].seconds_left == 0
    assert text.splitlines()[-1].startswith("time left: about ")


def test_plan_time_is_unknown_without_comparable_rounds(tmp_path) -> None:
    Experiment(tiny_config(), tmp_path).run()
    other = tiny_config(batch_size=32)  # another batch size: another pace
    (planned,) = plan([("x", other)], tmp_path)
    assert planned.seconds_left is None
    assert format_plan([planned]).splitlines()[-1].startswith("time left: unknown")


def test_dry_run_lists_every_run_and_writes_nothing(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli([
        "run", "--preset", "tiny", "--grid", "weight_decay=0,0.1", "--grid",
        "seed=0,1", "--out", str(out), "--dry-run",
    ], capsys)  # fmt: skip
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == ["run", "state", "epochs", "left", "time", "setting"]
    assert len(lines) == 7 and all(" new " in line for line in lines[1:5])
    # the header's names stand over their columns
    assert lines[0].index("state") == lines[1].index("new")
    assert lines[0].index("left") + 4 == lines[1].index("epochs") + 6
    assert lines[-2] == "4 runs: 0 done, 0 partial, 4 new; 24 epochs left of 24"
    assert lines[-1].startswith("time left: unknown (no round")
    assert not out.exists()


# ------------------------------------------------------------ studies


def test_quetu2023_study_spans_the_paper_grid() -> None:
    runs = sweep_configs(study_cells("quetu2023", None, {}))
    assert len(runs) == 6 * 3 * 4 * 3 + 4 * 3  # and ViT on CIFAR-100N: 4 λ × 3 seeds
    assert {(c.model, c.dataset) for _, c in runs} == {
        (m, d) for m in ("vit", "swin", "resnet18") for d in ("cifar10", "cifar100")
    }
    assert {c.noise for _, c in runs if c.noise_kind != "human"} == {0.1, 0.2, 0.5}
    human = [c for _, c in runs if c.noise_kind == "human"]
    assert len(human) == 12 and {c.noise_file for c in human} == {"CIFAR-100_human.pt"}
    # the study holds out validation data so that λ* can be chosen; the presets stay the paper's
    assert {c.val_size for _, c in runs} == {5000}
    assert resolve_config("vit-cifar10").val_size == 0
    # λ grids centre on each optimizer's default
    assert {c.weight_decay for _, c in runs if c.model == "resnet18"} == {0.0, 1e-5, 1e-4, 1e-3}
    assert {c.weight_decay for _, c in runs if c.model == "vit"} == {0.0, 0.003, 0.03, 0.3}
    sliced = sweep_configs(study_cells("quetu2023-vit-cifar10", None, {"seed": ["0"]}))
    assert len(sliced) == 3 * 4
    assert {(c.model, c.dataset, c.seed) for _, c in sliced} == {("vit", "cifar10", 0)}


def test_a_yaml_study_gives_its_grid_and_keys(tmp_path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("epochs: 1\ngrid:\n  weight_decay: [0, 0.05]\n  noise: [0.1, 0.3]\n")
    runs = sweep_configs(study_cells("tiny", str(study), {}))
    assert len(runs) == 4
    assert {c.epochs for _, c in runs} == {1}
    assert {(c.weight_decay, c.noise) for _, c in runs} == {
        (w, n) for w in (0.0, 0.05) for n in (0.1, 0.3)
    }
    # the same file without its grid is still a plain config file
    assert resolve_config("tiny", study, skip_keys=("grid",)).epochs == 1


def test_a_bad_yaml_grid_is_one_line(capsys, tmp_path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("grid: [1, 2]\n")
    code, _, err = run_cli(["run", "--preset", "tiny", "--config", str(study), "--dry-run"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "'grid' must map config keys" in err


# ------------------------------------------------------------ placement


def test_one_slot_per_gpu_and_cores_never_oversubscribed() -> None:
    assert local_slots("auto", None, gpu_count=4, cpu_count=16) == [
        Slot(f"cuda:{i}", 4) for i in range(4)
    ]
    assert [s.device for s in local_slots("cuda", 2, 4, 16)] == ["cuda:0", "cuda:1"]
    assert local_slots("cuda:3", None, 4, 16) == [Slot("cuda:3", 1)]
    for jobs in (1, 2, 3, 5, 64):
        slots = local_slots("cpu", jobs, 0, 4)
        assert len(slots) == min(jobs, 4)
        assert sum(s.threads for s in slots) <= 4
    assert local_slots("auto", None, 0, 8) == [Slot("cpu", 8)]


def test_machine_slots_read_the_gpu_count(monkeypatch) -> None:
    import torch

    from sparsedd.sweep.local import machine_slots

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [s.device for s in machine_slots("auto", None)] == ["cuda:0", "cuda:1", "cuda:2"]


def test_jobs_are_placed_on_their_slot_device_and_threads() -> None:
    runs = [tiny_config(device="auto", threads=0), tiny_config(device="auto", threads=8)]
    placed = [place(cfg, Slot("cuda:2", 3)) for cfg in runs]
    assert [c.device for c in placed] == ["cuda:2", "cuda:2"]
    assert [c.threads for c in placed] == [3, 3]
    assert run_id(placed[0]) == run_id(runs[0])  # where a run executes is not what it is
    assert place(tiny_config(device="cpu"), Slot("cpu", 2)).device == "cpu"


def test_device_takes_cuda_n_and_refuses_other_names() -> None:
    assert tiny_config(device="cuda:1").device == "cuda:1"
    with pytest.raises(ConfigError, match="cuda:N"):
        tiny_config(device="gpu0")


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch, tmp_path) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="has 2 GPU"):
        Experiment(tiny_config(device="cuda:2"), tmp_path)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------ backends and status


def test_ray_backend_without_ray_is_one_line(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, _, err = run_cli(
        ["run", "--preset", "tiny", "--backend", "ray", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'sparsedd[ray]'" in err
    assert not (tmp_path / "o").exists()


def test_mlflow_with_the_ray_backend_is_one_line(capsys, tmp_path) -> None:
    out = tmp_path / "o"
    code, _, err = run_cli(
        ["run", "--preset", "tiny", "--log", "mlflow", "--backend", "ray", "--out", str(out)],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "--log tensorboard with --backend ray" in err and not out.exists()


def test_status_counts_done_running_waiting_and_gives_an_eta(capsys, tmp_path) -> None:
    cfgs = [tiny_config(weight_decay=w) for w in (0.0, 0.1, 0.2)]
    Experiment(cfgs[0], tmp_path).run()
    exp = Experiment(cfgs[1], tmp_path)
    exp.write_run_files()
    exp.run_round(0, exp.splits)
    write_sweep_file(tmp_path, plan([(str(i), c) for i, c in enumerate(cfgs)], tmp_path))
    per_run = cfgs[0].epochs * (cfgs[0].rounds + 1)
    with run_locks([exp.folder]):  # as the process training run 1 holds it
        now = sweep_status(tmp_path)
        code, stdout, _ = run_cli(["status", str(tmp_path)], capsys)
    assert (now.done, now.running, now.waiting) == (1, 1, 1)
    assert (now.rounds_done, now.rounds_total) == (4, 9)
    assert now.epochs_left == 2 * per_run - cfgs[0].epochs
    assert now.eta_s == pytest.approx(now.epochs_left * now.seconds_per_epoch)
    assert code == 0
    assert stdout.startswith("runs: 1 done, 1 running, 1 waiting\nrounds: 4 of 9 done")
    # stopped (lock released), however recently its files changed: waiting
    later = sweep_status(tmp_path)
    assert (later.running, later.waiting) == (0, 2)
    assert not (tmp_path / "runs" / run_id(cfgs[2]) / ".lock").exists()  # status wrote nothing


def test_status_of_a_folder_without_results_is_one_line(capsys, tmp_path) -> None:
    code, _, err = run_cli(["status", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1


def test_local_grid_records_every_run_once(capsys, tmp_path) -> None:
    args = ("run", "--preset", "tiny", "--grid", "seed=0,1", "--out", str(tmp_path), "-q")
    assert run_cli(args, capsys)[0] == 0
    from sparsedd.store.results import ResultsStore

    rows = ResultsStore(tmp_path).round_rows()
    assert len(rows) == 6
    code, stdout, _ = run_cli(["run", *args[1:], "--dry-run"], capsys)
    assert stdout.splitlines()[-2] == "2 runs: 2 done, 0 partial, 0 new; 0 epochs left of 12"
    assert stdout.splitlines()[-1] == "time left: none"
    assert json.loads((next((tmp_path / "sweeps").glob("*.json"))).read_text())
