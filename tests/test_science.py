"""Science correctness: each retraining mode, criterion and mask does what it claims.

Every test here fails if the feature it checks were a no-op.
"""

import pytest
import torch
from conftest import tiny_config
from torch import nn

from sparsedd.store.checkpoint import load_tensors
from sparsedd.training.experiment import Experiment
from sparsedd.training.prune import full_masks, prunable_parameters, prune_round
from sparsedd.training.trainer import FINETUNE_LR_FACTOR, Trainer


def test_lottery_rewinds_every_surviving_weight_to_its_initial_value(tmp_path) -> None:
    cfg = tiny_config(retrain="lottery", rounds=1, epochs=1)
    exp = Experiment(cfg, tmp_path)
    exp.run()  # rounds 0 and 1; round 1 starts from round 0's pruned, rewound weights
    trainer = Trainer(exp.model, exp.masks, exp.cfg, exp.device)
    assert exp.resume(1, trainer) is None  # nothing saved: round 1 starts from pruning
    exp.prune(1, trainer, exp.splits)
    trainer.refresh_masks()
    trained, _ = load_tensors(exp.files.round_file(0))
    pruned_any = False
    for name, param in exp.model.named_parameters():
        init = exp.init_state[name]
        if name in exp.masks:
            mask = exp.masks[name]
            pruned_any |= bool((~mask).any())
            assert torch.equal(param.detach()[mask], init[mask]), name
            assert torch.all(param.detach()[~mask] == 0), name
        else:
            assert torch.equal(param.detach(), init), name
        # the rewind is visible: round 0 had moved every weight away from its initial value
        assert not torch.equal(trained[f"model.{name}"], init), name
    assert pruned_any


class LrLog:
    """Records the learning rate of every optimizer step a Trainer takes."""

    def __init__(self, monkeypatch) -> None:
        self.steps: list[tuple[bool, float]] = []
        original = Trainer.masked_step
        log = self

        def logged(trainer: Trainer, lr: float) -> None:
            log.steps.append((trainer.finetune, trainer.optimizer.param_groups[0]["lr"]))
            original(trainer, lr)

        monkeypatch.setattr(Trainer, "masked_step", logged)


@pytest.mark.parametrize("retrain", ["finetune", "lr_rewind"])
def test_finetune_trains_pruned_rounds_at_its_reduced_lr(tmp_path, monkeypatch, retrain) -> None:
    cfg = tiny_config(retrain=retrain, rounds=1, epochs=2)
    log = LrLog(monkeypatch)
    Experiment(cfg, tmp_path).run()
    per_round = len(log.steps) // 2
    dense, pruned = log.steps[:per_round], log.steps[per_round:]
    assert dense[0][1] == cfg.lr and len({lr for _, lr in dense}) > 1  # cosine from the peak
    if retrain == "finetune":
        assert all(lr == pytest.approx(cfg.lr * FINETUNE_LR_FACTOR) for _, lr in pruned)
    else:
        assert [lr for _, lr in pruned] == [lr for _, lr in dense]


def test_gradient_criterion_prunes_a_different_set_than_magnitude() -> None:
    weights = {"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    grads = {"w": torch.tensor([10.0, 1.0, 1.0, 1.0])}  # |w·g| = 10, 2, 3, 4
    masks = {"w": torch.ones(4, dtype=torch.bool)}
    magnitude = prune_round(weights, masks, 0.25, criterion="magnitude")["w"]
    gradient = prune_round(weights, masks, 0.25, criterion="gradient", gradients=grads)["w"]
    assert magnitude.tolist() == [False, True, True, True]
    assert gradient.tolist() == [True, False, True, True]


def test_gradient_criterion_changes_the_masks_of_a_run(tmp_path) -> None:
    masks = {}
    for criterion in ("magnitude", "gradient"):
        cfg = tiny_config(prune_criterion=criterion, rounds=1, epochs=1)
        exp = Experiment(cfg, tmp_path)
        exp.run()
        state, _ = load_tensors(exp.files.round_file(1))
        masks[criterion] = {k: v for k, v in state.items() if k.startswith("mask.")}
    same = [torch.equal(masks["magnitude"][k], masks["gradient"][k]) for k in masks["magnitude"]]
    assert not all(same)
    assert all(int(m.sum()) > 0 for m in masks["gradient"].values())


class PartlyUsed(nn.Module):
    """Two prunable layers, one of which the forward pass never uses (it gets no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x.flatten(1))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_masks_stay_applied_when_a_masked_layer_gets_no_gradient(optimizer) -> None:
    torch.manual_seed(0)
    model = PartlyUsed()
    masks = full_masks(model)
    assert set(masks) == set(prunable_parameters(model)) == {"used.weight", "unused.weight"}
    masks["used.weight"][:, :2] = False
    cfg = tiny_config(optimizer=optimizer, batch_size=4)
    trainer = Trainer(model, masks, cfg, torch.device("cpu"))
    trainer.refresh_masks()
    x = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8)
    y = torch.randint(0, 3, (8,))
    trainer.train_epoch(x, y, 0, False, (0.5,), (0.25,), first_step=0, total_steps=2)
    weight = model.used.weight
    assert model.unused.weight.grad is None
    pruned = ~masks["used.weight"]
    assert torch.all(weight.grad[pruned] == 0)
    state = trainer.optimizer.state[weight]
    moment = state["exp_avg"] if optimizer == "adamw" else state["momentum_buffer"]
    assert torch.all(moment[pruned] == 0)
    assert torch.any(moment[~pruned] != 0)
