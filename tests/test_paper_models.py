"""The paper presets build the paper's models: its ViT layout and its ResNet-18 init.

``PaperLayoutViT`` below is a reference written from the layout of the paper's published
``models/vit.py`` (github VGCQ/SDD_ViT), as described in the project's design notes: patches
rearranged (p1 p2 c) and embedded by one Linear with no LayerNorm around it, CLS token and
position embedding from N(0, 1), dropout after adding the position embedding, pre-norm blocks
whose attention (to_qkv without bias) has no dropout on its weights, dropout after the output
projection and inside the MLP, CLS pooling, LayerNorm + Linear head. No vit-pytorch release can
serve as the reference here: the test extra pins today's vit-pytorch (>= 1.6, with the modern
layout that ``vit_layout=modern`` is tested against), and one environment holds one release.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from sparsedd.models.base import InputSpec, count_parameters, create_model
from sparsedd.presets import preset_config

SMALL = dict(patch_size=4, dim=32, depth=2, heads=4, dim_head=8, mlp_dim=48)


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (
            t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, -1)
        )
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)  # no dropout here
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class PaperLayoutViT(nn.Module):
    """The paper's ViT layout, written out plainly (the reference of these tests)."""

    def __init__(self, image: int, patch: int, classes: int, dim: int, depth: int, heads: int,
                 dim_head: int, mlp: int, dropout: float, emb_dropout: float,
                 channels: int = 3) -> None:  # fmt: skip
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            ff = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(dropout),
                               nn.Linear(mlp, dim), nn.Dropout(dropout))  # fmt: skip
            self.layers.append(nn.ModuleList([
                _PreNorm(dim, _Attention(dim, heads, dim_head, dropout)), _PreNorm(dim, ff),
            ]))  # fmt: skip
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        b, c, h, w = img.shape
        p = self.patch
        # 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        x = self.embed(x.reshape(b, (h // p) * (w // p), p * p * c))
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1) + self.pos_embedding
        x = self.dropout(x)
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.mlp_head(x[:, 0])


def _reference_for(cfg, spec: InputSpec) -> PaperLayoutViT:
    return PaperLayoutViT(spec.image_size, cfg.patch_size, spec.num_classes, cfg.dim, cfg.depth,
                          cfg.heads, cfg.dim_head, cfg.mlp_dim, cfg.dropout, cfg.emb_dropout,
                          spec.channels)  # fmt: skip


def _our_name_in_reference(name: str) -> str:
    fixed = {"patch_embed.": "embed.", "head.": "mlp_head."}
    for ours, theirs in fixed.items():
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    if name.startswith("blocks."):
        _, index, rest = name.split(".", 2)
        layer, kind = divmod(int(index), 2)
        if kind == 0:  # our attention block holds its own pre-norm
            inner = rest if rest.startswith("norm.") else "fn." + rest
            return f"layers.{layer}.0.{inner}"
        position, leaf = rest.split(".", 1)  # FeedForward: 0 norm, 1 linear, 4 linear
        if position == "0":
            return f"layers.{layer}.1.norm.{leaf}"
        return f"layers.{layer}.1.fn.{int(position) - 1}.{leaf}"
    return name


def _load_ours_into(reference: nn.Module, ours: nn.Module) -> None:
    target = reference.state_dict()
    mapped = {_our_name_in_reference(n): v for n, v in ours.state_dict().items()}
    assert set(mapped) == set(target)  # same parameters, one to one
    reference.load_state_dict(mapped)


def _paper_small(**overrides):
    return dataclasses.replace(preset_config("vit-cifar10"), **SMALL, **overrides)


def test_paper_vit_has_the_papers_parameter_count() -> None:
    cfg = preset_config("vit-cifar10")
    assert cfg.vit_layout == "paper"
    model = create_model(cfg, InputSpec(3, 32, 10))
    assert count_parameters(model) == 9_523_722
    assert count_parameters(_reference_for(cfg, InputSpec(3, 32, 10))) == 9_523_722


def test_modern_layout_stays_available() -> None:
    cfg = dataclasses.replace(preset_config("vit-cifar10"), vit_layout="modern")
    assert count_parameters(create_model(cfg, InputSpec(3, 32, 10))) == 9_524_842


def test_paper_vit_equals_the_reference_output_for_output() -> None:
    cfg, spec = _paper_small(), InputSpec(3, 32, 10)
    torch.manual_seed(0)
    ours = create_model(cfg, spec).eval()
    reference = _reference_for(cfg, spec).eval()
    _load_ours_into(reference, ours)
    x = torch.randn(6, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_paper_vit_drops_out_where_the_reference_does() -> None:
    """In training mode, with the same seed, the dropout masks fall on the same activations.

    A model with dropout on the attention weights (the modern layout) draws more random
    numbers and gives other outputs.
    """
    spec = InputSpec(3, 32, 10)
    x = torch.randn(6, 3, 32, 32)
    outputs = {}
    for layout in ("paper", "modern"):
        cfg = _paper_small(vit_layout=layout, dropout=0.3, emb_dropout=0.2)
        torch.manual_seed(0)
        ours = create_model(cfg, spec).train()
        torch.manual_seed(1)
        outputs[layout] = ours(x)
    cfg = _paper_small(dropout=0.3, emb_dropout=0.2)
    torch.manual_seed(0)
    ours = create_model(cfg, spec)
    reference = _reference_for(cfg, spec).train()
    _load_ours_into(reference, ours)
    torch.manual_seed(1)
    want = reference(x)
    torch.testing.assert_close(outputs["paper"], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outputs["modern"], want, atol=1e-3)


def test_paper_vit_position_embedding_and_cls_token_are_standard_normal() -> None:
    cfg = preset_config("vit-cifar10")
    torch.manual_seed(0)
    model = create_model(cfg, InputSpec(3, 32, 10))
    pos = model.pos_embedding.detach()
    assert abs(float(pos.mean())) < 0.02 and float(pos.std()) == pytest.approx(1.0, abs=0.02)
    assert model.blocks[0].to_qkv.bias is None


def _std(t: torch.Tensor) -> float:
    return float(t.detach().float().std())


def test_resnet_presets_draw_convs_kaiming_normal_fan_out() -> None:
    cfg = preset_config("resnet18-cifar10")
    assert cfg.init == "kaiming_normal_fan_out"
    torch.manual_seed(0)
    model = create_model(cfg, InputSpec(3, 32, 10))
    conv = model.layers[-1].conv2  # 512 × 512 × 3 × 3
    fan_out = conv.weight.shape[0] * 9
    assert _std(conv.weight) == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    torch.manual_seed(0)
    default = create_model(dataclasses.replace(cfg, init="torch"), InputSpec(3, 32, 10))
    # PyTorch's default conv init has std 1/sqrt(3·fan_in): far from kaiming fan_out's.
    assert _std(default.layers[-1].conv2.weight) == pytest.approx(
        1 / math.sqrt(3 * 512 * 9), rel=0.02
    )


def test_kaiming_normal_init_draws_linear_weights_as_open_lth() -> None:
    cfg = preset_config("lenet-mnist")
    assert cfg.init == "kaiming_normal"
    torch.manual_seed(0)
    model = create_model(cfg, InputSpec(1, 28, 10))
    first = model[1]
    assert _std(first.weight) == pytest.approx(math.sqrt(2.0 / 784), rel=0.02)
    # Biases keep PyTorch's default: uniform within ±1/sqrt(fan_in).
    assert float(first.bias.detach().abs().max()) <= 1 / math.sqrt(784)
