"""Batched λ: runs that differ only in ``weight_decay`` train side by side as one batched model.

K copies of a model are stacked parameter by parameter (a leading dimension of size K) and run
with ``torch.func.functional_call`` under ``torch.vmap``: every batch is drawn, augmented and
normalized once and shared by the K runs, and each operation runs once over the K models, so the
per-operation overhead that dominates a small model's step is paid once instead of K times.

Each run keeps its own masks, its own optimizer state and its own λ; weight decay is applied
per run (decoupled: ``p ← p·(1 − lr·λ_k)`` before the optimizer's step, as AdamW does; coupled:
``g ← g + λ_k·p``), so the per-round results equal those of separate runs (fp32, same seed) up to
floating-point rounding of the batched matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsedd.config import Config, to_dict
from sparsedd.data.batches import channel_stats, eval_batches
from sparsedd.remedies import REMEDIES
from sparsedd.training.execution import describe_execution, mul_each_, resolve_precision
from sparsedd.training.prune import Masks
from sparsedd.training.trainer import (
    EpochStats,
    build_optimizer,
    decay_stage,
    masked_step,
    run_epoch,
)

# Keys that may differ between the runs of one batch.
BATCHABLE_KEYS = frozenset({"weight_decay"})


def batch_key(cfg: Config) -> tuple:
    """Configs with equal keys can train as one batched model (they differ only in λ).

    A remedy with a teacher keeps λ in the key: each λ has its own teacher by default, and a
    batched model shares one batch's logits, not K teachers, so such runs train one by one.
    """
    shared = BATCHABLE_KEYS - (
        {"weight_decay"} if REMEDIES.get(cfg.remedy).needs_teacher else set()
    )
    return tuple(sorted((k, repr(v)) for k, v in to_dict(cfg).items() if k not in shared))


def can_batch(cfgs: Sequence[Config]) -> bool:
    """Whether ``cfgs`` differ only in ``weight_decay`` (and there are at least two)."""
    return len(cfgs) > 1 and len({batch_key(c) for c in cfgs}) == 1


class BatchedTrainer:
    """Trains K same-shaped models under their own masks and λ, sharing every batch.

    The models' parameters are copied into stacked tensors at construction; call
    :meth:`write_back` to copy the trained values back into the models.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        masks: Sequence[Masks],
        cfgs: Sequence[Config],
        device: torch.device,
        finetune: bool = False,
    ) -> None:
        if len({batch_key(c) for c in cfgs}) != 1:
            raise ValueError("batched runs must differ only in weight_decay")
        if not (len(models) == len(masks) == len(cfgs)) or not models:
            raise ValueError("need one model, one set of masks and one config per run")
        self.models, self.cfg, self.device, self.finetune = list(models), cfgs[0], device, finetune
        self.k = len(models)
        self.precision = resolve_precision(self.cfg.precision, device)
        self.execution = describe_execution(self.precision, compiled=False, batched=self.k)
        self.base = models[0]
        self.names = [n for n, _ in self.base.named_parameters()]
        per_model = [dict(m.named_parameters()) for m in models]
        self.params = {
            n: torch.stack([p[n].detach() for p in per_model]).requires_grad_(True)
            for n in self.names
        }
        per_model_buffers = [dict(m.named_buffers()) for m in models]
        self.buffers = {
            n: torch.stack([b[n] for b in per_model_buffers]) for n, _ in self.base.named_buffers()
        }
        self.masks = list(masks)
        self.mask_names = list(masks[0])
        lambdas = torch.tensor([c.weight_decay for c in cfgs], dtype=torch.float64)
        self.lambdas = lambdas.to(device)
        self._any_decay = any(c.weight_decay for c in cfgs)  # known on the host: no sync
        # The runs' optimizer over the stacked tensors; λ is applied per run by the step.
        self.optimizer = build_optimizer(list(self.params.values()), self.cfg, 0.0)
        self.stage = decay_stage(self.cfg)
        self.run_optimizers: list[torch.optim.Optimizer] = []
        self._vforward = torch.vmap(self._forward_one, in_dims=(0, 0, None), randomness="same")
        self.refresh_masks()

    # ------------------------------------------------------------ setup

    def train_each(self, **inputs: Any) -> list[EpochStats]:
        """One epoch of all K runs (see :meth:`train_epoch`); the stats of each run."""
        return self.train_epoch(**inputs)

    def sync(self) -> None:
        """Write the trained models and optimizer states back into the runs (before a save)."""
        self.write_back()
        self.store_optimizer_states(self.run_optimizers)

    def _forward_one(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def refresh_masks(self) -> None:
        """Re-read the runs' masks (after pruning or a restore) and zero the pruned weights."""
        self.masked = [self.params[n] for n in self.mask_names]
        self._mask_values = [
            torch.stack([m[n] for m in self.masks]).to(self.params[n].dtype)
            for n in self.mask_names
        ]
        with torch.no_grad():
            mul_each_(self.masked, self._mask_values)

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast when the config asks for it, else a no-op context."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def _factors(self, values: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Per-run scalars shaped to broadcast over a stacked tensor like ``p``."""
        return values.to(p.dtype).view(-1, *([1] * (p.dim() - 1)))

    # ------------------------------------------------------------ training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of all K models for one shared batch: shape (K, batch, classes)."""
        return self._vforward(self.params, self.buffers, x)

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
    ) -> list[EpochStats]:
        """One epoch of all K runs over shared batches; the stats of each run."""
        self.base.train()
        loss_sum, correct = run_epoch(
            self, x, y, seed, augment, mean, std, first_step, total_steps, self._batch_loss
        )
        n = len(y)
        # Per run: are all of its weights finite? (dimension 0 of a stacked tensor is the run)
        finite = torch.stack(
            [p.detach().isfinite().flatten(1).all(1) for p in self.params.values()]
        )
        ok = finite.all(0)
        return [
            EpochStats(float(s) / n, float(c) / n, bool(f))
            for s, c, f in zip(loss_sum.cpu(), correct.cpu(), ok.cpu(), strict=True)
        ]

    def _batch_loss(
        self, xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The summed loss to differentiate, and each run's mean loss and correct count."""
        k = self.k
        logits = self.forward(xb).float()
        if self.cfg.remedy == "none":  # as before remedies existed: bit for bit the same runs
            losses = F.cross_entropy(
                logits.reshape(k * len(yb), -1), yb.repeat(k), reduction="none"
            ).view(k, -1)
        else:  # batch_key keeps remedies with a teacher out of batched models
            losses = REMEDIES.get(self.cfg.remedy).loss(logits, yb, None, self.cfg)
        losses = losses.mean(1)
        return losses.sum(), losses, (logits.argmax(2) == yb).sum(1)

    def masked_step(self, lr: float) -> None:
        """The shared masked step, with each run's own λ applied around it."""
        masked_step(
            self.optimizer,
            self.masked,
            self._mask_values,
            lr,
            before=self._decay_before,
            after=self._decay_after,
        )

    def _decay_before(self, lr: float) -> None:
        params = list(self.params.values())
        if not self._any_decay:
            return
        if self.stage == "gradient":
            for p in params:
                if p.grad is not None:
                    p.grad.addcmul_(p, self._factors(self.lambdas, p))
        elif self.stage == "before":  # AdamW decays before its update
            factors = 1.0 - lr * self.lambdas
            mul_each_(params, [self._factors(factors, p) for p in params])

    def _decay_after(self, lr: float) -> None:
        params = list(self.params.values())
        if self.stage == "after":
            factors = 1.0 - lr * self.lambdas
            mul_each_(params, [self._factors(factors, p) for p in params])

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> torch.Tensor:
        """Logits (fp32) of every run for every image of ``x``: shape (K, N, classes)."""
        self.base.eval()
        mean_t, std_t = channel_stats(mean, self.device), channel_stats(std, self.device)
        outs = [
            self._predict_batch(xb)
            for xb in eval_batches(x, self.cfg.eval_batch_size, mean_t, std_t)
        ]
        return torch.cat(outs, dim=1)

    def _predict_batch(self, xb: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.forward(xb).float()

    # ------------------------------------------------------------ exchange with single runs

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained parameters and buffers of run k into ``models[k]``."""
        for k, model in enumerate(self.models):
            for n, p in model.named_parameters():
                p.copy_(self.params[n][k])
            for n, b in model.named_buffers():
                b.copy_(self.buffers[n][k])

    def load_optimizer_states(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Stack per-run optimizer states (a resumed round) into the batched optimizer; a
        :meth:`sync` writes the batched state back into ``optimizers``."""
        self.run_optimizers = list(optimizers)
        stacked = list(self.params.values())
        per_run = [list(opt.param_groups[0]["params"]) for opt in optimizers]
        for i, p in enumerate(stacked):
            states = [
                opt.state.get(params[i], {})
                for opt, params in zip(optimizers, per_run, strict=True)
            ]
            if not all(states):
                continue
            entry = {}
            for key, value in states[0].items():
                if torch.is_tensor(value) and value.dim() > 0:
                    entry[key] = torch.stack([s[key] for s in states]).to(p.device)
                else:
                    entry[key] = value.clone() if torch.is_tensor(value) else value
            self.optimizer.state[p] = entry

    def store_optimizer_states(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Write the batched optimizer state of run k into ``optimizers[k]`` (for checkpoints)."""
        stacked = list(self.params.values())
        for k, opt in enumerate(optimizers):
            params = list(opt.param_groups[0]["params"])
            for i, p in enumerate(stacked):
                state = self.optimizer.state.get(p)
                if not state:
                    continue
                opt.state[params[i]] = {
                    key: (
                        value[k].clone()
                        if torch.is_tensor(value) and value.dim() > 0
                        else (value.clone() if torch.is_tensor(value) else value)
                    )
                    for key, value in state.items()
                }


__all__ = ["BATCHABLE_KEYS", "BatchedTrainer", "batch_key", "can_batch"]
