"""Swin-T (the paper's layout): shape, size, shifted-window masking, pruning, presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sparsedd.components import validate
from sparsedd.errors import ConfigError
from sparsedd.models import swin as swin_module
from sparsedd.models.base import InputSpec, count_parameters, create_model
from sparsedd.models.swin import Swin, shift_mask
from sparsedd.presets import preset_config, preset_description
from sparsedd.training.prune import full_masks, prunable_parameters, prune_round
from sparsedd.training.trainer import Trainer

CIFAR10 = InputSpec(3, 32, 10)
# berniwal's SwinTransformer(hidden_dim=96, layers=(2, 2, 6, 2), heads=(3, 6, 12, 24), channels=3,
# num_classes=10, head_dim=32, window_size=4, downscaling_factors=(2, 2, 2, 1)) has exactly this
# many trainable parameters (it also holds 3,072 shift-mask entries as frozen parameters).
SWIN_T_CIFAR10_PARAMETERS = 26_598_646


@pytest.fixture(scope="module")
def swin() -> nn.Module:
    """The swin-cifar10 preset's model, seeded."""
    torch.manual_seed(0)
    return create_model(preset_config("swin-cifar10"), CIFAR10)


def test_output_shape_and_parameter_count(swin: nn.Module) -> None:
    assert isinstance(swin, Swin)
    n = count_parameters(swin)
    print(f"Swin-T on CIFAR-10: {n:,} parameters")
    assert n == SWIN_T_CIFAR10_PARAMETERS
    with torch.no_grad():
        out = swin.eval()(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_bf16_autocast_forward_stays_near_fp32(swin: nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = swin.eval()(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = swin(x).float()
    assert torch.isfinite(got).all()
    assert (got - want).abs().max() < 0.1 * want.abs().max()


def test_fused_attention_path_equals_the_cpu_math_path(monkeypatch) -> None:
    """The path other devices take (SDPA with the bias and −inf mask as attn_mask) agrees."""
    q, k, v = torch.randn(3, 2, 4, 3, 16, 32).unbind(0)
    bias = torch.randn(16, 16) + shift_mask(8, 8, 4, 2)
    assert torch.isinf(bias).any()
    want = swin_module.window_attention(q, k, v, bias)
    monkeypatch.setattr(swin_module, "CPU_MATH_ATTENTION", False)
    torch.testing.assert_close(swin_module.window_attention(q, k, v, bias), want)


def _tokens_changed_by_corner_pixel(model: Swin, blocks: int) -> torch.Tensor:
    """Stage-1 tokens (16×16) whose output changes when image pixel (0, 0) changes."""
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 0, 0] += 10.0
    stage = model.stages[0][: 1 + blocks]  # patch merging, then `blocks` Swin blocks
    with torch.no_grad():
        a, b = (stage(t.permute(0, 2, 3, 1))[0] for t in (x, y))
    return (a - b).abs().amax(-1) > 1e-5


def test_windows_and_shifted_windows_block_attention_across_their_borders(swin) -> None:
    swin.eval()
    # Pixel (0, 0) lands in token (0, 0). Block 1 (plain 4×4 windows): only window 0 sees it.
    changed = _tokens_changed_by_corner_pixel(swin, blocks=1)
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[:4, :4] = True
    assert torch.equal(changed, want)
    # Block 2 (windows shifted by 2): the window over rows 2..5 and columns 2..5 spreads it to
    # rows and columns 0..5. Tokens 14..15 share the wrapped-around corner window with tokens
    # 0..1 but lie across the image border from them: the shift mask must keep them unchanged.
    changed = _tokens_changed_by_corner_pixel(swin, blocks=2)
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[:6, :6] = True
    assert torch.equal(changed, want)
    # Without the mask the corner window leaks across the border: the test can see a leak.
    shifted = swin.stages[0][2].attn
    saved = shifted.mask.clone()
    try:
        shifted.mask.zero_()
        leaked = _tokens_changed_by_corner_pixel(swin, blocks=2)
    finally:
        shifted.mask.copy_(saved)
    assert leaked[14:, 14:].all() and leaked[14:, :2].all() and leaked[:2, 14:].all()


def test_only_linear_weights_are_prunable(swin: nn.Module) -> None:
    names = set(prunable_parameters(swin))
    linear = {f"{n}.weight" for n, m in swin.named_modules() if isinstance(m, nn.Linear)}
    assert names == linear
    assert "stages.0.0.linear.weight" in names and "head.1.weight" in names
    assert "stages.2.3.attn.to_qkv.weight" in names and "stages.2.3.mlp.2.weight" in names
    protected = {n for n, _ in swin.named_parameters()} - names
    assert "stages.0.1.attn.relative_bias" in protected and "head.0.weight" in protected
    assert not any("norm" in n or "relative_bias" in n or n.endswith(".bias") for n in names)
    prunable = sum(p.numel() for p in prunable_parameters(swin).values())
    assert 0.99 * SWIN_T_CIFAR10_PARAMETERS < prunable < SWIN_T_CIFAR10_PARAMETERS
    # The shift masks and index tables are buffers, outside the state dict and the optimizer.
    assert not any("mask" in k or "bias_index" in k for k in swin.state_dict())


@pytest.mark.parametrize("size", [28, 48, 16])
def test_incompatible_image_size_is_a_config_error(size: int) -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        create_model(preset_config("swin-cifar10"), InputSpec(1, size, 10))


def test_larger_compatible_image_size_builds() -> None:
    torch.manual_seed(0)
    model = create_model(preset_config("swin-cifar10"), InputSpec(1, 64, 3))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 3)


def test_training_step_keeps_pruned_weights_at_zero() -> None:
    cfg = dataclasses.replace(
        preset_config("swin-cifar10"), batch_size=2, precision="fp32", lr=1e-3
    )
    torch.manual_seed(0)
    model = create_model(cfg, CIFAR10)
    masks = full_masks(model)
    params = prunable_parameters(model)
    for name, m in prune_round({n: p.detach() for n, p in params.items()}, masks, 0.5).items():
        masks[name].copy_(m)
    bias_before = model.stages[0][1].attn.relative_bias.detach().clone()
    trainer = Trainer(model, masks, cfg, torch.device("cpu"))
    trainer.refresh_masks()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = torch.tensor([1, 7])
    stats = trainer.train_epoch(x, y, 0, True, (0.5,) * 3, (0.25,) * 3, 0, 1)
    assert stats.loss > 0
    for name, p in params.items():
        assert torch.all(p.detach()[~masks[name]] == 0), name
        assert (p.detach()[masks[name]] != 0).float().mean() > 0.99, name
    assert not torch.equal(bias_before, model.stages[0][1].attn.relative_bias.detach())


@pytest.mark.parametrize(
    ("name", "dataset"), [("swin-cifar10", "cifar10"), ("swin-cifar100", "cifar100")]
)
def test_swin_presets_resolve(name: str, dataset: str) -> None:
    cfg = validate(preset_config(name))
    vit = preset_config(f"vit-{dataset}")
    assert (cfg.model, cfg.dataset) == ("swin", dataset)
    assert dataclasses.replace(cfg, model="vit") == vit  # the ViT protocol, another model
    assert "Swin-T" in preset_description(name)


def test_our_swin_equals_swin_transformer_pytorch_with_the_same_weights() -> None:
    """Same outputs as the paper's package (berniwal's swin-transformer-pytorch) when installed."""
    package = pytest.importorskip("swin_transformer_pytorch")
    torch.manual_seed(0)
    ours = Swin(CIFAR10).eval()
    theirs = package.SwinTransformer(
        hidden_dim=96,
        layers=(2, 2, 6, 2),
        heads=(3, 6, 12, 24),
        channels=3,
        num_classes=10,
        head_dim=32,
        window_size=4,
        downscaling_factors=(2, 2, 2, 1),
        relative_pos_embedding=True,
    ).eval()
    targets = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            targets.pop(_their_name(name)).copy_(p)
    assert all("mask" in n for n in targets)  # every trainable parameter was matched
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def _their_name(name: str) -> str:
    """Our parameter name → swin-transformer-pytorch's."""
    parts = name.split(".")
    if parts[0] == "head":
        return f"mlp_head.{parts[1]}.{parts[2]}"
    stage, index, rest = f"stage{int(parts[1]) + 1}", int(parts[2]), ".".join(parts[4:])
    if index == 0:
        return f"{stage}.patch_partition.{'.'.join(parts[3:])}"
    block = f"{stage}.layers.{(index - 1) // 2}.{(index - 1) % 2}"
    return {
        "attn_norm": f"{block}.attention_block.fn.norm.{rest}",
        "attn": f"{block}.attention_block.fn.fn.{rest.replace('relative_bias', 'pos_embedding')}",
        "mlp_norm": f"{block}.mlp_block.fn.norm.{rest}",
        "mlp": f"{block}.mlp_block.fn.fn.net.{rest}",
    }[parts[3]]
