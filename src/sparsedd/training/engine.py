"""The one round engine of single and batched runs: resume → prune → train → evaluate → record.

A single run is a group of one; runs that differ only in ``weight_decay`` train as one batched
model where they stand alike (same round, same saved epoch), one by one where they do not. The
engine drives a :class:`RoundTrainer` (a :class:`~sparsedd.training.trainer.Trainer` or a
:class:`~sparsedd.training.batched.BatchedTrainer`) and asks each :class:`Run` (an
``Experiment``) to restore, save, evaluate and record itself.
After each trained round the collapse stop checks the run (``sparsedd.training.collapse``): a
collapsed run (or a control whose accuracy settled) leaves the group, its remaining rounds
recorded as collapsed (settled), not trained.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sparsedd.config import Config, round_epochs
from sparsedd.data.datasets import Splits
from sparsedd.errors import Interrupted, ResourceError
from sparsedd.models.base import count_parameters
from sparsedd.provenance import provenance
from sparsedd.store.results import RunStore
from sparsedd.store.run_folder import RunFolder
from sparsedd.store.run_lock import run_locks
from sparsedd.training.batched import BatchedTrainer
from sparsedd.training.collapse import Outcome, collapsed_rows, stopped_word
from sparsedd.training.prune import Masks, count_total
from sparsedd.training.reporter import Reporter, rounds_span
from sparsedd.training.trainer import EpochStats, Trainer, steps_per_epoch
from sparsedd.training.twin import adopt_dense_round


@dataclass
class StopFlag:
    """Set from a signal handler; the run stops at the next epoch boundary."""

    requested: bool = False


class RoundTrainer(Protocol):
    """What the engine needs of whatever trains a round's epochs (one run, or K batched)."""

    execution: str  # how the epochs are computed (precision, compiled, batched), recorded

    def train_each(self, **inputs: Any) -> list[EpochStats]:
        """One epoch of every run it trains; the stats of each run, in order."""
        ...

    def sync(self) -> None:
        """Bring the runs' own models and optimizers up to date (before a save)."""
        ...

    def refresh_masks(self) -> None:
        """Re-read the runs' masks (after pruning or a restore); zero the pruned weights."""
        ...


class Run(Protocol):
    """What the engine needs of one run (an ``Experiment``): its state and its steps."""

    cfg: Config
    id: str
    stop: StopFlag
    reporter: Reporter
    store: RunStore
    device: torch.device
    splits: Splits
    folder: Path
    files: RunFolder
    model: torch.nn.Module
    masks: Masks
    kept_dense: set[str]
    pruned_outcomes: dict[int, Outcome]  # (test acc, density, memorization) of rounds k ≥ 1
    collapsed_at: int | None  # the trained round the run collapsed in, once it has

    def write_run_files(self) -> None: ...
    def input_meta(self) -> dict[str, Any]: ...
    def drop_stale_rounds(self) -> set[int]: ...
    def note_other_versions(self) -> None: ...
    def note_waiting(self) -> None: ...
    def collapse_reason(self, k: int) -> str | None: ...
    def run_round(self, k: int, splits: Splits) -> None: ...
    def load_round_start(self, k: int, trainer: Trainer, splits: Splits) -> tuple[int, float]: ...
    def check_finite(self, k: int, epoch: int, stats: EpochStats) -> None: ...
    def save_progress(self, k: int, epoch: int, trainer: Trainer, seconds: float) -> None: ...
    def finish_round(
        self, k: int, trainer: Trainer, splits: Splits, epochs: int, seconds: float, execution: str
    ) -> None: ...


