"""Store backtests in ``strategy_runs`` / ``strategy_signals`` / ``strategy_trades`` and load
them back.

One run is one row of ``strategy_runs`` (strategy name, parameters, costs + stops + risk limits
+ initial cash, statistics, as JSON; market and time range), one ``strategy_signals`` row per
processed bar (target, position, cash, equity after the close) and one ``strategy_trades`` row
per **fill** (the table's name notwithstanding; round trips are rebuilt from the fills on load).

JSON holds non-finite floats as the strings ``"nan"``, ``"inf"`` and ``"-inf"``. A ``nan``
target (flat, e.g. during the look-back) is stored as ``0.0``, which the execution function treats
identically, because SQLite cannot store NaN in a ``NOT NULL`` column.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from candela.core.db import now_ms
from candela.core.schema import strategy_runs, strategy_signals, strategy_trades
from candela.core.timeframes import ms_to_timeframe
from research.kernels.records import REASON_NAMES, new_fills
from research.result import Result
from research.types import Costs, RiskLimits, Stops

_SIDES = {"buy": 1.0, "sell": -1.0}


def save_result(
    engine: sa.Engine,
    result: Result,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> str:
    """Insert ``result`` in one transaction and return its new ``run_id`` (a UUID string).

    ``timeframe`` defaults to the name of ``result.timeframe_ms`` when it is a supported one.
    Only processed bars are stored (all of them unless ``result.status`` is negative).
    """
    if not isinstance(result, Result):
        raise TypeError(f"expected a research Result, got {type(result).__name__}")
    if timeframe is None and result.timeframe_ms:
        try:
            timeframe = ms_to_timeframe(result.timeframe_ms)
        except ValueError:
            timeframe = None
    processed = ~np.isnan(result.equity.to_numpy())
    ts = _index_ms(result.equity.index)[processed]
    if len(ts) == 0:
        raise ValueError("nothing to save: the backtest processed no bar")
    run_id = str(uuid.uuid4())
    params = result.params._asdict() if hasattr(result.params, "_asdict") else dict(result.params)
    settings = {
        "costs": result.costs._asdict(),
        "stops": result.stops._asdict(),
        "risk": result.risk._asdict(),
        "initial_cash": result.initial_cash,
        "timeframe_ms": result.timeframe_ms,
        "status": result.status,
    }
    target = np.nan_to_num(np.asarray(result.target, dtype=np.float64)[processed], nan=0.0)
    signals = [
        {
            "run_id": run_id,
            "ts": int(t),
            "target": float(g),
            "position": float(p),
            "cash": float(c),
            "equity": float(e),
        }
        for t, g, p, c, e in zip(
            ts,
            target,
            result.position.to_numpy()[processed],
            result.cash.to_numpy()[processed],
            result.equity.to_numpy()[processed],
        )
    ]
    fills = result.fills
    fill_rows = [
        {
            "run_id": run_id,
            "seq": i,
            "bar_ts": int(bar_ts),
            "ts": int(fill_ts),
            "side": side,
            "size": float(size),
            "price": float(price),
            "fee": float(fee),
            "reason": reason,
            "realized_pnl": float(pnl),
        }
        for i, (bar_ts, fill_ts, side, size, price, fee, reason, pnl) in enumerate(
            zip(
                _index_ms(fills["bar_ts"]),
                _index_ms(fills["ts"]),
                fills["side"],
                fills["size"],
                fills["price"],
                fills["fee"],
                fills["reason"],
                fills["realized_pnl"],
            )
        )
    ]
    with engine.begin() as connection:
        connection.execute(
            strategy_runs.insert().values(
                run_id=run_id,
                strategy=result.spec_name,
                params_json=_dumps(params),
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
                start_ts=int(ts[0]),
                end_ts=int(ts[-1]),
                costs_json=_dumps(settings),
                stats_json=_dumps(result.stats.to_dict()),
                created_at=now_ms(),
            )
        )
        connection.execute(strategy_signals.insert(), signals)
        if fill_rows:
            connection.execute(strategy_trades.insert(), fill_rows)
    return run_id


def load_run(engine: sa.Engine, run_id: str) -> Result:
    """Load a stored run as a :class:`Result`.

    The result has ``bars=None`` and no indicators; ``params`` is a dict; ``target``, the
    account series, the fills (with ``cash_after`` / ``position_after`` recomputed from the
    initial cash), the round trips and the stored statistics are as saved. The market and
    time range are in ``result.extra``.

    Raises
    ------
    KeyError
        If no run has this ``run_id``.
    """
    with engine.connect() as connection:
        run = (
            connection.execute(sa.select(strategy_runs).where(strategy_runs.c.run_id == run_id))
            .mappings()
            .first()
        )
        if run is None:
            raise KeyError(f"no stored backtest with run_id {run_id!r}")
        signals = (
            connection.execute(
                sa.select(strategy_signals)
                .where(strategy_signals.c.run_id == run_id)
                .order_by(strategy_signals.c.ts)
            )
            .mappings()
            .all()
        )
        fills = (
            connection.execute(
                sa.select(strategy_trades)
                .where(strategy_trades.c.run_id == run_id)
                .order_by(strategy_trades.c.seq)
            )
            .mappings()
            .all()
        )
    settings = _loads(run["costs_json"])
    costs = Costs(**settings["costs"])
    stops = Stops(**settings["stops"])
    risk = RiskLimits(**settings["risk"])
    initial_cash = float(settings["initial_cash"])
    timeframe_ms = int(settings["timeframe_ms"])
    ts = np.array([row["ts"] for row in signals], dtype=np.int64)
    column = lambda name: np.array([row[name] for row in signals], dtype=np.float64)  # noqa: E731
    fill_array = _fill_array(fills, ts, initial_cash)
    stats = pd.Series(_loads(run["stats_json"]), dtype=np.float64, name=run["strategy"])
    extra = {
        "run_id": run_id,
        "exchange": run["exchange"],
        "symbol": run["symbol"],
        "timeframe": run["timeframe"],
        "created_at": run["created_at"],
    }
    return Result(
        spec_name=run["strategy"],
        params=_loads(run["params_json"]),
        costs=costs,
        stops=stops,
        risk=risk,
        initial_cash=initial_cash,
        bars=None,
        target=column("target"),
        indicators={},
        ts=ts,
        fill_rows=fill_array,
        equity_values=column("equity"),
        stats=stats,
        status=int(settings.get("status", 0)),
        timeframe_ms=timeframe_ms,
        extra=extra,
        cash_values=column("cash"),
        position_values=column("position"),
    )


def _fill_array(rows, ts: np.ndarray, initial_cash: float) -> np.ndarray:
    """Rebuild the kernel's fill records; cash and position replay the kernel's own
    arithmetic."""
    sides = [_SIDES[row["side"]] for row in rows]
    cash_after, position_after = [], []
    cash, position = initial_cash, 0.0
    for side, row in zip(sides, rows):
        delta = side * row["size"]
        cash = cash - delta * row["price"] - row["fee"]
        position = position + delta
        if abs(position) <= 1e-12 * max(abs(position - delta), 1.0):
            position = 0.0
        cash_after.append(cash)
        position_after.append(position)
    out = new_fills(len(rows))
    bar_ts = np.array([row["bar_ts"] for row in rows], dtype=np.int64)
    out["bar"] = np.searchsorted(ts, bar_ts)
    out["bar_ts"] = bar_ts
    out["side"] = sides
    out["reason"] = [REASON_NAMES.index(row["reason"]) for row in rows]
    # only a fill at the bar's open carries an earlier time than its bar
    out["at_open"] = [row["ts"] != row["bar_ts"] for row in rows]
    for name in ("size", "price", "fee", "realized_pnl"):
        out[name] = [row[name] for row in rows]
    out["cash_after"] = cash_after
    out["position_after"] = position_after
    return out


def _index_ms(values) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ms").asi8


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_encode(value), allow_nan=False)


def _loads(text: str) -> Any:
    return _decode(json.loads(text))
