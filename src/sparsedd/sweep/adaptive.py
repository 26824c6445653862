"""Adaptive seeds: give seeds only to curves whose verdict is still open.

A *curve* is the set of a grid's runs that differ only in ``seed``. With ``START:MAX`` seeds,
wave 1 trains each curve's first START seeds (the grid's seed axis, extended by consecutive
integers after its largest value when MAX asks for more). When a wave is done, each curve
still below MAX seeds is judged by the calibrated verdict of ``sparsedd.analysis`` on the
seeds it has; a curve judged ``SDD`` or ``no SDD`` (on at least two seeds: one seed is only
indicative) stops, an ``inconclusive`` one gets one more seed in the next wave. The study ends
when every curve is decided or has MAX seeds.

Judging after every wave and stopping at the first decided verdict would spend the verdict's
error rate once per look. The looks therefore share it (alpha spending, ``look_alpha``): each
interim look (fewer than MAX seeds) judges at alpha / (2 (K − 1)), the last at alpha / 2, K the
looks that can decide (those with two seeds or more); by the union bound a curve's chance of
a false SDD (or a false no SDD) over all its looks is at most alpha, as with MAX fixed seeds.

Nothing is stored about the plan itself: it is replayed from the recorded rounds (the same
rows give the same verdicts, so the same waves), which is what makes a stopped study resume.
Each wave is an ordinary set of runs handed to a backend.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsedd.analysis.load import curve_identity
from sparsedd.components import canonical
from sparsedd.config import to_dict
from sparsedd.errors import ConfigError, UserError
from sparsedd.sweep.plan import FILE_SWEEP_KEYS, MAX_ADAPTIVE_SEEDS, Cell, PlannedRun

if TYPE_CHECKING:
    import pandas as pd

#: The key of a study YAML file that asks for adaptive seeds (beside ``grid:``).
FILE_KEY = "adaptive_seeds"
#: The verdict's one-sided level over all looks (the analysis's default).
ALPHA = 0.05
#: Verdicts that stop a curve (the analysis's names).
DECIDED = ("SDD", "no SDD")
INCONCLUSIVE = "inconclusive"
_SPEC = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


@dataclass(frozen=True)
class AdaptiveSeeds:
    """Seeds per curve: ``start`` in the first wave, at most ``most`` in all."""

    start: int
    most: int

    def __str__(self) -> str:
        return f"{self.start}:{self.most}"


def parse_adaptive_seeds(text: str, where: str = "--adaptive-seeds") -> AdaptiveSeeds:
    """``START:MAX`` → AdaptiveSeeds; a UserError (one line) for anything else."""
    match = _SPEC.fullmatch(str(text))
    if not match:
        raise UserError(
            f"{where} expects START:MAX, two whole numbers such as 2:5 (start each curve with "
            f"2 seeds, give it at most 5); got {text!r}"
        )
    start, most = int(match[1]), int(match[2])
    if start < 1:
        raise UserError(f"{where} {text!r}: START must be at least 1 seed, e.g. 2:{most}")
    if most < start:
        raise UserError(
            f"{where} {text!r}: MAX ({most}) is below START ({start}); give START:MAX with "
            f"START <= MAX, e.g. {most}:{start}"
        )
    if most > MAX_ADAPTIVE_SEEDS:  # the option's bound, for a study file's value too
        raise UserError(
            f"{where} {text!r}: MAX ({most:,}) is more seeds than one curve can train (each "
            f"seed is a whole run); give MAX ≤ {MAX_ADAPTIVE_SEEDS:,}"
        )
    return AdaptiveSeeds(start, most)


def requested(option: str | None, config_file: str | None) -> AdaptiveSeeds | None:
    """The adaptive seeds asked for: ``--adaptive-seeds`` wins over the YAML file's
    ``adaptive_seeds:`` (a quoted ``'2:5'`` or ``{start: 2, max: 5}``); None: not asked."""
    if option is not None:
        return parse_adaptive_seeds(option)
    if not config_file:
        return None
    from sparsedd.config_files import load_yaml_file

    value = load_yaml_file(config_file).get(FILE_KEY)
    where = f"config file {config_file!r}: {FILE_KEY}"
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"start", "max"}:
        return parse_adaptive_seeds(f"{value['start']}:{value['max']}", where)
    if isinstance(value, str):
        return parse_adaptive_seeds(value, where)
    raise ConfigError(
        f"{where} must be a quoted '2:5' or {{start: 2, max: 5}}, got {value!r} (YAML reads "
        f"an unquoted 2:5 as the number 125)"
    )


def seed_axis(values: Sequence[Any], most: int) -> list[int]:
    """The first ``most`` distinct seeds of ``values``, extended by consecutive integers after
    the largest when ``values`` has fewer."""
    seeds: list[int] = []
    for value in values:
        try:
            seed = int(str(value).strip())
        except ValueError:
            raise ConfigError(
                f"adaptive seeds need whole-number seeds; the seed axis has {value!r}"
            ) from None
        if seed not in seeds:
            seeds.append(seed)
    seeds = seeds[:most]
    while len(seeds) < most:
        seeds.append(max(seeds) + 1)
    return seeds


def adaptive_cells(
    cells: Sequence[Cell], assignments: Sequence[str], spec: AdaptiveSeeds
) -> list[Cell]:
    """The cells with their seed axis set to each curve's MAX seeds (see ``seed_axis``); a cell
    without a seed axis starts from its config's seed."""
    out = []
    for cell in cells:
        axis = cell.axes.get("seed")
        if axis is None:
            axis = [_base_seed(cell, assignments)]
        out.append(
            dataclasses.replace(cell, axes={**cell.axes, "seed": seed_axis(axis, spec.most)})
        )
    return out


