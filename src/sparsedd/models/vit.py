"""ViT as in the paper (``vit_layout=paper``) or today's vit-pytorch (``modern``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds


def check_patches(cfg: Config, spec: InputSpec) -> None:
    """ConfigError unless ``patch_size`` divides the image size."""
    if spec.image_size % cfg.patch_size:
        raise ConfigError(
            f"config key 'patch_size' ({cfg.patch_size}) must divide the image size "
            f"({spec.image_size})"
        )


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with fused scaled-dot-product kernels.

    ``attn_dropout`` is the dropout on the attention weights (today's vit-pytorch has it, the
    paper's layout does not); ``dropout`` follows the output projection.
    """

    def __init__(
        self, dim: int, heads: int, dim_head: int, dropout: float, attn_dropout: float
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, attn_dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        p = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and n <= CPU_MATH_ATTENTION_MAX_TOKENS:
            out = _math_attention(q, k, v, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


# On the CPU, the fused (flash) kernel is slower than three plain ops for short sequences
# (its bf16 backward by 20× at 17 tokens); the paper's ViTs have 17 to 65 tokens.
CPU_MATH_ATTENTION_MAX_TOKENS = 256


def _math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v with dropout on the weights, as plain matrix products."""
    weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1)
    if p:
        weights = F.dropout(weights, p)
    return weights @ v


class FeedForward(nn.Sequential):
    """Pre-norm MLP block."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )


class ViT(nn.Module):
    """Vision transformer with CLS pooling, pre-norm blocks and a LayerNorm + Linear head.

    ``vit_layout=paper`` is the paper's ``models/vit.py`` (an early vit-pytorch): the
    patch embedding is one Linear, with no LayerNorm before or after it, and attention has no
    dropout on its weights. ``modern`` is today's vit-pytorch: LayerNorms on both sides of the
    patch embedding and dropout on the attention weights. Both draw the position embedding and
    CLS token from N(0, 1) and give ``to_qkv`` no bias.
    """

    def __init__(self, cfg: Config, spec: InputSpec) -> None:
        super().__init__()
        check_patches(cfg, spec)
        p = self.patch = cfg.patch_size
        patch_dim = spec.channels * p * p
        num_patches = (spec.image_size // p) ** 2
        modern = cfg.vit_layout == "modern"
        self.patch_norm = nn.LayerNorm(patch_dim) if modern else nn.Identity()
        self.patch_embed = nn.Linear(patch_dim, cfg.dim)
        self.embed_norm = nn.LayerNorm(cfg.dim) if modern else nn.Identity()
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, cfg.dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)
        self.blocks = nn.ModuleList()
        for _ in range(cfg.depth):
            attn_dropout = cfg.dropout if modern else 0.0
            self.blocks.append(
                Attention(cfg.dim, cfg.heads, cfg.dim_head, cfg.dropout, attn_dropout)
            )
            self.blocks.append(FeedForward(cfg.dim, cfg.mlp_dim, cfg.dropout))
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, spec.num_classes))

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW images → (N, patches, p·p·C), pixels ordered (row, column, channel)."""
        b, c, h, w = x.shape
        p = self.patch
        x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.patch_embed(self.patch_norm(self.patches(x))))
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.emb_dropout(torch.cat((cls, x), dim=1) + self.pos_embedding)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x[:, 0])


#: The config keys a ViT reads besides the common ones: its sizes, dropouts and layout.
VIT_KEYS = frozenset(
    {
        "patch_size",
        "dim",
        "depth",
        "heads",
        "dim_head",
        "mlp_dim",
        "dropout",
        "emb_dropout",
        "vit_layout",
    }
)


@MODELS.register("vit", ModelNeeds(keys=VIT_KEYS, output="head.1", input_check=check_patches))
def _vit(cfg: Config, spec: InputSpec) -> nn.Module:
    return ViT(cfg, spec)
