"""One run's state in its folder and database: what it finds when it starts, and the collapse
stop, which records rounds without training them.

:class:`RunState` is the part of :class:`~sparsedd.training.experiment.Experiment` that opens a
run (writes its files, settles what is recorded: stale rounds, collapsed rounds, a twin's dense
round) and decides, after each trained round, whether the run has collapsed. The round loop
and its steps are in ``experiment.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsedd import __version__
from sparsedd.config import Config, to_dict, to_yaml
from sparsedd.data.datasets import Splits
from sparsedd.models.base import InputSpec, count_parameters
from sparsedd.provenance import provenance
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.atomic import atomic_write_text, temp_files
from sparsedd.store.results import RunStore
from sparsedd.store.run_folder import RunFolder
from sparsedd.training.collapse import Outcome, collapsed_rows, stop_reason, stopped_word
from sparsedd.training.data_identity import check_data_identity, write_data_identity
from sparsedd.training.prune import Masks, count_total
from sparsedd.training.reporter import Reporter, rounds_span
from sparsedd.training.twin import adopt_dense_round


class RunState:
    """A run's state, opened and settled; ``Experiment`` builds it and trains its rounds."""

    cfg: Config
    id: str
    reporter: Reporter
    store: RunStore
    device: torch.device
    spec: InputSpec
    class_names: list[str] | None
    splits: Splits
    data_identity: dict[str, Any]
    files: RunFolder
    folder: Path
    model: nn.Module
    masks: Masks
    kept_dense: set[str]
    #: (test accuracy, layer density, memorization) of the trained pruning rounds (k ≥ 1)
    pruned_outcomes: dict[int, Outcome]
    #: the trained round the run collapsed in, once it has (the collapse stop)
    collapsed_at: int | None

    # ------------------------------------------------------------ opening a run

    def open(self) -> set[int]:
        """Write the run's files and settle what is recorded; return the rounds done."""
        self.write_run_files()
        done = self.settle_rounds()
        self.note_other_versions()
        return done

    def settle_rounds(self) -> set[int]:
        """The rounds recorded and kept; the rest are trained or recorded as collapsed.

        Collapsed rounds are kept while the collapse stop is on and the trained rounds before
        them still satisfy its rule (asking for more rounds then records more collapsed rounds,
        without training); else they are dropped and the run trains on from its last trained
        round's checkpoint. Rounds whose checkpoints were deleted are dropped
        (``drop_stale_rounds``); a twin's recorded dense round is adopted.
        """
        cfg, outcomes = self.cfg, self.store.round_outcomes(self.id)
        collapsed = sorted(k for k, (flag, *_) in outcomes.items() if flag)
        self.pruned_outcomes = {
            k: (acc, density, memo)
            for k, (flag, acc, density, memo) in outcomes.items()
            if not flag and k
        }
        self.collapsed_at = None
        if collapsed:
            last = collapsed[0] - 1
            if cfg.collapse_stop and self.collapse_reason(last) is not None:
                self.collapsed_at = last
            else:
                self.store.drop_rounds(self.id, collapsed[0])
                why = (
                    "the rounds before them no longer satisfy its rule"
                    if cfg.collapse_stop
                    else "the collapse stop is off"
                )
                self.reporter.note(
                    self.id,
                    f"run {self.id}: {rounds_span(collapsed)} were recorded as "
                    f"{stopped_word(cfg)} and {why}: dropped them, training on from round {last}",
                )
        done = self.drop_stale_rounds()
        if 0 not in done and adopt_dense_round(self):
            done.add(0)  # its twin's dense round: the same training
        every = done | set(range(cfg.rounds + 1))
        if self.collapsed_at is not None and self.collapsed_at in done:
            self.record_collapsed(self.collapsed_at, max(done) + 1, None)
            return every
        self.collapsed_at = None  # when its checkpoint was gone, the rounds after it recompute
        trained = max(done, default=0)
        if cfg.collapse_stop and trained < cfg.rounds and done == set(range(trained + 1)):
            self.check_collapse(trained)  # stopped before the check, or another version's
            if self.collapsed_at is not None:
                return every
        return done

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

    def note_waiting(self) -> None:
        """Say that another process trains this run now (two sweeps share it): we wait."""
        self.reporter.note(
            self.id, f"another process is training run {self.id}; waiting for it to finish"
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

    # ------------------------------------------------------------ the collapse stop

    def check_collapse(self, k: int) -> None:
        """After trained round ``k``: when the run has collapsed (and the stop is on), record
        its remaining rounds as collapsed, untrained; the round loop then ends."""
        if not self.cfg.collapse_stop or k == 0 or k not in self.pruned_outcomes:
            return
        reason = self.collapse_reason(k)
        if reason is not None:
            self.collapsed_at = k
            self.record_collapsed(k, k + 1, reason)

    def collapse_reason(self, k: int) -> str | None:
        """Why the run stops after trained round ``k`` (collapsed, or a control that settled),
        or None (see ``collapse``)."""
        pruned = [self.pruned_outcomes[j] for j in sorted(self.pruned_outcomes) if j <= k]
        noisy = int(self.splits.train_is_noisy.sum())
        return stop_reason(self.cfg, pruned, self.kept_dense, self.splits.test_y, noisy)

    def record_collapsed(self, last: int, first: int, reason: str | None) -> None:
        """Record rounds ``first``..``rounds`` of a run that collapsed in trained round ``last``
        (for ``reason``; None: found recorded), with one note; no checkpoint is written."""
        upto = range(first, self.cfg.rounds + 1)
        if not upto:
            return
        sparsity = self.store.round_sparsity(self.id, last) or 0.0
        kept = sum(m.numel() for n, m in self.masks.items() if n in self.kept_dense)
        weights = (count_parameters(self.model), count_total(self.masks), kept)
        n_test = len(self.splits.test_y)
        rate = self.cfg.prune_rate if self.cfg.pruning else 0.0  # a control's sparsity stays 0
        rows = collapsed_rows(last, sparsity, upto, rate, weights, n_test, provenance(self.device))
        self.store.record_rounds(self.id, rows)  # one transaction: the cost of the rows alone
        self.files.progress.unlink(missing_ok=True)
        why, word = f" ({reason})" if reason else "", stopped_word(self.cfg)
        self.reporter.note(
            self.id,
            f"run {self.id} {word} in round {last}{why}: {rounds_span(upto)} recorded as "
            f"{word}, not trained; --set collapse_stop=false trains them",
        )
        for row in rows:  # every recorded round is reported (trackers close the run on its last)
            self.reporter.round_done(self.id, row.as_row())