def derive_seed(*parts: int | str) -> int:
    """A seed for one (run seed, round, epoch, …) combination, stable across platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:15], 16)


def run_group(runs: Sequence[Run]) -> None:
    """Every round not yet recorded of ``runs`` (one run, or runs differing only in λ).

    Holds each run's folder lock (waiting while another process trains it), writes the run
    files, settles what is recorded (stale or collapsed rounds), then trains round by round.
    """
    stop = runs[0].stop
    by_folder = {e.folder: e for e in runs}
    with run_locks(list(by_folder), lambda: stop.requested, lambda f: by_folder[f].note_waiting()):
        done = []
        for e in runs:
            e.write_run_files()
            done.append(settle_rounds(e))
            e.note_other_versions()
        cfg, device = runs[0].cfg, runs[0].device
        splits = runs[0].splits.to(device)
        for k in range(cfg.rounds + 1):
            group = [
                e for e, d in zip(runs, done, strict=True) if k not in d and e.collapsed_at is None
            ]
            if len(group) == 1:
                group[0].run_round(k, splits)
            elif group:
                _train_together(group, k, splits)
            for e in group:
                check_collapse(e, k)


def _train_together(group: Sequence[Run], k: int, splits: Splits) -> None:
    """Round ``k`` of runs differing only in λ: one batched model where they stand alike."""
    cfg, device = group[0].cfg, group[0].device
    finetune = cfg.retrain == "finetune" and k > 0
    trainers = [Trainer(e.model, e.masks, e.cfg, device, finetune=finetune) for e in group]
    starts = [e.load_round_start(k, t, splits) for e, t in zip(group, trainers, strict=True)]
    if len({first for first, _ in starts}) != 1:
        for e in group:  # reloads its own starting point from its files
            e.run_round(k, splits)
        return
    first_epoch, seconds = starts[0][0], max(s for _, s in starts)
    models, masks = [e.model for e in group], [e.masks for e in group]
    bt = BatchedTrainer(models, masks, [e.cfg for e in group], device, finetune)
    bt.load_optimizer_states([t.optimizer for t in trainers])
    train_round(group, trainers, bt, k, splits, first_epoch, seconds)


def train_round(
    runs: Sequence[Run],
    trainers: Sequence[Trainer],
    trainer: RoundTrainer,
    k: int,
    splits: Splits,
    first_epoch: int,
    seconds: float,
) -> None:
    """The one round loop: epochs, their records and progress saves, then the round's end.

    ``trainer`` trains every run's epochs (a run's own Trainer, or a batched one); ``trainers``
    are the runs' own Trainers, whose models and optimizers a save writes.
    """
    cfg, stop = runs[0].cfg, runs[0].stop
    epochs = round_epochs(cfg, k)
    for run in runs:
        run.reporter.round_started(run.id, k, epochs, first_epoch)
    per_epoch = steps_per_epoch(len(splits.train_y), cfg.batch_size)
    started = time.perf_counter() - seconds
    saved = time.monotonic()  # the round's start is saved: its checkpoint or progress file
    for epoch in range(first_epoch, epochs):
        with out_of_memory_hint("batch_size", cfg.batch_size):
            stats = trainer.train_each(
                **epoch_inputs(splits, cfg),
                seed=derive_seed(cfg.seed, k, epoch),
                first_step=epoch * per_epoch,
                total_steps=epochs * per_epoch,
            )
        for run, st in zip(runs, stats, strict=True):
            run.check_finite(k, epoch, st)
        last = epoch == epochs - 1
        save = last or stop.requested or save_due(cfg, epoch, time.monotonic() - saved)
        if save:
            trainer.sync()
            saved = time.monotonic()
        for run, own, st in zip(runs, trainers, stats, strict=True):
            run.store.record_epoch(run.id, k, epoch, st.loss, st.acc)
            if save:
                run.save_progress(k, epoch, own, time.perf_counter() - started)
            run.reporter.epoch_done(run.id, k, epoch, st)
        if stop.requested and not last:
            if not save:  # the stop came while the epoch was being reported: save it now
                trainer.sync()
                for run, own in zip(runs, trainers, strict=True):
                    run.save_progress(k, epoch, own, time.perf_counter() - started)
            raise Interrupted(f"stopped in round {k} after epoch {epoch + 1}")
    trainer.sync()
    elapsed = time.perf_counter() - started
    for run, own in zip(runs, trainers, strict=True):
        own.refresh_masks()
        run.finish_round(k, own, splits, epochs, elapsed, trainer.execution)


def epoch_inputs(splits: Splits, cfg: Config) -> dict[str, Any]:
    """The inputs of a trainer's ``train_epoch`` other than the epoch's seed and steps."""
    return dict(
        x=splits.train_x,
        y=splits.train_y,
        augment=cfg.augment == "flip_crop",
        mean=splits.mean,
        std=splits.std,
    )


def save_due(cfg: Config, epoch: int, since_save: float) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a progress save: every ``checkpoint_every``
    epochs, once ``checkpoint_seconds`` have passed since the last save (bounded cost)."""
    return (epoch + 1) % cfg.checkpoint_every == 0 and since_save >= cfg.checkpoint_seconds


def diverged_message(cfg: Config, run: str, k: int, where: str) -> str:
    """One line saying where a run diverged and which key to lower: weight_decay where
    λ·lr ≥ 1 (every step then shrinks each weight past zero), else lr."""
    if cfg.weight_decay * cfg.lr >= 1:
        return (
            f"run {run} diverged in round {k}, {where}: the training loss or a weight is not "
            f"finite; nothing is recorded for round {k}; config key 'weight_decay' "
            f"({cfg.weight_decay:g}) times 'lr' ({cfg.lr:g}) is ≥ 1, so every step pushes each "
            f"weight past zero: lower weight_decay below {1 / cfg.lr:g}"
        )
    return (
        f"run {run} diverged in round {k}, {where}: the training loss or a weight is not finite; "
        f"nothing is recorded for round {k}; lower config key 'lr' (now {cfg.lr:g}), "
        f"e.g. --set lr={cfg.lr / 10:g}"
    )


