"""The training loop: optimizers, lr schedules, masked steps, evaluation."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.config import Config
from sparsedd.data.batches import channel_stats, epoch_batches, eval_batches
from sparsedd.errors import ConfigError
from sparsedd.remedies import REMEDIES
from sparsedd.training.execution import (
    describe_execution,
    mul_each_,
    quiet_compile_imports,
    resolve_compile,
    resolve_precision,
)
from sparsedd.training.prune import Masks, apply_masks
from sparsedd.training.teacher_cache import epoch_teacher_logits

FINETUNE_LR_FACTOR = 0.01


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> torch.device:
    """The device named by config key ``device``; ConfigError if this machine lacks it."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(
            "config key 'device' is 'cuda' but no CUDA GPU is available; use auto or cpu"
        )
    if (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"config key 'device' is {name!r} but this machine has "
            f"{torch.cuda.device_count()} GPU(s); use cuda:0 to cuda:"
            f"{torch.cuda.device_count() - 1}"
        )
    return device


#: Where λ enters an optimizer step (see :func:`decay_stage`).
DecayStage = Literal["gradient", "before", "after"]


def decay_stage(cfg: Config) -> DecayStage:
    """Where λ enters a step.

    ``gradient``: coupled ℓ2 (``l2_mode=coupled``), λ·p added to the gradient; ``before``:
    AdamW's decoupled decay, p ← p·(1 − lr·λ) before its update; ``after``: decoupled decay
    with SGD (as SGDW), the same shrink after the step.
    """
    if cfg.l2_mode == "coupled":
        return "gradient"
    return "before" if cfg.optimizer == "adamw" else "after"


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """A fresh optimizer of one run, ``cfg.optimizer`` under ``l2_mode``.

    The optimizer applies λ where :func:`decay_stage` says ``gradient`` (Adam, SGD: coupled)
    or ``before`` (AdamW: decoupled); for ``after`` (decoupled SGD) the trainer applies it.
    """
    params = list(model.parameters())
    # On the CPU the fused AdamW kernel replaces the default per-tensor loop of small ops
    # (docs/speed.md, "The defaults, and why"); elsewhere PyTorch's default stands.
    fused = cfg.optimizer == "adamw" and bool(params) and params[0].device.type == "cpu"
    own = cfg.weight_decay if decay_stage(cfg) != "after" else 0.0
    if cfg.optimizer == "adamw":
        adam = torch.optim.AdamW if decay_stage(cfg) == "before" else torch.optim.Adam
        return adam(params, lr=cfg.lr, weight_decay=own, fused=fused or None)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=own)


def lr_at(
    step: int, total_steps: int, cfg: Config, finetune: bool = False, per_epoch: int = 1
) -> float:
    """Learning rate at ``step`` of a round of ``total_steps`` steps, ``per_epoch`` an epoch.

    With ``schedule_every=epoch`` the rate holds for a whole epoch, as a PyTorch scheduler
    stepped once per epoch gives it (the paper's ``main.py``): epoch e of E trains at
    the schedule's value for e/E.
    """
    if finetune:
        return cfg.lr * FINETUNE_LR_FACTOR
    if cfg.schedule_every == "epoch":
        step -= step % per_epoch
    progress = step / max(total_steps, 1)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    return cfg.lr


@torch.no_grad()
def mask_gradients(grads: list[torch.Tensor | None], masks: list[torch.Tensor]) -> None:
    """Zero the pruned entries of every gradient present (a layer may have none this step)."""
    present = [(g, m) for g, m in zip(grads, masks, strict=True) if g is not None]
    if present:
        mul_each_([g for g, _ in present], [m for _, m in present])


