"""One run: dense training then every pruning round, recorded and resumable.

:meth:`Experiment.run` is the round loop on one page: it opens the run, then takes each round
not yet recorded through resume (or prune) → train → evaluate → record, and the collapse stop
(:meth:`Experiment.run_round`). The steps follow, in that order. Opening a run (its files; what
is recorded already: stale rounds, collapsed rounds, a twin's dense round) and the collapse stop
are the run's state, in ``run_state.py``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsedd.analysis.convergence import fix_hint, not_converged
from sparsedd.components import canonical, run_id
from sparsedd.config import Config, round_epochs
from sparsedd.data.datasets import ImageData, Splits, load_dataset, make_splits
from sparsedd.errors import CheckpointError, ConfigError, DivergedError, Interrupted
from sparsedd.models.base import InputSpec, create_model
from sparsedd.remedies import REMEDIES
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.results import ResultsStore, RunStore
from sparsedd.store.results_folder import ResultsFolder, check_path_encoding
from sparsedd.store.round_record import RoundRecord
from sparsedd.store.run_lock import run_locks
from sparsedd.training.collapse import Outcome
from sparsedd.training.data_identity import data_identity
from sparsedd.training.engine import (
    StopFlag,
    derive_seed,
    diverged_message,
    out_of_memory_hint,
    save_due,
)
from sparsedd.training.evaluate import evaluate_round
from sparsedd.training.prune import Masks, excluded_layers, full_masks
from sparsedd.training.reporter import Reporter, SilentReporter
from sparsedd.training.round_start import check_mask_sparsity, prune_masks
from sparsedd.training.run_state import RunState
from sparsedd.training.teacher import default_teacher, load_teacher
from sparsedd.training.trainer import EpochStats, Trainer, check_device, steps_per_epoch

__all__ = [
    "Experiment",
    "Interrupted",
    "Reporter",
    "SilentReporter",
    "StopFlag",
    "derive_seed",
    "save_due",
]


class Experiment(RunState):
    """Takes one config through every round, recording into an output folder."""

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path,
        reporter: Reporter | None = None,
        stop: StopFlag | None = None,
        data: ImageData | None = None,
        store: RunStore | None = None,
    ) -> None:
        """Check everything that can fail on bad input; write nothing yet.

        ``data`` may pass the dataset already loaded (runs of a sweep share it); ``store``
        may replace the output folder's database (a Ray worker sends its rows to the driver).
        """
        # Keys the run does not read are reset, so every run of one id records one config.
        self.cfg = cfg = canonical(cfg)
        self.reporter: Reporter = reporter or SilentReporter()
        self.stop = stop or StopFlag()
        self.id = run_id(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = check_device(cfg.device)
        # Everything that can fail on bad input happens before anything is written.
        data = data if data is not None else load_dataset(cfg)
        self.spec = InputSpec(data.channels, data.image_size, data.num_classes)
        self.class_names = data.class_names
        self.splits: Splits = make_splits(data, cfg)
        self.data = data  # a default teacher trained first reads the same data
        self.needs_teacher = REMEDIES.get(cfg.remedy).needs_teacher
        self.teacher: nn.Module | None = None
        if self.needs_teacher and cfg.teacher is not None:
            self.teacher = load_teacher(cfg, out_dir, self.spec).to(self.device)
        self.data_identity = data_identity(cfg, data, self.splits)
        torch.manual_seed(cfg.seed)
        try:
            self.model: nn.Module = create_model(cfg, self.spec)
        except (RuntimeError, MemoryError) as err:  # e.g. widths too large to allocate
            raise ConfigError(
                f"cannot build model {cfg.model!r} with this config "
                f"({str(err).splitlines()[0][:160]}); lower its widths"
            ) from None
        self.init_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.kept_dense = excluded_layers(self.model, cfg.prune_exclude)
        with out_of_memory_hint("model", cfg.model):
            self.model.to(self.device)
        self.masks: Masks = full_masks(self.model)
        self.out_dir = Path(out_dir)
        self.files = ResultsFolder(self.out_dir).run(self.id)
        self.folder = self.files.path
        check_path_encoding(self.out_dir)
        self.store = store if store is not None else ResultsStore(self.out_dir)
        # The collapse stop: outcomes of trained pruning rounds, the round the run collapsed in.
        self.pruned_outcomes: dict[int, Outcome] = {}
        self.collapsed_at: int | None = None
        #: The dense round's training accuracy per epoch trained in this process.
        self.dense_accs: dict[int, float] = {}

    # ------------------------------------------------------------ the round loop

    def run(self) -> list[dict[str, Any]]:
        """Train and prune every round not yet recorded; return all recorded rows of the run.

        Holds the run folder's lock (waiting while another process trains the run), settles
        what is recorded, then runs each round left until the collapse stop ends the run.
        """
        stopped, waiting = (lambda: self.stop.requested), (lambda _: self.note_waiting())
        with run_locks([self.folder], stopped, waiting):
            done = self.open()
            splits = self.splits.to(self.device)
            for k in range(self.cfg.rounds + 1):
                if k not in done and self.collapsed_at is None:
                    self.run_round(k, splits)
        return [r for r in self.store.round_rows() if r["run_id"] == self.id]

    def run_round(self, k: int, splits: Splits) -> None:
        """Round ``k``: resume → prune → train → evaluate → record, then the collapse stop."""
        trainer = self.round_trainer(k)
        first_epoch, seconds = self.resume(k, trainer) or self.prune(k, trainer, splits)
        seconds = self.train(k, trainer, splits, first_epoch, seconds)
        row = self.evaluate(k, trainer, splits, seconds)
        self.record(k, row)
        self.check_collapse(k)

    # ------------------------------------------------------------ the steps, in order

    def round_trainer(self, k: int) -> Trainer:
        """A fresh trainer (optimizer and schedule) for round ``k``."""
        finetune = self.cfg.retrain == "finetune" and k > 0
        teacher = self.teacher_model()
        return Trainer(self.model, self.masks, self.cfg, self.device, finetune, teacher)

    def resume(self, k: int, trainer: Trainer) -> tuple[int, float] | None:
        """Restore round ``k``'s saved progress (weights, masks, optimizer); return (first
        epoch left, seconds spent), or None when none is saved (a leftover of a finished
        round is not round ``k``'s)."""
        progress = self.files.progress
        if not progress.exists():
            return None
        tensors, meta = ckpt.load_tensors(progress)
        saved = meta.get("round")
        if type(saved) is int and saved < k and saved in self.store.rounds_done(self.id):
            return None
        ckpt.check_meta(progress, meta, self.id, k, round_epochs(self.cfg, k))
        self._check_sparsity(progress, tensors, k, exact=False)
        ckpt.restore(progress, tensors, self.model, self.masks, trainer.optimizer)
        return meta["epoch"] + 1, float(meta.get("seconds", 0.0))

    def prune(self, k: int, trainer: Trainer, splits: Splits) -> tuple[int, float]:
        """Round ``k``'s start from nothing saved: round 0 from the initial weights; round
        k ≥ 1 from round k − 1's checkpoint, pruned (a control retrains it unpruned) and, for
        ``retrain=lottery``, rewound to the initial weights. Returns (0, 0.0)."""
        if k == 0:
            self.model.load_state_dict(self.init_state)
            for m in self.masks.values():
                m.fill_(True)
            return 0, 0.0
        previous = self.files.round_file(k - 1)
        if not previous.exists():
            raise CheckpointError(
                f"round {k - 1} is recorded but {previous} is missing; "
                f"delete the run folder {self.folder} to recompute it"
            )
        tensors, meta = ckpt.load_tensors(previous)
        ckpt.check_meta(previous, meta, self.id, k - 1)
        self._check_sparsity(previous, tensors, k - 1, exact=True)
        ckpt.restore(previous, tensors, self.model, self.masks)
        if self.cfg.pruning:
            seed = derive_seed(self.cfg.seed, k, "prune")
            prune_masks(self.model, self.masks, self.kept_dense, self.cfg, seed, trainer, splits)
        if self.cfg.retrain == "lottery":
            self.model.load_state_dict(self.init_state)
        return 0, 0.0

    def train(
        self, k: int, trainer: Trainer, splits: Splits, first_epoch: int, seconds: float
    ) -> float:
        """Train round ``k``'s epochs from ``first_epoch``, recording each and saving progress
        (bounded by ``save_due``; always on a stop); return the round's seconds of training."""
        cfg, epochs = self.cfg, round_epochs(self.cfg, k)
        trainer.refresh_masks()
        self.reporter.round_started(self.id, k, epochs, first_epoch)
        per_epoch = steps_per_epoch(len(splits.train_y), cfg.batch_size)
        augment = cfg.augment == "flip_crop"
        started = time.perf_counter() - seconds
        saved = time.monotonic()  # the round's start is saved: its checkpoint or progress file
        for epoch in range(first_epoch, epochs):
            with out_of_memory_hint("batch_size", cfg.batch_size):
                stats = trainer.train_epoch(
                    splits.train_x,
                    splits.train_y,
                    derive_seed(cfg.seed, k, epoch),
                    augment,
                    splits.mean,
                    splits.std,
                    epoch * per_epoch,
                    epochs * per_epoch,
                )
            self.check_finite(k, epoch, stats)
            last = epoch == epochs - 1
            save = last or self.stop.requested or save_due(cfg, epoch, time.monotonic() - saved)
            if save:
                saved = time.monotonic()
            self.store.record_epoch(self.id, k, epoch, stats.loss, stats.acc)
            if save:
                self.save_progress(k, epoch, trainer, time.perf_counter() - started)
            self.reporter.epoch_done(self.id, k, epoch, stats)
            if self.stop.requested and not last:
                if not save:  # the stop came while the epoch was being reported: save it now
                    self.save_progress(k, epoch, trainer, time.perf_counter() - started)
                raise Interrupted(f"stopped in round {k} after epoch {epoch + 1}")
        return time.perf_counter() - started

    def evaluate(self, k: int, trainer: Trainer, splits: Splits, seconds: float) -> RoundRecord:
        """The row of trained round ``k`` (see ``evaluate_round``); refused if not finite."""
        epochs = round_epochs(self.cfg, k)
        with out_of_memory_hint("eval_batch_size", self.cfg.eval_batch_size):
            row = evaluate_round(
                k, self.model, self.masks, trainer, splits, self.device, epochs, seconds
            )
        row = dataclasses.replace(row, execution=trainer.execution)
        if not all(math.isfinite(v) for v in (row.test_loss, row.test_acc) if v is not None):
            raise DivergedError(diverged_message(self.cfg, self.id, k, "evaluation"))
        return row

    def record(self, k: int, row: RoundRecord) -> None:
        """Save round ``k``'s checkpoint, then record its row (the round is done only then)."""
        ckpt.save_tensors(
            self.files.round_file(k),
            ckpt.model_state(self.model, self.masks),
            {"round": k, "run_id": self.id, "input": self.input_meta()},
        )
        self.store.record_round(self.id, row)
        self.files.progress.unlink(missing_ok=True)
        if k:
            self.pruned_outcomes[k] = (row.test_acc, row.layer_density, row.memorization)
        self.reporter.round_done(self.id, row.as_row())
        if k == 0:
            self._check_dense_convergence(row.epochs)

    # ------------------------------------------------------------ what the steps use

    def teacher_model(self) -> nn.Module | None:
        """The frozen teacher of a distilled run (None without one); the default teacher is
        trained first where it is missing (``teacher.default_teacher``)."""
        if self.needs_teacher and self.teacher is None:
            self.teacher = default_teacher(self.cfg, self.out_dir, self.store, self._train_teacher)
            self.teacher.to(self.device)
        return self.teacher

    def _train_teacher(self, cfg: Config) -> None:
        self.reporter.note(self.id, f"training its teacher first: run {run_id(cfg)}, round 0")
        Experiment(cfg, self.out_dir, None, self.stop, data=self.data, store=self.store).run()

    def check_finite(self, k: int, epoch: int, stats: EpochStats) -> None:
        """Stop the run (recording nothing more) if epoch ``epoch`` of round ``k`` diverged."""
        if stats.finite and math.isfinite(stats.loss):
            if k == 0:  # kept for the dense convergence check at the round's end
                self.dense_accs[epoch] = stats.acc
            return
        raise DivergedError(diverged_message(self.cfg, self.id, k, f"epoch {epoch + 1}"))

    def save_progress(self, k: int, epoch: int, trainer: Trainer, seconds: float) -> None:
        """Save what resuming needs after ``epoch`` of round ``k``: weights, masks, optimizer."""
        state = ckpt.model_state(self.model, self.masks)
        state.update(ckpt.optimizer_state(trainer.optimizer))
        ckpt.save_tensors(
            self.files.progress,
            state,
            {"round": k, "epoch": epoch, "seconds": seconds, "run_id": self.id},
        )

    def _check_sparsity(
        self, path: Path, tensors: dict[str, torch.Tensor], k: int, exact: bool
    ) -> None:
        """Refuse masks that disagree with the recorded rounds (see check_mask_sparsity)."""
        recorded = partial(self.store.round_sparsity, self.id)
        check_mask_sparsity(path, tensors, k, self.masks, recorded, self.cfg.prune_rate, exact)

    def _check_dense_convergence(self, epochs: int) -> None:
        """One note when the dense round's training accuracy was still climbing at its end
        (only when this process trained every one of its epochs)."""
        if sorted(self.dense_accs) != list(range(epochs)):
            return
        why = not_converged([self.dense_accs[e] for e in range(epochs)])
        if why is not None:
            self.reporter.note(
                self.id,
                f"run {self.id}: the dense round has not converged on the noisy labels: {why}, "
                f"so later rounds fall from more training too; "
                f"{fix_hint(round_epochs(self.cfg, 0), control=not self.cfg.pruning)}",
            )
