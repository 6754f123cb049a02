"""Stored sweeps: every finished row goes to the database, keyed so that it is never computed
twice.

A row is identified by two keys (tables ``sweep_runs`` and ``sweep_rows``, docs/architecture.md
§4):

* ``run_key``: SHA-256 of the *bars* (their close times and OHLCV arrays, bit for bit, and the
  timeframe), the *code* (the source file that defines the strategy and the engine's files that
  compute a row: :data:`ENGINE_MODULES`), and the *settings* (costs, stops, risk limits,
  initial cash, the first traded bar and the segment cuts of the stored moments). Rows with the
  same ``run_key`` are interchangeable: same inputs, same code, same numbers.
* ``params_hash``: SHA-256 of the parameter set (every parameter, canonical JSON).

A sweep (table ``sweeps``, id = hash of the ``run_key`` and the grid) writes each batch of rows
in one transaction as workers finish it. Run again, it loads what is stored, computes only the
rest, and so resumes a killed sweep without recomputing a row; run again once complete, it
loads everything and computes nothing. Another sweep over the same bars and code reuses the
rows it shares with earlier ones. Changing the strategy's file, an engine file, a bar or a
setting changes ``run_key``: nothing stale is ever read.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from candela.core.db import insert_ignoring_duplicates, now_ms
from candela.core.schema import sweep_rows, sweep_runs, sweeps
from research.metrics import STAT_NAMES
from research.storage import _dumps, _loads
from research.strategy_model import StrategySpec
from research.sweeps import Invalid
from research.types import Bars
from research.validation.engine import BatchResult, Evaluation, evaluate
from research.validation.moments import N_MOMENTS

#: Modules whose source decides a row's numbers, besides the strategy's own file.
ENGINE_MODULES = (
    "research.indicators",
    "research.types",
    "research.backtesting",
    "research.metrics",
    "research.kernels.backtest",
    "research.kernels.execution",
    "research.kernels.records",
    "research.kernels.stats",
    "research.kernels.trades",
    "research.kernels.window_sums",
    "research.validation.moments",
)


def bars_fingerprint(bars: Bars) -> str:
    """SHA-256 of the bars' timeframe, close times and OHLCV arrays."""
    digest = hashlib.sha256(str(int(bars.timeframe_ms)).encode())
    for name in ("ts",) + Bars.COLUMNS:
        digest.update(np.ascontiguousarray(getattr(bars, name)).tobytes())
    return digest.hexdigest()


def code_fingerprint(spec: StrategySpec) -> str:
    """SHA-256 of the strategy's name, the file that defines its target function and the
    :data:`ENGINE_MODULES` files."""
    digest = hashlib.sha256(spec.name.encode())
    files = [_source_file(spec.function)] + [
        Path(import_module(name).__file__) for name in ENGINE_MODULES
    ]
    for path in files:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _source_file(function: Callable) -> Path:
    path = inspect.getsourcefile(inspect.unwrap(function))
    if path is None or not Path(path).is_file():
        raise ValueError(
            f"cannot store sweeps of {function!r}: its source file is unknown "
            "(define the strategy in a module file, not interactively)"
        )
    return Path(path)