@torch.no_grad()
def teacher_logits(teacher: nn.Module | None, xb: torch.Tensor) -> torch.Tensor | None:
    """A frozen teacher's logits (fp32) on the same, augmented, batch; None without one."""
    if teacher is None:
        return None
    teacher.eval()  # DSD²'s teacher_model.eval(): its BatchNorm and dropout never train
    return teacher(xb).float()


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch over ``n`` samples (the last one may be short)."""
    return math.ceil(n / batch_size)


@dataclass
class EpochStats:
    """Mean training loss and accuracy (against the noisy labels) of one epoch."""

    loss: float
    acc: float
    finite: bool = True  # every weight finite at the end of the epoch


class Trainer:
    """Trains one model under fixed masks; knows nothing of rounds or storage."""

    def __init__(
        self,
        model: nn.Module,
        masks: Masks,
        cfg: Config,
        device: torch.device,
        finetune: bool = False,
        teacher: nn.Module | None = None,
        cache_teacher: bool = True,
    ) -> None:
        self.model, self.cfg, self.device, self.finetune = model, cfg, device, finetune
        self.remedy, self.teacher = REMEDIES.get(cfg.remedy), teacher
        # The teacher's logits of unaugmented batches, once per image (teacher_cache).
        self.cache_teacher, self._teacher_out = cache_teacher, None
        if self.remedy.needs_teacher and teacher is None:
            raise ValueError(f"remedy={cfg.remedy} needs a teacher model")
        names = dict(model.named_parameters())
        self.masked_params = [names[n] for n in masks]
        self.masks = masks
        self.optimizer = make_optimizer(model, cfg)
        self.decoupled_sgd = decay_stage(cfg) == "after"
        self.precision = resolve_precision(cfg.precision, device)
        compiled = resolve_compile(cfg.compile, self.precision, device)
        if compiled:
            quiet_compile_imports()
        self.forward = torch.compile(model) if compiled else model
        self.execution = describe_execution(self.precision, compiled)

    def refresh_masks(self) -> None:
        """Re-read the mask values (after a restore) and zero the pruned weights."""
        self._mask_values = [
            m.to(p.dtype) for p, m in zip(self.masked_params, self.masks.values(), strict=True)
        ]
        apply_masks(self.masked_params, self._mask_values)

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast when the config asks for it, else a no-op context."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        seed: int,
        augment: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        first_step: int,
        total_steps: int,
    ) -> EpochStats:
        """One epoch over (x, y): batch order, augmentation and dropout drawn from ``seed``,
        the lr following the round's schedule of ``total_steps`` from ``first_step``."""
        cfg = self.cfg
        self.model.train()
        if self.cache_teacher:
            self._teacher_out = epoch_teacher_logits(
                self.teacher, x, seed, augment, mean, std, cfg.batch_size, self.autocast
            )
        torch.manual_seed(seed)  # dropout
        mean_t, std_t = channel_stats(mean, self.device), channel_stats(std, self.device)
        step, per_epoch = first_step, steps_per_epoch(len(y), cfg.batch_size)
        loss_sum = correct = None
        for xb, yb in epoch_batches(x, y, cfg.batch_size, seed, augment, mean_t, std_t):
            lr = lr_at(step, total_steps, cfg, self.finetune, per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                loss, hits = self._batch_loss(xb, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.masked_step(lr)
            batch_sum = loss.detach() * len(yb)
            loss_sum = batch_sum if loss_sum is None else loss_sum + batch_sum
            correct = hits if correct is None else correct + hits
            step += 1
        if loss_sum is None:
            raise ValueError("an epoch needs at least one training sample")
        # One host sync per epoch: the loss, the accuracy and whether every weight is finite.
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()])
        loss, hits, ok = torch.stack([loss_sum, correct.double(), finite.all().double()]).tolist()
        return EpochStats(loss / len(y), hits / len(y), bool(ok))

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean loss and its count of correct predictions (of the noisy labels)."""
        logits = self.forward(xb)
        if self.cfg.remedy == "none":  # as before remedies existed: bit for bit the same runs
            loss = F.cross_entropy(logits.float(), yb)
        else:
            teacher = (
                next(self._teacher_out)
                if self._teacher_out is not None
                else teacher_logits(self.teacher, xb)
            )
            loss = self.remedy.loss(logits.float(), yb, teacher, self.cfg)
            loss = loss.mean()
        return loss, (logits.argmax(1) == yb).sum()

    def masked_step(self, lr: float) -> None:
        """One optimizer step under the masks: mask the gradients, step, apply decoupled SGD's
        decay after it (as SGDW does), and zero the pruned weights again."""
        with torch.no_grad():
            mask_gradients([p.grad for p in self.masked_params], self._mask_values)
        self.optimizer.step()
        with torch.no_grad():
            if self.decoupled_sgd and self.cfg.weight_decay:
                mul_each_(list(self.model.parameters()), 1.0 - lr * self.cfg.weight_decay)
            # Momentum and weight decay would revive pruned weights: zero them after every step.
            mul_each_(self.masked_params, self._mask_values)

    def predict_with_grad(
        self, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> torch.Tensor:
        """Logits (fp32) for ``x`` in one batch, keeping the autograd graph."""
        mean_t, std_t = channel_stats(mean, self.device), channel_stats(std, self.device)
        with self.autocast():
            return self.forward(next(eval_batches(x, len(x), mean_t, std_t))).float()

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> torch.Tensor:
        """Logits (fp32) for every image of ``x``, in order."""
        self.model.eval()
        mean_t, std_t = channel_stats(mean, self.device), channel_stats(std, self.device)
        outs = []
        for xb in eval_batches(x, self.cfg.eval_batch_size, mean_t, std_t):
            with self.autocast():
                outs.append(self.forward(xb).float())
        if not outs:
            return torch.zeros(0, 1, device=self.device)
        return torch.cat(outs)
