"""Remedies for sparse double descent beside ℓ2: registered components that shape the loss.

A remedy turns the logits of a training batch into per-sample losses; it is chosen by config key
``remedy`` and declares the keys of its own (``Needs.options``), so that ``kd_alpha`` set without
``remedy=distill`` is refused and only the chosen remedy's keys enter the run id. ``none`` is
plain cross-entropy on the noisy labels, ``label_smooth`` cross-entropy against smoothed labels,
``distill`` DSD²'s knowledge distillation (Quétu & Tartaglione, AAAI 2024: ``utils/train.py``,
``train_one_epoch_KD``), which needs a teacher's logits on the same batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sparsedd.config import Config
from sparsedd.options import Option
from sparsedd.registry import Needs, Registry

#: (student logits (..., N, C), labels (N,), teacher logits (N, C) or None, config) → the
#: per-sample losses (..., N). Leading dimensions are batched runs sharing one batch.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, Config], torch.Tensor]


@dataclass(frozen=True)
class Remedy:
    """Per-sample training losses of a batch; ``needs_teacher``: ``loss`` takes a teacher's
    logits (a dense model run in eval mode on the same, augmented, batch)."""

    loss: LossFn
    needs_teacher: bool = False


REMEDIES: Registry[Remedy] = Registry("remedy")


def _flat_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per sample; logits (..., N, C) against labels (N,) shared by the runs."""
    lead = logits.shape[:-2]
    n, c = logits.shape[-2:]
    runs = int(torch.tensor(lead).prod()) if lead else 1
    losses = F.cross_entropy(
        logits.reshape(runs * n, c),
        labels.repeat(runs),
        reduction="none",
        label_smoothing=smoothing,
    )
    return losses.view(*lead, n)


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, cfg: Config
) -> torch.Tensor:
    """Plain cross-entropy on the (noisy) labels: what training does without a remedy."""
    return _flat_ce(logits, labels)


def smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, cfg: Config
) -> torch.Tensor:
    """Cross-entropy against labels smoothed by ``label_smoothing`` (PyTorch's definition:
    the target is (1 − s)·one-hot + s/C)."""
    return _flat_ce(logits, labels, cfg.label_smoothing)


def distillation(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, cfg: Config
) -> torch.Tensor:
    """DSD²'s loss per sample: α·T²·KL + (1 − α)·CE on the noisy labels.

    The KL term is ``F.kl_div(log_softmax(student/T), softmax(teacher/T))`` as DSD²'s
    ``train_one_epoch_KD`` computes it (``reduction='batchmean'``: summed over classes, averaged
    over the batch, which the caller's mean over samples gives), i.e. Σ p_t·(log p_t − log p_s).
    """
    if teacher is None:
        raise ValueError("remedy=distill needs the teacher's logits")
    t, alpha = cfg.kd_temperature, cfg.kd_alpha
    log_student = F.log_softmax(logits / t, dim=-1)
    log_teacher = F.log_softmax(teacher.float() / t, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
    return alpha * t * t * kl + (1.0 - alpha) * _flat_ce(logits, labels)


#: The keys of distillation's own (DSD²'s defaults).
DISTILL_OPTIONS = (
    Option(
        "kd_alpha",
        float,
        0.8,
        "weight α of the distillation term, 1 − α that of the noisy labels' cross-entropy",
        min=0.0,
        max=1.0,
    ),
    Option("kd_temperature", float, 10.0, "softmax temperature T", min_excl=0.0),
    Option(
        "teacher",
        str,
        None,
        "a run id (in the same runs folder), an exported .safetensors, or "
        "MODEL:WEIGHTS.safetensors (a registered model or timm:NAME and its state dict; see "
        "docs/remedies.md); null: the dense round of this run without a remedy, trained first "
        "if missing. The teacher's digest is part of the run id",
    ),
)
LABEL_SMOOTHING = Option(
    "label_smoothing",
    float,
    0.1,
    "smoothing s (the target is (1 − s)·one-hot + s/C)",
    min=0.0,
    max_excl=1.0,
)

REMEDIES.register("none")(Remedy(cross_entropy))
REMEDIES.register("label_smooth", Needs(options=(LABEL_SMOOTHING,)))(Remedy(smoothed_cross_entropy))
REMEDIES.register("distill", Needs(options=DISTILL_OPTIONS))(
    Remedy(distillation, needs_teacher=True)
)