def _base_seed(cell: Cell, assignments: Sequence[str]) -> int:
    from sparsedd.components import resolve_config

    try:
        return resolve_config(cell.preset, cell.config_file, assignments, FILE_SWEEP_KEYS).seed
    except ConfigError:  # the grid's own check reports it, with every other error
        return 0


def curves_of(planned: Sequence[PlannedRun]) -> list[list[PlannedRun]]:
    """The runs grouped into curves (``analysis.load.curve_identity``: runs that differ only in
    seed), each in grid order; keys that the run's components do not read are left out."""
    groups: dict[tuple, list[PlannedRun]] = {}
    for p in planned:
        groups.setdefault(curve_identity(to_dict(canonical(p.cfg))), []).append(p)
    return list(groups.values())


def look_alpha(spec: AdaptiveSeeds, seeds: int, alpha: float = ALPHA) -> float:
    """The one-sided level a curve is judged at with ``seeds`` seeds: its share of ``alpha``
    (see the module docstring). Looks at one seed decide nothing and spend nothing."""
    looks = [n for n in range(max(spec.start, 2), spec.most + 1)]
    if len(looks) <= 1 or seeds < 2:
        return alpha
    return alpha / 2 if seeds >= spec.most else alpha / (2 * (len(looks) - 1))


def curve_verdict(frame: pd.DataFrame | None, ids: Sequence[str], alpha: float = ALPHA) -> str:
    """The analysis's verdict (at one-sided level ``alpha``) on the curve made of runs
    ``ids`` (rows of ``frame``, as ``analysis.load_results`` reads them); ``inconclusive``
    when none is recorded."""
    from sparsedd.analysis.tables import curve_table

    if frame is None:
        return INCONCLUSIVE
    rows = frame[frame["run_id"].isin(list(ids))]
    if rows.empty:
        return INCONCLUSIVE
    verdicts = set(curve_table(rows, alpha=alpha)["verdict"])
    return verdicts.pop() if len(verdicts) == 1 else INCONCLUSIVE


@dataclass(frozen=True)
class AdaptivePlan:
    """Where an adaptive study stands: each curve's seeds so far, and the wave to train now."""

    spec: AdaptiveSeeds
    curves: list[list[PlannedRun]]
    #: Seeds each curve has been given so far (its first ``targets[i]`` runs).
    targets: list[int]
    #: The runs to train now (empty: the study is finished).
    wave: list[PlannedRun]
    #: 1 for the first wave.
    number: int
    #: Per curve, its latest verdict (None: not judged yet) and whether it is decided.
    verdicts: list[str | None]
    decided: list[bool]
    #: Epochs recorded (the sum of ``round_epochs``) of the runs given so far.
    epochs_trained: int = 0

    @property
    def finished(self) -> bool:
        """Whether nothing is left to train."""
        return not self.wave

    @property
    def chosen(self) -> list[PlannedRun]:
        """Runs given to curves so far."""
        return [p for c, t in zip(self.curves, self.targets, strict=True) for p in c[:t]]

    @property
    def full(self) -> list[PlannedRun]:
        """Every run of the full grid (MAX seeds a curve)."""
        return [p for c in self.curves for p in c]

    @property
    def skipped(self) -> list[PlannedRun]:
        """Runs no curve will get: those past the seeds of decided curves (of every curve once
        the study is finished)."""
        return [
            p
            for c, t, d in zip(self.curves, self.targets, self.decided, strict=True)
            if d or self.finished
            for p in c[t:]
        ]

    def counts(self) -> dict[str, int]:
        """Curves by latest verdict (``not judged`` for curves with no verdict yet)."""
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v or "not judged"] = out.get(v or "not judged", 0) + 1
        return out


VerdictOf = Callable[[Sequence[PlannedRun]], str]