@contextmanager
def out_of_memory_hint(key: str, value: object) -> Iterator[None]:
    """Turn running out of (GPU or CPU) memory into a ResourceError naming the key to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ResourceError(_oom_message("GPU", key, value)) from None
    except RuntimeError as err:
        if "can't allocate memory" not in str(err) and "out of memory" not in str(err):
            raise
        raise ResourceError(_oom_message("CPU", key, value)) from None


def _oom_message(where: str, key: str, value: object) -> str:
    if isinstance(value, int) and value > 1:
        how = f"lower config key {key!r} (now {value}), e.g. --set {key}={value // 2}"
    else:
        how = f"choose a smaller config key {key!r} (now {value!r})"
    return (
        f"out of {where} memory; {how}; progress up to the last saved epoch is kept, "
        f"re-run to resume"
    )


# ---------------------------------------------------------------- the collapse stop


def settle_rounds(run: Run) -> set[int]:
    """The rounds of ``run`` recorded and kept; the rest are trained or recorded as collapsed.

    Collapsed rounds are kept while the collapse stop is on and the trained rounds before them
    still satisfy its rule (asking for more rounds then records more collapsed rounds, without
    training); else they are dropped and the run trains on from its last trained round's
    checkpoint. Rounds whose checkpoints were deleted are dropped (``drop_stale_rounds``).
    """
    outcomes = run.store.round_outcomes(run.id)
    collapsed = sorted(k for k, (flag, *_) in outcomes.items() if flag)
    run.pruned_outcomes = {
        k: (acc, density, memo)
        for k, (flag, acc, density, memo) in outcomes.items()
        if not flag and k
    }
    run.collapsed_at = None
    if collapsed:
        last = collapsed[0] - 1
        if run.cfg.collapse_stop and run.collapse_reason(last) is not None:
            run.collapsed_at = last
        else:
            run.store.drop_rounds(run.id, collapsed[0])
            why = (
                "the rounds before them no longer satisfy its rule"
                if run.cfg.collapse_stop
                else "the collapse stop is off"
            )
            run.reporter.note(
                run.id,
                f"run {run.id}: {rounds_span(collapsed)} were recorded as "
                f"{stopped_word(run.cfg)} "
                f"and {why}: dropped them, training on from round {last}",
            )
    done = run.drop_stale_rounds()
    if 0 not in done and adopt_dense_round(run):
        done.add(0)  # its twin's dense round: the same training
    if run.collapsed_at is not None and run.collapsed_at in done:
        record_collapsed(run, run.collapsed_at, max(done) + 1, None)
        return done | set(range(run.cfg.rounds + 1))
    run.collapsed_at = None  # when its checkpoint was gone, the rounds after it recompute
    trained = max(done, default=0)
    if run.cfg.collapse_stop and trained < run.cfg.rounds and done == set(range(trained + 1)):
        check_collapse(run, trained)  # stopped before the check, or recorded by another version
        if run.collapsed_at is not None:
            return done | set(range(run.cfg.rounds + 1))
    return done


def check_collapse(run: Run, k: int) -> None:
    """After trained round ``k``: when ``run`` has collapsed (and the stop is on), record its
    remaining rounds as collapsed, untrained; the run then leaves the round loop."""
    if not run.cfg.collapse_stop or k == 0 or k not in run.pruned_outcomes:
        return
    reason = run.collapse_reason(k)
    if reason is not None:
        run.collapsed_at = k
        record_collapsed(run, k, k + 1, reason)


def record_collapsed(run: Run, last: int, first: int, reason: str | None) -> None:
    """Record rounds ``first``..``rounds`` of a run that collapsed in trained round ``last``
    (for ``reason``; None: found recorded), with one note; no checkpoint is written."""
    upto = range(first, run.cfg.rounds + 1)
    if not upto:
        return
    sparsity = run.store.round_sparsity(run.id, last) or 0.0
    kept = sum(m.numel() for n, m in run.masks.items() if n in run.kept_dense)
    weights = (count_parameters(run.model), count_total(run.masks), kept)
    n_test = len(run.splits.test_y)
    rate = run.cfg.prune_rate if run.cfg.pruning else 0.0  # a control's sparsity stays 0
    rows = collapsed_rows(last, sparsity, upto, rate, weights, n_test, provenance(run.device))
    run.store.record_rounds(run.id, rows)  # one transaction: the cost of the rows alone
    run.files.progress.unlink(missing_ok=True)
    why, word = f" ({reason})" if reason else "", stopped_word(run.cfg)
    run.reporter.note(
        run.id,
        f"run {run.id} {word} in round {last}{why}: {rounds_span(upto)} recorded as "
        f"{word}, not trained; --set collapse_stop=false trains them",
    )
    for row in rows:  # every recorded round is reported (trackers close the run on its last)
        run.reporter.round_done(run.id, row.as_row())
