"""Swin Transformer as trained by Quétu et al. (ICIAP 2023) on CIFAR: registered as ``swin``.

The layout is that of the ``swin-transformer-pytorch`` package (berniwal) that the paper used:
every stage starts with a patch merging (non-overlapping f×f patches, flattened channel-major as
``nn.Unfold`` does, then one Linear), followed by pairs of pre-norm blocks, the second of each pair
with windows shifted by ``window // 2`` and the wrapped-around regions masked. Attention adds one
learned relative-position bias table per block (shared by its heads); heads are ``head_dim`` = 32
wide; the MLP ratio is 4; there is no dropout; the head mean-pools the tokens, then LayerNorm +
Linear. Every weight that the pruner may take is a Linear weight; the bias tables and norms are
plain parameters, so they are never pruned.

Tokens stay channel-last ``(batch, height, width, channels)`` from the first merging to the
pooling, so that no stage permutes back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds


@dataclass(frozen=True)
class SwinSizes:
    """The shape of a Swin: stage widths double from ``hidden``; one entry per stage."""

    hidden: int
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    window: int
    downscaling: tuple[int, ...]
    head_dim: int = 32
    mlp_ratio: int = 4


# Swin-T with the paper's CIFAR settings (32×32 → 16, 8, 4, 4 tokens a side).
SWIN_T_CIFAR = SwinSizes(
    hidden=96, layers=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=4, downscaling=(2, 2, 2, 1)
)

# On the CPU, plain matrix products beat the fused kernel for these 16-token windows. Measured on
# this repo's 2-core CPU (torch 2.14, a second process busy), forward + backward of the attention
# alone at the four stages' shapes for batch 64, 5 times, median of 6: fp32 406 ms (math) vs
# 452 ms (``F.scaled_dot_product_attention`` with the float ``attn_mask``), bf16 125 vs 171 ms;
# the whole model, fp32, batch 64: 9.0 vs 9.6 s a step. Other devices use the fused kernel.
CPU_MATH_ATTENTION = True


def check_image_size(image_size: int, sizes: SwinSizes) -> None:
    """ConfigError unless every stage divides evenly and its token grid tiles into windows."""
    side = image_size
    for factor in sizes.downscaling:
        if side % factor or (side // factor) % sizes.window:
            need = sizes.window
            for f in sizes.downscaling:
                need *= f
            raise ConfigError(
                f"model 'swin' needs an image size that is a multiple of {need} (downscaling "
                f"{sizes.downscaling}, window {sizes.window}); the dataset's images are "
                f"{image_size}×{image_size}: choose another dataset or model"
            )
        side //= factor


def relative_position_index(window: int) -> torch.Tensor:
    """(w², w²) indices into a flattened (2w−1)² table: entry [i, j] is the offset of j from i."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None] + window - 1
    dx = xs[None, :] - xs[:, None] + window - 1
    return dy * (2 * window - 1) + dx