def replay(
    curves: list[list[PlannedRun]], spec: AdaptiveSeeds, done: set[str], verdict_of: VerdictOf
) -> AdaptivePlan:
    """Replay the waves from what is done: the first wave with runs not done is the one to
    train now (none: finished). ``verdict_of`` judges a curve on the given runs."""
    targets = [min(spec.start, len(c)) for c in curves]
    verdicts: list[str | None] = [None] * len(curves)
    judged = [0] * len(curves)
    decided = [False] * len(curves)
    number = 1
    while True:
        wave = [p for c, t in zip(curves, targets, strict=True) for p in c[:t] if p.id not in done]
        if wave:
            return AdaptivePlan(spec, curves, targets, wave, number, verdicts, decided)
        grew = False
        for i, curve in enumerate(curves):
            if decided[i] or judged[i] == targets[i]:
                continue
            verdicts[i], judged[i] = verdict_of(curve[: targets[i]]), targets[i]
            decided[i] = verdicts[i] in DECIDED and targets[i] >= 2
            if not decided[i] and targets[i] < len(curve):
                targets[i] += 1
                grew = True
        if not grew:
            return AdaptivePlan(spec, curves, targets, [], number, verdicts, decided)
        number += 1


def plan_waves(
    spec: AdaptiveSeeds, planned: Sequence[PlannedRun], out_dir: str | Path
) -> AdaptivePlan:
    """The adaptive plan of ``planned`` (the full grid) against the rounds in ``out_dir``."""
    from sparsedd.sweep.plan import recorded_rows

    done = {p.id for p in planned if p.state == "done"}
    frame = _load(out_dir) if done else None
    state = replay(
        curves_of(planned),
        spec,
        done,
        lambda runs: curve_verdict(frame, [p.id for p in runs], look_alpha(spec, len(runs))),
    )
    chosen = {p.id for p in state.chosen}
    trained = sum(
        r.get("round_epochs") or 0 for r in recorded_rows(out_dir) if r["run_id"] in chosen
    )
    return dataclasses.replace(state, epochs_trained=trained)


def _load(out_dir: str | Path) -> pd.DataFrame | None:
    from sparsedd.analysis.tables import load_results

    try:
        return load_results(out_dir)
    except UserError:  # nothing usable recorded: every curve is inconclusive
        return None


def seed_axis_note(cells: Sequence[Cell], spec: AdaptiveSeeds) -> list[str]:
    """A note per cell whose seed axis lists more seeds than MAX (the rest are not used)."""
    return [
        f"the seed axis lists {len(axis)} seeds; adaptive seeds {spec} use at most the first "
        f"{spec.most}"
        for axis in (c.axes.get("seed") for c in cells)
        if axis is not None and len(set(map(str, axis))) > spec.most
    ]


def format_adaptive(state: AdaptivePlan) -> str:
    """What a dry run says of an adaptive study: the wave to train now and the full grid."""
    full = state.full
    full_epochs = sum(p.epochs_total for p in full)
    grid = (
        f"full grid: {len(state.curves)} curves x {state.spec.most} seeds = {len(full)} runs, "
        f"{full_epochs} epochs ({sum(p.epochs_left for p in full)} left); the adaptive plan "
        f"trains at most that"
    )
    if state.finished:
        return (
            f"adaptive seeds {state.spec}: finished after wave {state.number}: {_verdicts(state)}; "
            f"{len(state.chosen)} runs, {state.epochs_trained} epochs trained\n{grid}"
        )
    left = sum(p.epochs_left for p in state.wave)
    total = sum(p.epochs_total for p in state.wave)
    return (
        f"adaptive seeds {state.spec}: wave {state.number} trains {len(state.wave)} runs now, "
        f"{left} epochs left (of {total}); later waves add one seed to each curve still "
        f"inconclusive, up to {state.spec.most}\n{grid}"
    )


def closing_line(state: AdaptivePlan) -> str:
    """The summary of an adaptive study once its waves are done."""
    full_epochs = sum(p.epochs_total for p in state.full)
    ratio = state.epochs_trained / full_epochs if full_epochs else 0.0
    return (
        f"adaptive seeds {state.spec}: {len(state.chosen)} of the full grid's {len(state.full)} "
        f"runs, {state.epochs_trained} of its {full_epochs} epochs ({ratio:.0%}); "
        f"{_verdicts(state)}"
    )


def _verdicts(state: AdaptivePlan) -> str:
    counts = state.counts()
    return "curves: " + ", ".join(f"{n} {v}" for v, n in counts.items())


def sweep_entry(state: AdaptivePlan) -> dict[str, Any]:
    """What `sparsedd status` needs to compare with the full grid (kept in the sweep file)."""
    return {
        "seeds": str(state.spec),
        "grid": {p.id: p.epochs_total for p in state.full},
        "skipped": [p.id for p in state.skipped],
    }


def write_plan_file(out_dir: str | Path, state: AdaptivePlan) -> Path:
    """The sweep file of an adaptive study: the runs given so far, and the full grid's cost;
    one file per study (named by its full grid), rewritten after every wave."""
    from sparsedd.sweep.status import write_sweep_file

    return write_sweep_file(
        out_dir, state.chosen, extra=sweep_entry(state), name_ids=[p.id for p in state.full]
    )
