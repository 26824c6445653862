"""One run: dense training then every pruning round, recorded and resumable."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sparsedd.components import canonical, run_id
from sparsedd.config import Config, to_dict, to_yaml
from sparsedd.data.batches import channel_stats, normalize
from sparsedd.data.datasets import ImageData, Splits, load_dataset, make_splits
from sparsedd.errors import (
    CheckpointError,
    ConfigError,
    DivergedError,
    Interrupted,
    ResourceError,
)
from sparsedd.models.base import InputSpec, count_parameters, create_model
from sparsedd.provenance import provenance
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.atomic import atomic_write_text, temp_files
from sparsedd.store.results import ResultsStore, RunStore
from sparsedd.store.run_lock import run_locks
from sparsedd.training.data_identity import (
    check_data_identity,
    data_identity,
    write_data_identity,
)
from sparsedd.training.entropy import ENTROPY_SAMPLE, activation_entropy
from sparsedd.training.prune import (
    CRITERIA,
    Masks,
    count_remaining,
    count_total,
    excluded_layers,
    full_masks,
    layer_density,
    prunable_parameters,
    prune_round,
)
from sparsedd.training.trainer import EpochStats, Trainer, check_device, steps_per_epoch

PROGRESS_FILE = "progress.safetensors"


class Reporter(Protocol):
    """Receives progress events of a run (the CLI draws bars and summary lines).

    A reporter may also have ``note(run, message)``: one line worth telling a person (e.g.
    that recorded rounds came from another sparsedd version); it is called when present.
    """

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None: ...
    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None: ...
    def round_done(self, run: str, row: dict[str, Any]) -> None: ...


class SilentReporter:
    """A reporter that reports nothing."""

    def round_started(self, run: str, round_: int, epochs: int, first_epoch: int) -> None:
        """Ignore the event."""

    def epoch_done(self, run: str, round_: int, epoch: int, stats: EpochStats) -> None:
        """Ignore the event."""

    def round_done(self, run: str, row: dict[str, Any]) -> None:
        """Ignore the event."""


@dataclass
class StopFlag:
    """Set from a signal handler; the run stops at the next epoch boundary."""

    requested: bool = False


def derive_seed(*parts: int | str) -> int:
    """A seed for one (run seed, round, epoch, …) combination, stable across platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:15], 16)


def run_dir(out_dir: Path, cfg: Config) -> Path:
    """Folder of a run inside an output folder."""
    return Path(out_dir) / "runs" / run_id(cfg)


