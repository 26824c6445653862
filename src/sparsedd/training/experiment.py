"""One run: dense training then every pruning round, recorded and resumable.

An :class:`Experiment` owns one run's state (model, masks, folder, store) and the steps the round
engine (``sparsedd.training.engine``) asks of it: restore a round's start, prune, save, evaluate,
record, and settle what is recorded when it resumes (stale rounds, collapsed rounds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsedd.analysis.convergence import fix_hint, not_converged
from sparsedd.components import canonical, run_id
from sparsedd.config import Config, round_epochs, to_dict, to_yaml
from sparsedd.data.datasets import ImageData, Splits, load_dataset, make_splits
from sparsedd.errors import CheckpointError, ConfigError, DivergedError, Interrupted
from sparsedd.models.base import InputSpec, create_model
from sparsedd.remedies import REMEDIES
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.atomic import atomic_write_text, temp_files
from sparsedd.store.results import ResultsStore, RunStore
from sparsedd.store.results_folder import ResultsFolder, check_path_encoding
from sparsedd.training.batched import can_batch
from sparsedd.training.collapse import Outcome, stop_reason
from sparsedd.training.data_identity import (
    check_data_identity,
    data_identity,
    write_data_identity,
)
from sparsedd.training.engine import (
    StopFlag,
    derive_seed,
    diverged_message,
    out_of_memory_hint,
    run_group,
    save_due,
    train_round,
)
from sparsedd.training.evaluate import evaluate_round
from sparsedd.training.prune import (
    Masks,
    excluded_layers,
    full_masks,
)
from sparsedd.training.reporter import Reporter, SilentReporter, rounds_span
from sparsedd.training.round_start import check_mask_sparsity, prune_masks
from sparsedd.training.teacher import default_teacher, load_teacher
from sparsedd.training.trainer import EpochStats, Trainer, check_device

__all__ = [
    "Experiment",
    "Interrupted",
    "Reporter",
    "SilentReporter",
    "StopFlag",
    "derive_seed",
    "run_batched",
    "save_due",
]


def run_batched(
    configs: Sequence[Config],
    out_dir: str | Path,
    reporter: Reporter | None = None,
    stop: StopFlag | None = None,
    store: RunStore | None = None,
) -> None:
    """Run configs that differ only in ``weight_decay`` as one batched model.

    Records into ``out_dir`` exactly the rows and checkpoints that ``Experiment(cfg,
    out_dir).run()`` records for each config (only ``seconds`` is the shared wall time), and
    resumes from what is recorded (in ``store`` when given). The round engine runs them:
    rounds whose runs stand at different points are run one run at a time, and a run that
    collapsed leaves the group.
    """
    configs = list(configs)
    if len(configs) > 1 and not can_batch(configs):
        raise ValueError("run_batched needs configs that differ only in weight_decay")
    stop = stop or StopFlag()
    data = load_dataset(configs[0])  # the runs differ only in λ: one dataset serves all
    run_group([Experiment(c, out_dir, reporter, stop, data=data, store=store) for c in configs])


class Experiment:
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

    # ------------------------------------------------------------ public

    def run(self) -> list[dict[str, Any]]:
        """Train and prune every round not yet recorded; return all recorded rows of the run."""
        run_group([self])
        return [r for r in self.store.round_rows() if r["run_id"] == self.id]

    def note_waiting(self, folder: Path | None = None) -> None:
        """Say that another process trains this run now (two sweeps share it): we wait."""
        self.reporter.note(
            self.id, f"another process is training run {self.id}; waiting for it to finish"
        )

    # ------------------------------------------------------------ what is recorded

    def drop_stale_rounds(self) -> set[int]:
        """Rounds recorded and still resumable; drops rows whose checkpoints were deleted.

        The first round left to train starts from the checkpoint of the round before it (a
        finished or collapsed run keeps its last trained round's); when that file is gone (a
        run folder deleted by hand), the rounds recorded after the last checkpoint still there
        are dropped and recomputed, with one line saying so.
        """
        done = self.store.rounds_done(self.id)
        todo = [k for k in range(self.cfg.rounds + 1) if k not in done]
        if self.collapsed_at is not None:
            todo = [self.collapsed_at + 1]  # the collapsed rounds have no checkpoint
        needed = (todo[0] if todo else self.cfg.rounds + 1) - 1  # a finished run keeps its last
        if needed < 0 or self.files.round_file(needed).exists():
            return set(done)
        keep = needed
        while keep >= 0 and not self.files.round_file(keep).exists():
            keep -= 1
        self.store.drop_rounds(self.id, keep + 1)
        self.files.progress.unlink(missing_ok=True)
        self.reporter.note(
            self.id,
            f"checkpoint {self.files.round_file(needed)} is missing: dropped the "
            f"recorded rounds {keep + 1}..{max(done)} of run {self.id} to recompute them",
        )
        self.pruned_outcomes = {k: v for k, v in self.pruned_outcomes.items() if k <= keep}
        return {r for r in done if r <= keep}

    def write_run_files(self) -> None:
        """Create the run's folder with its config, noisy labels and data identity (refusing
        to resume on other data); register the run.

        The recorded config's ``rounds`` is the most asked for so far: asking for more
        continues the run, asking for fewer keeps every recorded round. Temporary files of
        writes that were killed are removed first.
        """
        check_data_identity(self.folder, self.id, self.data_identity)
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in temp_files(self.folder):
            leftover.unlink(missing_ok=True)
        recorded = max(self.store.rounds_done(self.id), default=0)
        cfg = dataclasses.replace(self.cfg, rounds=max(self.cfg.rounds, recorded))
        atomic_write_text(self.files.config, to_yaml(cfg), ckpt.OUT_FIX)
        if not self.files.labels.exists():
            s = self.splits
            n_val = len(s.val_y)
            ckpt.save_tensors(
                self.files.labels,
                {
                    "dataset_index": s.pool_indices[n_val:],
                    "noisy_label": s.train_y,
                    "clean_label": s.train_clean_y,
                    "is_noisy": s.train_is_noisy,
                    "val_dataset_index": s.pool_indices[:n_val],
                    "val_noisy_label": s.val_y,
                },
                {
                    "noise": self.cfg.noise,
                    "noise_kind": self.cfg.noise_kind,
                    "noise_seed": self.cfg.label_seed,
                },
            )
        write_data_identity(self.folder, self.data_identity)
        self.store.record_run(self.id, to_dict(cfg))

    def note_other_versions(self) -> None:
        """Say in one line when rounds still to run join rounds recorded by another version."""
        from sparsedd import __version__

        versions = self.store.round_versions(self.id)
        if not versions or len(versions) > self.cfg.rounds:
            return
        others = sorted({v or "of unknown version" for v in versions.values() if v != __version__})
        if not others:
            return
        rounds = sorted(k for k, v in versions.items() if v != __version__)
        self.reporter.note(
            self.id,
            f"{rounds_span(rounds)} of this run were recorded by sparsedd "
            f"{', '.join(others)}; this is sparsedd {__version__}, resuming with it",
        )

    # ------------------------------------------------------------ rounds

    def run_round(self, k: int, splits: Splits) -> None:
        """Train round ``k`` from its starting state (resuming if saved), then record it."""
        cfg = self.cfg
        finetune = cfg.retrain == "finetune" and k > 0
        trainer = Trainer(self.model, self.masks, cfg, self.device, finetune, self.teacher_model())
        first_epoch, seconds = self.load_round_start(k, trainer, splits)
        trainer.refresh_masks()
        train_round([self], [trainer], trainer, k, splits, first_epoch, seconds)

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

    def finish_round(
        self,
        k: int,
        trainer: Trainer,
        splits: Splits,
        epochs: int,
        seconds: float,
        execution: str,
    ) -> None:
        """Evaluate the trained round ``k``, save its checkpoint, then record its row."""
        with out_of_memory_hint("eval_batch_size", self.cfg.eval_batch_size):
            record = evaluate_round(
                k, self.model, self.masks, trainer, splits, self.device, epochs, seconds
            )
        record = dataclasses.replace(record, execution=execution)
        if not all(math.isfinite(v) for v in (record.test_loss, record.test_acc) if v is not None):
            raise DivergedError(diverged_message(self.cfg, self.id, k, "evaluation"))
        ckpt.save_tensors(
            self.files.round_file(k),
            ckpt.model_state(self.model, self.masks),
            {"round": k, "run_id": self.id, "input": self.input_meta()},
        )
        self.store.record_round(self.id, record)
        self.files.progress.unlink(missing_ok=True)
        if k:
            self.pruned_outcomes[k] = (record.test_acc, record.layer_density, record.memorization)
        self.reporter.round_done(self.id, record.as_row())
        if k == 0:
            self._check_dense_convergence(epochs)

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

    def input_meta(self) -> dict[str, Any]:
        """What the model takes: image shape, classes (and their names), the normalization."""
        s = self.spec
        return {
            "channels": s.channels,
            "image_size": s.image_size,
            "num_classes": s.num_classes,
            "mean": list(self.splits.mean),
            "std": list(self.splits.std),
            "classes": self.class_names,
        }

    def load_round_start(self, k: int, trainer: Trainer, splits: Splits) -> tuple[int, float]:
        """Restore the state a round starts from; return (first epoch to train, seconds spent)."""
        progress = self.files.progress
        if progress.exists():
            tensors, meta = ckpt.load_tensors(progress)
            saved = meta.get("round")
            if not (type(saved) is int and saved < k and saved in self.store.rounds_done(self.id)):
                # not a leftover of a finished round: it must be this round's
                ckpt.check_meta(progress, meta, self.id, k, round_epochs(self.cfg, k))
                self._check_sparsity(progress, tensors, k, exact=False)
                ckpt.restore(progress, tensors, self.model, self.masks, trainer.optimizer)
                return meta["epoch"] + 1, float(meta.get("seconds", 0.0))
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
        if self.cfg.pruning:  # the control (pruning: false) retrains the same weights
            seed = derive_seed(self.cfg.seed, k, "prune")
            prune_masks(self.model, self.masks, self.kept_dense, self.cfg, seed, trainer, splits)
        if self.cfg.retrain == "lottery":
            self.model.load_state_dict(self.init_state)
        return 0, 0.0

    def _check_sparsity(
        self, path: Path, tensors: dict[str, torch.Tensor], k: int, exact: bool
    ) -> None:
        """Refuse masks that disagree with the recorded rounds (see check_mask_sparsity)."""
        recorded = partial(self.store.round_sparsity, self.id)
        check_mask_sparsity(path, tensors, k, self.masks, recorded, self.cfg.prune_rate, exact)

    def collapse_reason(self, k: int) -> str | None:
        """Why the run stops after trained round ``k`` (collapsed, or a control that settled),
        or None (see ``collapse``)."""
        pruned = [self.pruned_outcomes[j] for j in sorted(self.pruned_outcomes) if j <= k]
        noisy = int(self.splits.train_is_noisy.sum())
        return stop_reason(self.cfg, pruned, self.kept_dense, self.splits.test_y, noisy)

    def save_progress(self, k: int, epoch: int, trainer: Trainer, seconds: float) -> None:
        """Save what resuming needs after ``epoch`` of round ``k``: weights, masks, optimizer."""
        state = ckpt.model_state(self.model, self.masks)
        state.update(ckpt.optimizer_state(trainer.optimizer))
        ckpt.save_tensors(
            self.files.progress,
            state,
            {"round": k, "epoch": epoch, "seconds": seconds, "run_id": self.id},
        )
