"""On-device batches: seeded shuffles, whole-batch flip + crop, normalization."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

CROP_PADDING = 4


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW images → float, scaled to [0, 1] and standardized per channel."""
    return (x.float() / 255.0 - mean) / std


def channel_stats(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel constants shaped to broadcast over NCHW batches."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def flip_crop(x: torch.Tensor, flips: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Flip the images where ``flips`` is set, then crop each at ``offsets`` from a zero pad.

    ``x`` is NCHW, ``flips`` a bool vector, ``offsets`` an (N, 2) integer tensor of row and
    column offsets in ``[0, 2·CROP_PADDING]``: the same as torchvision's RandomHorizontalFlip
    and RandomCrop(size, padding) applied to each image, but for the whole batch at once.
    """
    x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    n, _, h, w = x.shape
    padded = F.pad(x, (CROP_PADDING,) * 4)
    rows = (offsets[:, 0:1] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (offsets[:, 1:2] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chans = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]


def epoch_order(n: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """The sample order of the epoch drawn from ``seed``, and the generator its augmentation
    draws from next (a distilled run's cached teacher logits follow the same order)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g), g


def epoch_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seed: int,
    augment: bool,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented, normalized batches drawn from ``seed``.

    All random numbers of the epoch are drawn up front on the CPU and moved to the
    device once, so the loop itself never waits on the host.
    """
    n = len(y)
    order, g = epoch_order(n, seed)
    order = order.to(x.device)
    if augment:
        flips = (torch.rand(n, generator=g) < 0.5).to(x.device)
        offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=g).to(x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        # index_select, not x[idx]: the same rows, ~40x faster on the CPU for a uint8 batch.
        xb = x.index_select(0, idx).float() / 255.0
        if augment:  # pad with black pixels before standardizing, as torchvision does
            xb = flip_crop(xb, flips.index_select(0, idx), offsets.index_select(0, idx))
        yield (xb - mean) / std, y.index_select(0, idx)


def eval_batches(
    x: torch.Tensor, batch_size: int, mean: torch.Tensor, std: torch.Tensor
) -> Iterator[torch.Tensor]:
    """Normalized batches of ``x`` in order, without augmentation."""
    for start in range(0, len(x), batch_size):
        yield normalize(x[start : start + batch_size], mean, std)
