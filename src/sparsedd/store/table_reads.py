"""Reading the results database's tables whole (runs, rounds, per-image correctness, epochs),
as the analysis loads them: the readers of :class:`~sparsedd.store.results.ResultsStore`."""

from __future__ import annotations

from typing import Any

from sparsedd.store.schema import (
    CORE_CONFIG_KEYS,
    CORRECTNESS_FIELD,
    RECORD_COLUMNS,
    ROUND_COLUMNS,
    config_problem,
    density_problem,
    parse_json,
    short,
)


class TableReads:
    """The whole-table readers, mixed into ``ResultsStore``, which supplies the ``_execute``,
    ``_round_columns`` and ``_damaged`` they call."""

    def runs(self) -> dict[str, dict[str, Any]]:
        """Config of every run, by run id."""
        rows = self._execute("SELECT run_id, config FROM runs ORDER BY created", write=False)
        configs = {}
        for rid, text in rows:
            config = parse_json(text)
            problem = (
                config_problem(config)
                if isinstance(config, dict)
                else "is not a JSON object it can read (invalid, or nested too deep)"
            )
            if problem is not None:
                raise self._damaged(f"the recorded config of run {short(rid)} {problem}")
            configs[rid] = config
        for key in CORE_CONFIG_KEYS:
            lacking = [rid for rid, config in configs.items() if key not in config]
            if lacking and len(lacking) < len(configs):
                raise self._damaged(
                    f"the recorded config of run {short(lacking[0])} has no {key!r}, which "
                    f"the other runs' configs have"
                )
        return configs

    def round_rows(self) -> list[dict[str, Any]]:
        """Every recorded round of every run: the run's config keys, then ROUND_COLUMNS.

        ``epochs`` is the config's key; the round's own epoch count is ``round_epochs``.
        A provenance field is None for rounds recorded before it was (older schemas).
        """
        configs = self.runs()
        present = set(self._round_columns())
        cols = RECORD_COLUMNS
        select = ", ".join(c if c in present else f"NULL AS {c}" for c in cols)
        rows = self._execute(f"SELECT {select} FROM rounds ORDER BY run_id, round", write=False)
        out = []
        for values in rows:
            rec = dict(zip(cols, values, strict=True))
            rec["round_epochs"] = rec.pop("epochs")
            rec["collapsed"] = int(rec["collapsed"] or 0)  # NULL: recorded before schema 5
            if rec["run_id"] not in configs:  # every run is registered before its rounds
                raise self._damaged(
                    f"round {rec['round']} is of run {short(rec['run_id'])}, which has no "
                    f"recorded config"
                )
            rec["layer_density"] = density = parse_json(rec["layer_density"])
            problem = density_problem(density)
            if problem is not None:
                where = f"round {rec['round']} of run {short(rec['run_id'])}"
                raise self._damaged(f"{where} records {problem}")
            out.append({**configs.get(rec["run_id"], {}), **{c: rec[c] for c in ROUND_COLUMNS}})
        return out

    def round_correctness(self) -> dict[tuple[str, int], tuple[bytes, int]]:
        """Per (run id, round) that recorded it: the packed per-image test correctness and the
        number of test images it holds (see ``schema.CORRECTNESS_FIELD``). Empty for a database
        written before schema 6; rounds recorded before it, and collapsed rounds, are absent.
        """
        if CORRECTNESS_FIELD not in self._round_columns():
            return {}
        rows = self._execute(
            f"SELECT run_id, round, n_test, {CORRECTNESS_FIELD} FROM rounds "
            f"WHERE {CORRECTNESS_FIELD} IS NOT NULL ORDER BY run_id, round",
            write=False,
        )
        out = {}
        for run_id, k, n_test, blob in rows:
            if n_test is None:  # size unrecorded: the bits cannot be read (judged without them)
                continue
            if not isinstance(n_test, int) or n_test < 1 or len(blob) != (n_test + 7) // 8:
                raise self._damaged(
                    f"round {k} of run {short(run_id)} records {len(blob)} bytes of per-image "
                    f"test correctness for {short(n_test)} test images"
                )
            out[(run_id, k)] = (bytes(blob), n_test)
        return out

    def epoch_rows(self) -> list[dict[str, Any]]:
        """Every recorded epoch: run_id, round, epoch, train_loss, train_acc."""
        cols = ("run_id", "round", "epoch", "train_loss", "train_acc")
        rows = self._execute(
            f"SELECT {', '.join(cols)} FROM epochs ORDER BY run_id, round, epoch", write=False
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]
