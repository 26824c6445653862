"""The measurements recorded for a trained round: accuracies, loss, memorization, entropy."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.data.batches import channel_stats, normalize
from sparsedd.data.datasets import Splits
from sparsedd.models.base import count_parameters
from sparsedd.provenance import provenance
from sparsedd.store.round_record import RoundRecord
from sparsedd.training.entropy import ENTROPY_SAMPLE, activation_entropy
from sparsedd.training.prune import Masks, count_remaining, count_total, layer_density


class LogitSource(Protocol):
    """What evaluation needs of a trainer: logits for a set of images (not to be confused with
    ``export.predict.Predictor``, which classifies image files with an exported model)."""

    def predict(
        self, x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> torch.Tensor: ...


def evaluate_round(
    k: int,
    model: nn.Module,
    masks: Masks,
    trainer: LogitSource,
    splits: Splits,
    device: torch.device,
    epochs: int,
    seconds: float,
) -> RoundRecord:
    """The record of trained round ``k``: sparsity, test/train/validation metrics, memorization
    (accuracy on the noisy labels of the noisy samples), activation entropy, provenance, and
    which test images it got right (``test_correct``: one bit per image, ``np.packbits``)."""
    s = splits
    test_logits = trainer.predict(s.test_x, s.mean, s.std)
    test_hit = test_logits.argmax(1) == s.test_y
    train_pred = trainer.predict(s.train_x, s.mean, s.std).argmax(1)
    hit = train_pred == s.train_y
    pruned = count_total(masks) - count_remaining(masks)
    return RoundRecord(
        round=k,
        sparsity=pruned / count_total(masks),
        params_remaining=count_parameters(model) - pruned,
        test_acc=_mean(test_hit),
        test_loss=float(F.cross_entropy(test_logits, s.test_y)),
        train_acc=_mean(hit),
        train_acc_clean=_mean(hit[~s.train_is_noisy]),
        memorization=_mean(hit[s.train_is_noisy]),
        val_acc=(
            _mean(trainer.predict(s.val_x, s.mean, s.std).argmax(1) == s.val_y)
            if len(s.val_y)
            else None
        ),
        epochs=epochs,
        seconds=seconds,
        n_test=len(s.test_y),
        test_correct=np.packbits(test_hit.cpu().numpy()).tobytes(),
        activation_entropy=activation_entropy(model, _entropy_sample(s, device)),
        layer_density=layer_density(masks),
        **provenance(device),
    )


def _entropy_sample(s: Splits, device: torch.device) -> torch.Tensor:
    """The first ENTROPY_SAMPLE training images of the run's split, normalized."""
    x = s.train_x[:ENTROPY_SAMPLE]
    return normalize(x, channel_stats(s.mean, device), channel_stats(s.std, device))


def _mean(hits: torch.Tensor) -> float | None:
    """Fraction of true entries; None for an empty selection."""
    return float(hits.float().mean()) if hits.numel() else None