def round_file(folder: Path, round_: int) -> Path:
    """Checkpoint (weights and masks) written at the end of a round."""
    return folder / f"round_{round_:03d}.safetensors"


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
        self.reporter = reporter or SilentReporter()
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
        self.folder = run_dir(self.out_dir, cfg)
        check_path_encoding(self.out_dir)
        self.store = store if store is not None else ResultsStore(self.out_dir)

    # ------------------------------------------------------------ public

    def run(self) -> list[dict[str, Any]]:
        """Train and prune every round not yet recorded; return all recorded rows of the run."""
        with run_locks([self.folder], lambda: self.stop.requested, self.note_waiting):
            self.write_run_files()
            done = self.drop_stale_rounds()
            self.note_other_versions()
            splits = self.splits.to(self.device)
            for k in range(self.cfg.rounds + 1):
                if k not in done:
                    self.run_round(k, splits)
        return [r for r in self.store.round_rows() if r["run_id"] == self.id]

    def note_waiting(self, folder: Path) -> None:
        """Say that another process trains this run now (two sweeps share it): we wait."""
        note = getattr(self.reporter, "note", None)
        if note is not None:
            note(self.id, f"another process is training run {self.id}; waiting for it to finish")

    # ------------------------------------------------------------ rounds

    def drop_stale_rounds(self) -> set[int]:
        """Rounds recorded and still resumable; drops rows whose checkpoints were deleted.

        The first round left to train starts from the checkpoint of the round before it (a
        finished run keeps its last round's); when that file is gone (a run folder deleted by
        hand), the rounds recorded after the last checkpoint still there are dropped and
        recomputed, with one line saying so.
        """
        done = self.store.rounds_done(self.id)
        todo = [k for k in range(self.cfg.rounds + 1) if k not in done]
        needed = (todo[0] if todo else self.cfg.rounds + 1) - 1  # a finished run keeps its last
        if needed < 0 or round_file(self.folder, needed).exists():
            return done
        keep = needed
        while keep >= 0 and not round_file(self.folder, keep).exists():
            keep -= 1
        self.store.drop_rounds(self.id, keep + 1)
        (self.folder / PROGRESS_FILE).unlink(missing_ok=True)
        note = getattr(self.reporter, "note", None)
        if note is not None:
            note(
                self.id,
                f"checkpoint {round_file(self.folder, needed)} is missing: dropped the "
                f"recorded rounds {keep + 1}..{max(done)} of run {self.id} to recompute them",
            )
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
        atomic_write_text(self.folder / "config.yaml", to_yaml(cfg), ckpt.OUT_FIX)
        labels = self.folder / "labels.safetensors"
        if not labels.exists():
            s = self.splits
            n_val = len(s.val_y)
            ckpt.save_tensors(
                labels,
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
        note = getattr(self.reporter, "note", None)  # optional in the Reporter protocol
        if not others or note is None:
            return
        rounds = sorted(k for k, v in versions.items() if v != __version__)
        note(
            self.id,
            f"rounds {_span(rounds)} of this run were recorded by sparsedd "
            f"{', '.join(others)}; this is sparsedd {__version__}, resuming with it",
        )

    def run_round(self, k: int, splits: Splits) -> None:
        """Train round ``k`` from its starting state (resuming if saved), then record it."""
        cfg = self.cfg
        trainer = Trainer(
            self.model, self.masks, cfg, self.device, finetune=cfg.retrain == "finetune" and k > 0
        )
        first_epoch, seconds = self.load_round_start(k, trainer, splits)
        trainer.refresh_masks()

        def train_epoch(**step: Any) -> list[EpochStats]:
            return [trainer.train_epoch(**epoch_inputs(splits, cfg), **step)]

        train_round([self], [trainer], k, splits, first_epoch, seconds, train_epoch)

    def check_finite(self, k: int, epoch: int, stats: EpochStats) -> None:
        """Stop the run (recording nothing more) if epoch ``epoch`` of round ``k`` diverged."""
        if stats.finite and math.isfinite(stats.loss):
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
            row = self._evaluate(k, trainer, splits, epochs, seconds)
        row["execution"] = execution
        if not all(math.isfinite(row[f]) for f in ("test_loss", "test_acc") if row[f] is not None):
            raise DivergedError(diverged_message(self.cfg, self.id, k, "evaluation"))
        ckpt.save_tensors(
            round_file(self.folder, k),
            ckpt.model_state(self.model, self.masks),
            {"round": k, "run_id": self.id, "input": self.input_meta()},
        )
        self.store.record_round(self.id, row)
        (self.folder / PROGRESS_FILE).unlink(missing_ok=True)
        self.reporter.round_done(self.id, row)

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
        progress = self.folder / PROGRESS_FILE
        if progress.exists():
            tensors, meta = ckpt.load_tensors(progress)
            saved = meta.get("round")
            if not (type(saved) is int and saved < k and saved in self.store.rounds_done(self.id)):
                # not a leftover of a finished round: it must be this round's
                epochs = self.cfg.round0_epochs if k == 0 else self.cfg.epochs
                ckpt.check_meta(progress, meta, self.id, k, epochs)
                self._check_sparsity(progress, tensors, k)
                ckpt.restore(progress, tensors, self.model, self.masks, trainer.optimizer)
                return meta["epoch"] + 1, float(meta.get("seconds", 0.0))
        if k == 0:
            self.model.load_state_dict(self.init_state)
            for m in self.masks.values():
                m.fill_(True)
            return 0, 0.0
        previous = round_file(self.folder, k - 1)
        if not previous.exists():
            raise CheckpointError(
                f"round {k - 1} is recorded but {previous} is missing; "
                f"delete the run folder {self.folder} to recompute it"
            )
        tensors, meta = ckpt.load_tensors(previous)
        ckpt.check_meta(previous, meta, self.id, k - 1)
        self._check_sparsity(previous, tensors, k - 1, exact=True)
        ckpt.restore(previous, tensors, self.model, self.masks)
        self._prune(k, trainer, splits)
        if self.cfg.retrain == "lottery":
            self.model.load_state_dict(self.init_state)
        return 0, 0.0

    def _check_sparsity(
        self, path: Path, tensors: dict[str, torch.Tensor], k: int, exact: bool = False
    ) -> None:
        """Refuse masks that disagree with the recorded rounds of this run.

        A round checkpoint's masks give exactly the sparsity recorded for its round (``exact``);
        a progress file of round k prunes at least as much as round k - 1 did (none in round 0).
        """
        recorded_sparsity = self.store.round_sparsity
        found = ckpt.mask_sparsity(tensors)
        tolerance = 0.5 / max(1, count_total(self.masks))
        if exact:
            recorded = recorded_sparsity(self.id, k)
            expected = found if recorded is None else recorded
            ok = abs(found - expected) <= tolerance
        elif k == 0:
            expected, ok = 0.0, found <= tolerance
        else:  # round k prunes rate of what round k - 1 kept (rounded per layer at most)
            previous = recorded_sparsity(self.id, k - 1) or 0.0
            expected = 1 - (1 - previous) * (1 - self.cfg.prune_rate)
            slack = len(self.masks) * 2 * tolerance
            ok = previous - tolerance <= found <= expected + slack
        if not ok:
            raise CheckpointError(
                f"checkpoint {path} has masks of sparsity {found:.4%}, but round {k} of this run "
                f"stands at {expected:.4%}; delete it to recompute"
            )

    def _prune(self, k: int, trainer: Trainer, splits: Splits) -> None:
        cfg = self.cfg
        # Layers kept dense keep their all-ones masks; the rate applies to the other weights.
        weights = {
            n: w for n, w in prunable_parameters(self.model).items() if n not in self.kept_dense
        }
        grads = None
        if CRITERIA.get(cfg.prune_criterion).needs_gradients:
            grads = self._loss_gradients(trainer, splits)
        new = prune_round(
            {n: w.detach() for n, w in weights.items()},
            self.masks,
            cfg.prune_rate,
            cfg.prune_scope,
            cfg.prune_criterion,
            seed=derive_seed(cfg.seed, k, "prune"),
            gradients=grads,
        )
        for name, mask in new.items():
            self.masks[name].copy_(mask)

    def _loss_gradients(self, trainer: Trainer, splits: Splits) -> dict[str, torch.Tensor]:
        """Gradient of the training loss (first 2,048 samples) for gradient-based criteria."""
        self.model.zero_grad(set_to_none=True)
        self.model.eval()
        n = min(2048, len(splits.train_y))
        logits = trainer.predict_with_grad(splits.train_x[:n], splits.mean, splits.std)
        F.cross_entropy(logits, splits.train_y[:n]).backward()
        grads = {
            name: p.grad.detach().clone() for name, p in prunable_parameters(self.model).items()
        }
        self.model.zero_grad(set_to_none=True)
        return grads

    def save_progress(self, k: int, epoch: int, trainer: Trainer, seconds: float) -> None:
        """Save what resuming needs after ``epoch`` of round ``k``: weights, masks, optimizer."""
        state = ckpt.model_state(self.model, self.masks)
        state.update(ckpt.optimizer_state(trainer.optimizer))
        ckpt.save_tensors(
            self.folder / PROGRESS_FILE,
            state,
            {"round": k, "epoch": epoch, "seconds": seconds, "run_id": self.id},
        )

    def _activation_entropy(self, s: Splits) -> float | None:
        """The round's activation-state entropy on a fixed sample of training images."""
        return activation_entropy(self.model, _entropy_sample(s, self.device))

    def _evaluate(
        self, k: int, trainer: Trainer, splits: Splits, epochs: int, seconds: float
    ) -> dict[str, Any]:
        s = splits
        test_logits = trainer.predict(s.test_x, s.mean, s.std)
        train_pred = trainer.predict(s.train_x, s.mean, s.std).argmax(1)
        hit = train_pred == s.train_y
        pruned = count_total(self.masks) - count_remaining(self.masks)
        return {
            "round": k,
            "sparsity": pruned / count_total(self.masks),
            "params_remaining": count_parameters(self.model) - pruned,
            "test_acc": _mean(test_logits.argmax(1) == s.test_y),
            "test_loss": float(F.cross_entropy(test_logits, s.test_y)),
            "train_acc": _mean(hit),
            "train_acc_clean": _mean(hit[~s.train_is_noisy]),
            "memorization": _mean(hit[s.train_is_noisy]),
            "val_acc": (
                _mean(trainer.predict(s.val_x, s.mean, s.std).argmax(1) == s.val_y)
                if len(s.val_y)
                else None
            ),
            "epochs": epochs,
            "seconds": seconds,
            "n_test": len(s.test_y),
            "activation_entropy": self._activation_entropy(s),
            "layer_density": layer_density(self.masks),
            **provenance(self.device),
        }


def _entropy_sample(s: Splits, device: torch.device) -> torch.Tensor:
    """The first ENTROPY_SAMPLE training images of the run's split, normalized."""
    x = s.train_x[:ENTROPY_SAMPLE]
    return normalize(x, channel_stats(s.mean, device), channel_stats(s.std, device))


def check_path_encoding(out_dir: Path) -> None:
    """Refuse an output folder whose name the checkpoint library cannot open (not UTF-8)."""
    try:
        str(out_dir.resolve()).encode("utf-8")
    except (RuntimeError, OSError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        reason = "symlinks that loop" if "loop" in str(err).lower() else str(err)
        raise ConfigError(
            f"output folder {str(out_dir)!r} cannot be used: its path runs through {reason}; "
            f"choose another --out"
        ) from None
    except UnicodeEncodeError:
        raise ConfigError(
            f"output folder {str(out_dir)!r} has a name that is not valid UTF-8, which "
            f"checkpoints cannot be written to; choose a UTF-8 --out name"
        ) from None


def diverged_message(cfg: Config, run: str, k: int, where: str) -> str:
    """One line saying where a run diverged and which key to lower."""
    return (
        f"run {run} diverged in round {k}, {where}: the training loss or a weight is not finite; "
        f"nothing is recorded for round {k}; lower config key 'lr' (now {cfg.lr:g}), "
        f"e.g. --set lr={cfg.lr / 10:g}"
    )


def epoch_inputs(splits: Splits, cfg: Config) -> dict[str, Any]:
    """The inputs of a trainer's ``train_epoch`` other than the epoch's seed and steps."""
    return dict(
        x=splits.train_x,
        y=splits.train_y,
        augment=cfg.augment == "flip_crop",
        mean=splits.mean,
        std=splits.std,
    )


def train_round(
    runs: Sequence[Experiment],
    trainers: Sequence[Trainer],
    k: int,
    splits: Splits,
    first_epoch: int,
    seconds: float,
    train_epoch: Callable[..., list[EpochStats]],
    sync: Callable[[], None] = lambda: None,
    execution: str | None = None,
) -> None:
    """The one round loop of single and batched runs: epochs, their records, saves, the end.

    ``train_epoch(seed=, first_step=, total_steps=)`` trains every run one epoch and returns
    their stats; ``sync`` brings the runs' models and optimizers up to date before a save
    (a batched model writes back into them). ``execution`` says how the epochs were computed
    when not by the trainers themselves (a batched model); it is recorded with each round.
    """
    cfg, stop = runs[0].cfg, runs[0].stop
    epochs = cfg.round0_epochs if k == 0 else cfg.epochs
    for run in runs:
        run.reporter.round_started(run.id, k, epochs, first_epoch)
    per_epoch = steps_per_epoch(len(splits.train_y), cfg.batch_size)
    started = time.perf_counter() - seconds
    saved = time.monotonic()  # the round's start is saved: its checkpoint or progress file
    for epoch in range(first_epoch, epochs):
        with out_of_memory_hint("batch_size", cfg.batch_size):
            stats = train_epoch(
                seed=derive_seed(cfg.seed, k, epoch),
                first_step=epoch * per_epoch,
                total_steps=epochs * per_epoch,
            )
        for run, st in zip(runs, stats, strict=True):
            run.check_finite(k, epoch, st)
        last = epoch == epochs - 1
        save = last or stop.requested or save_due(cfg, epoch, time.monotonic() - saved)
        if save:
            sync()
            saved = time.monotonic()
        for run, trainer, st in zip(runs, trainers, stats, strict=True):
            run.store.record_epoch(run.id, k, epoch, st.loss, st.acc)
            if save:
                run.save_progress(k, epoch, trainer, time.perf_counter() - started)
            run.reporter.epoch_done(run.id, k, epoch, st)
        if stop.requested and not last:
            if not save:  # the stop came while the epoch was being reported: save it now
                sync()
                for run, trainer in zip(runs, trainers, strict=True):
                    run.save_progress(k, epoch, trainer, time.perf_counter() - started)
            raise Interrupted(f"stopped in round {k} after epoch {epoch + 1}")
    sync()
    elapsed = time.perf_counter() - started
    for run, trainer in zip(runs, trainers, strict=True):
        trainer.refresh_masks()
        run.finish_round(k, trainer, splits, epochs, elapsed, execution or trainer.execution)


def save_due(cfg: Config, epoch: int, since_save: float) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a progress save: every ``checkpoint_every``
    epochs, once ``checkpoint_seconds`` have passed since the last save (bounded cost)."""
    return (epoch + 1) % cfg.checkpoint_every == 0 and since_save >= cfg.checkpoint_seconds


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


def _span(rounds: list[int]) -> str:
    """Round numbers as '0-3' when consecutive, else '0, 2, 5'."""
    if rounds == list(range(rounds[0], rounds[-1] + 1)) and len(rounds) > 1:
        return f"{rounds[0]}-{rounds[-1]}"
    return ", ".join(map(str, rounds))


def _mean(hits: torch.Tensor) -> float | None:
    """Fraction of true entries; None for an empty selection."""
    return float(hits.float().mean()) if hits.numel() else None