def params_json(params: Any) -> str:
    """Canonical JSON of every parameter (sorted keys, no spaces)."""
    values = params._asdict() if hasattr(params, "_asdict") else dict(params)
    return json.dumps(json.loads(_dumps(values)), sort_keys=True, separators=(",", ":"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunKey:
    """What identifies interchangeable rows (module docstring)."""

    run_key: str
    bars_hash: str
    code_hash: str
    settings_json: str


def run_key(
    spec: StrategySpec,
    bars: Bars,
    run_settings: tuple,
    cuts: np.ndarray,
    start: int = 0,
    split: int | None = None,
) -> RunKey:
    """The :class:`RunKey` of ``spec`` on ``bars`` with ``run_settings`` = ``(costs, stops,
    risk, initial_cash)`` (``stops=None``: the strategy's own), stored moments cut at
    ``cuts``, trading from bar ``start`` (to ``split``, then out of sample, when given)."""
    costs, stops, risk, initial_cash = run_settings
    stops = spec.stops if stops is None else stops
    settings = _dumps(
        {
            "costs": costs._asdict(),
            "stops": stops._asdict(),
            "risk": risk._asdict(),
            "initial_cash": float(initial_cash),
            "start": int(start),
            "split": split,
            "cuts": [int(c) for c in cuts],
        }
    )
    bars_hash, code_hash = bars_fingerprint(bars), code_fingerprint(spec)
    return RunKey(_sha(f"{bars_hash}:{code_hash}:{settings}"), bars_hash, code_hash, settings)


def sweep_id(key: RunKey, kind: str, grid: Mapping[str, Sequence[Any]], extra: Any = None) -> str:
    """The id of a sweep: the same run, kind, grid and ``extra`` (e.g. sample and seed) give
    the same id."""
    grid_text = _dumps({name: list(values) for name, values in grid.items()})
    return _sha(f"{key.run_key}:{kind}:{grid_text}:{_dumps(extra)}")[:32]


class SweepStore:
    """Rows and sweeps in the project's database (``engine`` at the current schema)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def ensure_run(
        self,
        key: RunKey,
        spec: StrategySpec,
        bars: Bars,
        *,
        market: Mapping[str, str | None] | None = None,
    ) -> None:
        """Record the run (once; later calls change nothing)."""
        market = market or {}
        row = {
            "run_key": key.run_key,
            "strategy": spec.name,
            "bars_hash": key.bars_hash,
            "code_hash": key.code_hash,
            "settings_json": key.settings_json,
            "exchange": market.get("exchange"),
            "symbol": market.get("symbol"),
            "timeframe": market.get("timeframe"),
            "start_ts": int(bars.ts[0]),
            "end_ts": int(bars.ts[-1]),
            "n_bars": len(bars),
            "created_at": now_ms(),
        }
        with self.engine.begin() as connection:
            insert_ignoring_duplicates(connection, sweep_runs, [row])

    def load_rows(self, key: RunKey, n_segments: int) -> dict[str, tuple[dict, np.ndarray]]:
        """``{params_json: (stats, moments)}`` of every row stored under ``key``."""
        query = sa.select(
            sweep_rows.c.params_json, sweep_rows.c.stats_json, sweep_rows.c.moments
        ).where(sweep_rows.c.run_key == key.run_key)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {
            params: (_outcome_from_json(stats), _moments_from_bytes(blob, n_segments))
            for params, stats, blob in rows
        }

    def write_rows(self, key: RunKey, rows: Sequence[tuple[str, dict, np.ndarray]]) -> int:
        """Insert ``(params_json, stats, moments)`` rows in one transaction; rows already
        stored are left alone. Returns the rows inserted."""
        created = now_ms()
        records = [
            {
                "run_key": key.run_key,
                "params_hash": _sha(params),
                "params_json": params,
                "stats_json": _outcome_json(stats),
                "moments": np.ascontiguousarray(moments, dtype="<f8").tobytes(),
                "created_at": created,
            }
            for params, stats, moments in rows
        ]
        with self.engine.begin() as connection:
            return insert_ignoring_duplicates(connection, sweep_rows, records)

    def begin_sweep(
        self,
        identifier: str,
        key: RunKey,
        *,
        kind: str,
        strategy: str,
        grid: Mapping[str, Sequence[Any]],
        metric: str,
        min_trades: int,
        n_combinations: int,
    ) -> None:
        """Record a sweep as running (or mark an earlier record of it running again)."""
        now = now_ms()
        record = {
            "sweep_id": identifier,
            "run_key": key.run_key,
            "kind": kind,
            "strategy": strategy,
            "grid_json": _dumps({name: list(values) for name, values in grid.items()}),
            "metric": metric,
            "min_trades": int(min_trades),
            "n_combinations": int(n_combinations),
            "n_done": 0,
            "status": "running",
            "summary_json": None,
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as connection:
            if not insert_ignoring_duplicates(connection, sweeps, [record]):
                connection.execute(
                    sweeps.update()
                    .where(sweeps.c.sweep_id == identifier)
                    .values(
                        status="running", metric=metric, min_trades=int(min_trades), updated_at=now
                    )
                )

    def progress(self, identifier: str, n_done: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sweeps.update()
                .where(sweeps.c.sweep_id == identifier)
                .values(n_done=int(n_done), updated_at=now_ms())
            )

    def finish_sweep(self, identifier: str, n_done: int, summary: Mapping[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sweeps.update()
                .where(sweeps.c.sweep_id == identifier)
                .values(
                    n_done=int(n_done),
                    status="complete",
                    summary_json=_dumps(dict(summary)),
                    updated_at=now_ms(),
                )
            )


def _outcome_json(outcome: dict | Invalid) -> str:
    """A row's stats as JSON; an invalid row as ``{"invalid": [category, reason]}``."""
    if isinstance(outcome, Invalid):
        return _dumps({"invalid": list(outcome)})
    return _dumps(outcome)


def _outcome_from_json(text: str) -> dict | Invalid:
    value = _loads(text)
    if isinstance(value, dict) and set(value) == {"invalid"}:
        return Invalid(*value["invalid"])
    return value


def _moments_from_bytes(blob: bytes, n_segments: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").reshape(n_segments, N_MOMENTS).astype(np.float64)


@dataclass
class StoredEvaluation:
    """:class:`~research.validation.engine.Evaluation` plus where it came from."""

    evaluation: Evaluation
    sweep_id: str
    run_key: str
    n_loaded: int
    n_computed: int


def evaluate_stored(
    store: SweepStore,
    spec: StrategySpec,
    bars: Bars,
    candidates: Sequence[Any],
    run_settings: tuple,
    cuts: np.ndarray,
    *,
    kind: str,
    grid: Mapping[str, Sequence[Any]],
    metric: str,
    min_trades: int,
    n_combinations: int,
    extra: Any = None,
    start: int = 0,
    split: int | None = None,
    market: Mapping[str, str | None] | None = None,
    **evaluate_options: Any,
) -> StoredEvaluation:
    """:func:`~research.validation.engine.evaluate` through the store: rows already stored
    under the same run key are loaded, the others computed and written batch by batch as they
    finish. The sweep's record is left ``running`` until :meth:`SweepStore.finish_sweep`."""
    key = run_key(spec, bars, run_settings, cuts, start, split)
    identifier = sweep_id(key, kind, grid, extra)
    store.ensure_run(key, spec, bars, market=market)
    store.begin_sweep(
        identifier,
        key,
        kind=kind,
        strategy=spec.name,
        grid=grid,
        metric=metric,
        min_trades=min_trades,
        n_combinations=n_combinations,
    )
    stored = store.load_rows(key, len(cuts) - 1)
    keys = [params_json(params) for params in candidates]
    missing = [i for i, text in enumerate(keys) if text not in stored]
    done = len(candidates) - len(missing)

    def write(results: BatchResult) -> None:
        nonlocal done
        store.write_rows(key, [(keys[missing[i]], stats, moments) for i, stats, moments in results])
        done += len(results)
        store.progress(identifier, done)

    computed = evaluate(
        spec,
        bars,
        [candidates[i] for i in missing],
        run_settings,
        cuts,
        on_batch=write,
        start=start,
        split=split,
        grid=dict(grid),
        **evaluate_options,
    )
    stats: list[dict] = []
    moments = np.empty((len(candidates), len(cuts) - 1, N_MOMENTS))
    position = {index: j for j, index in enumerate(missing)}
    for i, text in enumerate(keys):
        if i in position:
            row, row_moments = computed.stats[position[i]], computed.moments[position[i]]
        else:
            row, row_moments = stored[text]
        stats.append(row)
        moments[i] = row_moments
    return StoredEvaluation(
        Evaluation(stats, moments),
        identifier,
        key.run_key,
        n_loaded=len(candidates) - len(missing),
        n_computed=len(missing),
    )


def list_sweeps(engine: sa.Engine) -> pd.DataFrame:
    """Every stored sweep, newest first: id, kind, strategy, market, bars, status, progress,
    the metric and the headline figures of its summary."""
    query = (
        sa.select(
            sweeps,
            sweep_runs.c.exchange,
            sweep_runs.c.symbol,
            sweep_runs.c.timeframe,
            sweep_runs.c.start_ts,
            sweep_runs.c.end_ts,
            sweep_runs.c.n_bars,
        )
        .join(sweep_runs, sweeps.c.run_key == sweep_runs.c.run_key)
        .order_by(sweeps.c.created_at.desc())
    )
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all())
    if frame.empty:
        return pd.DataFrame(
            columns=["sweep_id", "kind", "strategy", "status", "n_done", "n_combinations"]
        )
    summaries = [_loads(text) if text else {} for text in frame.pop("summary_json")]
    for name in ("dsr", "pbo", "best_sharpe"):
        frame[name] = [summary.get(name, np.nan) for summary in summaries]
    frame["grid"] = [_loads(text) for text in frame.pop("grid_json")]
    return frame


@dataclass
class StoredSweep:
    """A sweep loaded back: its record, its rows and their moments.

    Attributes
    ----------
    record : dict
        The ``sweeps`` row (grid, metric, status, summary) with its run's market and bars.
    frame : DataFrame
        One row per stored parameter set of the grid: the parameters, then the stats.
    moments : ndarray, shape (rows, segments, 6)
    """

    record: dict
    frame: pd.DataFrame
    moments: np.ndarray


def load_sweep(engine: sa.Engine, identifier: str) -> StoredSweep:
    """Load the sweep ``identifier`` (a prefix of at least 6 characters is enough).

    Raises
    ------
    ValueError
        If no stored sweep, or more than one, starts with ``identifier``.
    """
    frame = list_sweeps(engine)
    matches = (
        frame[frame["sweep_id"].str.startswith(str(identifier))]
        if len(identifier) >= 6
        else frame.iloc[0:0]
    )
    if len(matches) != 1:
        known = ", ".join(frame["sweep_id"].str[:8].head(5)) or "none stored yet"
        what = "no stored sweep" if matches.empty else "more than one stored sweep"
        raise ValueError(
            f"{what} has id {identifier!r} (give 6 or more characters; recent "
            f"sweeps: {known}; list them with research.validation.store."
            "list_sweeps or 'candela sweeps list')"
        )
    record = matches.iloc[0].to_dict()
    with engine.connect() as connection:
        settings = connection.execute(
            sa.select(sweep_runs.c.settings_json).where(sweep_runs.c.run_key == record["run_key"])
        ).scalar_one()
        summary = connection.execute(
            sa.select(sweeps.c.summary_json).where(sweeps.c.sweep_id == record["sweep_id"])
        ).scalar_one()
    record["settings"] = _loads(settings)
    record["summary"] = _loads(summary) if summary else {}
    n_segments = len(record["settings"]["cuts"]) - 1
    rows = SweepStore(engine).load_rows(RunKey(record["run_key"], "", "", settings), n_segments)
    grid = record["grid"]
    names = list(grid)
    wanted = set(map(tuple, _grid_points(grid)))
    params_rows, stats_rows, moments = [], [], []
    for text, (stats, row_moments) in rows.items():
        params = json.loads(text)
        point = tuple(params.get(name) for name in names)
        if point in wanted:
            invalid = isinstance(stats, Invalid)
            params_rows.append(point + (not invalid, stats.reason if invalid else ""))
            stats_rows.append({} if invalid else stats)
            moments.append(row_moments)
    frame = pd.concat(
        [
            pd.DataFrame(params_rows, columns=names + ["valid", "invalid_reason"]),
            pd.DataFrame(stats_rows, columns=list(STAT_NAMES), dtype=np.float64),
        ],
        axis=1,
    )
    order = frame.sort_values(names, kind="stable").index
    frame = frame.loc[order].reset_index(drop=True)
    stacked = np.stack(moments)[order] if moments else np.empty((0, n_segments, N_MOMENTS))
    return StoredSweep(record=record, frame=frame, moments=stacked)


def _grid_points(grid: Mapping[str, Sequence[Any]]):
    return itertools.product(*(list(values) for values in grid.values()))
