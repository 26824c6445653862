"""Mask semantics: exact sparsity schedule, protected parameters, pruned weights stay zero."""

import dataclasses

import pytest
import torch
from support import TINY_VIT, tiny_config

from sparsedd.data.datasets import load_dataset, make_splits
from sparsedd.models.base import InputSpec, create_model
from sparsedd.training.prune import (
    count_remaining,
    count_total,
    full_masks,
    layer_density,
    prunable_parameters,
    prune_round,
    sparsity,
)
from sparsedd.training.trainer import Trainer


def vit_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(tiny_config(**TINY_VIT), InputSpec(1, 8, 4))


def test_only_linear_and_conv_weights_are_prunable() -> None:
    model = vit_model()
    names = set(prunable_parameters(model))
    assert names, "a ViT has prunable weights"
    assert all(n.endswith(".weight") for n in names)
    protected = {n for n, _ in model.named_parameters()} - names
    for name in ("pos_embedding", "cls_token", "patch_norm.weight", "patch_embed.bias"):
        assert name in protected
    assert "patch_embed.weight" in names and "head.1.weight" in names
    assert not any("norm" in n for n in names)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("criterion", ["magnitude", "random"])
def test_sparsity_after_k_rounds_is_one_minus_point_eight_to_the_k(scope, criterion) -> None:
    model = vit_model()
    weights = {n: p.detach() for n, p in prunable_parameters(model).items()}
    masks = full_masks(model)
    total = count_total(masks)
    for k in range(1, 16):
        masks = prune_round(weights, masks, 0.2, scope, criterion, seed=k)
        expected = total * 0.8**k
        # each round rounds to the nearest weight; the error stays below one weight per round
        assert abs(count_remaining(masks) - expected) <= k
        assert sparsity(masks) == pytest.approx(1 - 0.8**k, abs=k / total)


def test_pruning_never_revives_and_removes_smallest_magnitudes() -> None:
    model = vit_model()
    weights = {n: p.detach() for n, p in prunable_parameters(model).items()}
    masks = full_masks(model)
    first = prune_round(weights, masks, 0.2)
    second = prune_round(weights, first, 0.2)
    for name in masks:
        assert not (second[name] & ~first[name]).any()
    kept = torch.cat([weights[n][first[n]].abs().flatten() for n in weights])
    dropped = torch.cat([weights[n][~first[n]].abs().flatten() for n in weights])
    assert dropped.max() <= kept.min()


def test_global_pruning_thins_layers_at_different_rates() -> None:
    model = vit_model()
    weights = {n: p.detach() for n, p in prunable_parameters(model).items()}
    masks = full_masks(model)
    for _ in range(5):
        masks = prune_round(weights, masks, 0.2)
    density = layer_density(masks)
    assert max(density.values()) - min(density.values()) > 0.05


def test_pruned_weights_stay_exactly_zero_through_training() -> None:
    cfg = tiny_config(**TINY_VIT, weight_decay=0.1, optimizer="adamw", epochs=3)
    splits = make_splits(load_dataset(cfg), cfg)
    for optimizer, l2_mode in [
        ("adamw", "decoupled"),
        ("adamw", "coupled"),
        ("sgd", "coupled"),
        ("sgd", "decoupled"),
    ]:
        run_cfg = dataclasses.replace(cfg, optimizer=optimizer, l2_mode=l2_mode, lr=0.05)
        model = vit_model()
        masks = full_masks(model)
        params = prunable_parameters(model)
        new = prune_round({n: p.detach() for n, p in params.items()}, masks, 0.5)
        for n, m in new.items():
            masks[n].copy_(m)
        protected_before = model.pos_embedding.detach().clone()
        trainer = Trainer(model, masks, run_cfg, torch.device("cpu"))
        trainer.refresh_masks()
        for epoch in range(2):
            trainer.train_epoch(
                splits.train_x, splits.train_y, epoch, True, splits.mean, splits.std, epoch * 20, 40
            )
        for name, p in params.items():
            assert torch.all(p.detach()[~masks[name]] == 0), (optimizer, l2_mode, name)
            assert (p.detach()[masks[name]] != 0).float().mean() > 0.99
        assert not torch.equal(protected_before, model.pos_embedding.detach())