def shift_mask(height: int, width: int, window: int, displacement: int) -> torch.Tensor:
    """(windows, 1, w², w²) additive mask for the cyclically shifted token grid (0 or −inf).

    After rolling the grid by ``−displacement``, the last ``displacement`` rows (and columns)
    hold tokens that wrapped around from the opposite border; a token may only attend to tokens
    of its own region, so windows on the bottom row and right column are split in two (the
    corner one in four). Windows are numbered row by row.
    """
    rows = (torch.arange(height) >= height - displacement).long()
    cols = (torch.arange(width) >= width - displacement).long()
    region = rows[:, None] * 2 + cols[None, :]
    nh, nw = height // window, width // window
    region = region.view(nh, window, nw, window).transpose(1, 2).reshape(nh * nw, window**2)
    blocked = region[:, :, None] != region[:, None, :]
    mask = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))
    return mask.unsqueeze(1)


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v over (..., tokens, head_dim); ``bias`` broadcasts."""
    bias = bias.to(q.dtype)
    if q.device.type == "cpu" and CPU_MATH_ATTENTION:
        dots = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias
        return torch.softmax(dots, dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class WindowAttention(nn.Module):
    """Multi-head attention inside w×w windows, optionally shifted by w // 2."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        window: int,
        grid: tuple[int, int],
        shifted: bool,
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.displacement = window // 2 if shifted else 0
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim)
        # One bias per relative offset, shared by the heads; N(0, 1) as in the paper's code.
        self.relative_bias = nn.Parameter(torch.randn(2 * window - 1, 2 * window - 1))
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)
        mask = shift_mask(*grid, window, self.displacement) if shifted else torch.zeros(())
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, w = self.displacement, self.window
        if d:
            x = torch.roll(x, shifts=(-d, -d), dims=(1, 2))
        b, height, width, _ = x.shape
        nh, nw = height // w, width // w
        qkv = self.to_qkv(x).view(b, nh, w, nw, w, 3, self.heads, self.head_dim)
        # → (3, batch, windows, heads, tokens of a window, head_dim)
        qkv = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(
            3, b, nh * nw, self.heads, w * w, self.head_dim
        )
        bias = self.relative_bias.flatten()[self.bias_index]
        if d:
            bias = bias + self.mask
        out = window_attention(qkv[0], qkv[1], qkv[2], bias)
        out = out.view(b, nh, nw, self.heads, w, w, self.head_dim)
        out = self.to_out(out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, height, width, -1))
        if d:
            out = torch.roll(out, shifts=(d, d), dims=(1, 2))
        return out


class SwinBlock(nn.Module):
    """Pre-norm residual (window attention, then MLP) on channel-last tokens."""

    def __init__(
        self, dim: int, heads: int, sizes: SwinSizes, grid: tuple[int, int], shifted: bool
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, sizes.head_dim, sizes.window, grid, shifted)
        self.mlp_norm = nn.LayerNorm(dim)
        hidden = dim * sizes.mlp_ratio
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class PatchMerging(nn.Module):
    """f×f non-overlapping patches, flattened (channel, row, column) as ``nn.Unfold``, → Linear."""

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(cin * factor * factor, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        f = self.factor
        if f > 1:
            x = x.view(b, h // f, f, w // f, f, c).permute(0, 1, 3, 5, 2, 4)
            x = x.reshape(b, h // f, w // f, c * f * f)
        return self.linear(x)


class Swin(nn.Module):
    """Swin Transformer for square images of ``spec``'s size, classifying into its classes."""

    def __init__(self, spec: InputSpec, sizes: SwinSizes = SWIN_T_CIFAR) -> None:
        super().__init__()
        if any(n % 2 for n in sizes.layers):
            raise ConfigError(f"Swin stages need an even number of blocks, not {sizes.layers}")
        check_image_size(spec.image_size, sizes)
        self.stages = nn.ModuleList()
        cin, side = spec.channels, spec.image_size
        for i, (depth, heads, factor) in enumerate(
            zip(sizes.layers, sizes.heads, sizes.downscaling, strict=True)
        ):
            dim, side = sizes.hidden * 2**i, side // factor
            stage = nn.Sequential(PatchMerging(cin, dim, factor))
            for j in range(depth):
                stage.append(SwinBlock(dim, heads, sizes, (side, side), shifted=j % 2 == 1))
            self.stages.append(stage)
            cin = dim
        self.head = nn.Sequential(nn.LayerNorm(cin), nn.Linear(cin, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # NCHW images → channel-last tokens
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean(dim=(1, 2)))


def _check_input(cfg: Config, spec: InputSpec) -> None:
    check_image_size(spec.image_size, SWIN_T_CIFAR)


@MODELS.register("swin", ModelNeeds(output="head.1", input_check=_check_input))
def _swin(cfg: Config, spec: InputSpec) -> nn.Module:
    """The paper's Swin-T; its sizes are fixed (no config key sets them)."""
    return Swin(spec)
