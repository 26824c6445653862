"""A faithful re-creation of the paper's training pipeline, the baseline of bench/speed.py.

What makes it the paper's pipeline (and what our path replaces):

- the model is ``vit_pytorch.ViT`` (the paper's model code: einops rearranges, unfused
  attention as matmul → softmax → matmul);
- data comes from a ``torch.utils.data.DataLoader`` over a map-style dataset that turns each
  sample into a PIL image and applies torchvision transforms one sample at a time
  (RandomCrop(32, padding=4) + RandomHorizontalFlip for CIFAR-shaped data, ToTensor, Normalize);
- pruning is ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``, which keeps a
  ``weight_orig`` and a ``weight_mask`` per layer and recomputes the weight in a forward
  pre-hook at every call;
- fp32 throughout, ``torch.optim.AdamW``, cosine schedule.

It needs the ``bench`` extra: ``pip install -e .[bench]`` (``vit-pytorch``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from sparsedd.config import Config
from sparsedd.models.base import InputSpec


class PilDataset(Dataset):
    """Images kept as HWC uint8 arrays, returned as transformed PIL images (torchvision-style)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.images = np.ascontiguousarray(x.cpu().numpy().transpose(0, 2, 3, 1))
        self.targets = [int(t) for t in y.cpu()]
        self.transform = transform
        self.gray = self.images.shape[3] == 1

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        # As torchvision's MNIST-family and CIFAR datasets do in their __getitem__.
        pil = Image.fromarray(img[:, :, 0], mode="L") if self.gray else Image.fromarray(img)
        return self.transform(pil), self.targets[index]


def paper_transforms(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool
) -> tuple[transforms.Compose, transforms.Compose]:
    """(train, test) per-sample transforms as in the paper's CIFAR code."""
    tail = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    aug = (
        [transforms.RandomCrop(image_size, padding=4), transforms.RandomHorizontalFlip()]
        if augment
        else []
    )
    return transforms.Compose(aug + tail), transforms.Compose(tail)


def paper_model(cfg: Config, spec: InputSpec) -> nn.Module:
    """``vit_pytorch.ViT`` with the same configuration as our ``vit`` model."""
    from vit_pytorch import ViT

    return ViT(
        image_size=spec.image_size,
        patch_size=cfg.patch_size,
        num_classes=spec.num_classes,
        dim=cfg.dim,
        depth=cfg.depth,
        heads=cfg.heads,
        mlp_dim=cfg.mlp_dim,
        pool="cls",
        channels=spec.channels,
        dim_head=cfg.dim_head,
        dropout=cfg.dropout,
        emb_dropout=cfg.emb_dropout,
    )


def our_names_to_paper(name: str, depth: int) -> str:
    """Name of one of our ViT's parameters in vit-pytorch's ViT."""
    fixed = {
        "patch_norm": "to_patch_embedding.1",
        "patch_embed": "to_patch_embedding.2",
        "embed_norm": "to_patch_embedding.3",
        "head.0": "transformer.norm",
        "head.1": "mlp_head",
    }
    for ours, theirs in fixed.items():
        if name.startswith(ours + "."):
            return theirs + name[len(ours) :]
    if name.startswith("blocks."):
        _, index, rest = name.split(".", 2)
        layer, kind = divmod(int(index), 2)
        return f"transformer.layers.{layer}.{kind}." + (rest if kind == 0 else "net." + rest)
    return name  # pos_embedding, cls_token


def load_our_weights(paper: nn.Module, ours: nn.Module, depth: int) -> None:
    """Copy our ViT's weights into vit-pytorch's ViT, so both start from the same function."""
    target = paper.state_dict()
    for name, value in ours.state_dict().items():
        key = our_names_to_paper(name, depth)
        target[key] = value.detach().clone().reshape(target[key].shape)
    paper.load_state_dict(target)


def prune_paper_model(model: nn.Module, amount: float) -> None:
    """Global L1 pruning of every Linear weight with torch.nn.utils.prune, as the paper does."""
    if amount <= 0:
        return
    params = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=amount)


def set_masks_from(model: nn.Module, masks: dict[str, torch.Tensor], depth: int) -> None:
    """Apply our masks (by our parameter names) through torch.nn.utils.prune.custom_from_mask."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules[our_names_to_paper(name, depth).rsplit(".", 1)[0]]
        torch_prune.custom_from_mask(module, "weight", mask.to(torch.float32))


@dataclass
class PaperRun:
    """The paper's loop over one model: DataLoader, AdamW, cosine lr per step, fp32."""

    model: nn.Module
    cfg: Config
    train: PilDataset
    test: PilDataset
    seed: int
    num_workers: int = 0
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.step = 0

    def loader(self, epoch: int) -> DataLoader:
        """The training DataLoader of one epoch (shuffled from a seeded generator)."""
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        return DataLoader(
            self.train,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            generator=g,
            num_workers=self.num_workers,
            drop_last=False,
        )

    def train_epoch(self, epoch: int, total_steps: int, max_steps: int | None = None) -> int:
        """Train one epoch (or ``max_steps`` steps); return the number of images seen."""
        self.model.train()
        torch.manual_seed(self.seed * 1000 + epoch)
        seen = 0
        for i, (xb, yb) in enumerate(self.loader(epoch)):
            if max_steps is not None and i >= max_steps:
                break
            self.train_step(xb, yb, total_steps)
            seen += len(yb)
        return seen

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor, total_steps: int) -> None:
        """One optimizer step on a batch from the DataLoader (cosine lr per step)."""
        lr = self.cfg.lr * 0.5 * (1 + math.cos(math.pi * self.step / max(total_steps, 1)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        xb, yb = xb.to(self.device), yb.to(self.device)
        loss = F.cross_entropy(self.model(xb), yb)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1

    @torch.no_grad()
    def accuracy(self) -> float:
        """Test accuracy through a DataLoader over the per-sample test transforms."""
        self.model.eval()
        hits = total = 0
        for xb, yb in DataLoader(self.test, batch_size=self.cfg.eval_batch_size):
            hits += int((self.model(xb.to(self.device)).argmax(1).cpu() == yb).sum())
            total += len(yb)
        return hits / total


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out
