"""Saving backtests to ``strategy_runs`` / ``strategy_signals`` / ``strategy_trades`` and
loading them back, on SQLite and PostgreSQL (the ``engine`` fixture runs both)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from reference import random_targets, synthetic_bars

from research.backtesting import backtest
from research.storage import load_run, save_result
from research.strategy_model import strategy
from research.types import Bars, Costs, RiskLimits, Stops


@strategy(name="stored_levels", lookback=3, history=4)
def SPEC(bars, seed: int = 5, scale: float = 1.0):
    """A fixed random walk of levels (not causal on purpose-free data; storage only)."""
    return random_targets(len(bars), seed) * scale


@pytest.fixture
def result():
    ts, o, h, l, c = synthetic_bars(400, 11)
    bars = Bars.from_arrays(ts, o, h, l, c, np.ones(len(ts)), 3_600_000)
    return backtest(
        SPEC,
        bars,
        {"seed": 5, "scale": 0.8},
        Costs(0.001, 3.0),
        stops=Stops(stop_loss=0.03, trailing_stop=0.05),
        risk=RiskLimits(daily_loss_limit=0.04),
        initial_cash=5_000.0,
    )


def test_round_trip_preserves_everything(engine, result):
    assert len(result.fills) > 10 and (result.fills["reason"] != "signal").any()
    run_id = save_result(engine, result, exchange="binance", symbol="BTC/USDT")
    loaded = load_run(engine, run_id)
    assert loaded.spec_name == "stored_levels"
    assert loaded.params == {"seed": 5, "scale": 0.8}
    np.testing.assert_equal(tuple(loaded.costs), tuple(result.costs))  # nan == nan here
    np.testing.assert_equal(tuple(loaded.risk), tuple(result.risk))
    np.testing.assert_equal(tuple(loaded.stops), tuple(result.stops))
    assert type(loaded.stops) is Stops and math.isnan(loaded.stops.take_profit)
    assert loaded.initial_cash == 5_000.0 and loaded.timeframe_ms == 3_600_000
    assert loaded.extra["timeframe"] == "1h" and loaded.extra["symbol"] == "BTC/USDT"
    for name in ("equity", "cash", "position"):
        pd.testing.assert_series_equal(getattr(loaded, name), getattr(result, name))
    np.testing.assert_array_equal(loaded.target, np.nan_to_num(result.target))
    pd.testing.assert_frame_equal(loaded.fills, result.fills)
    pd.testing.assert_frame_equal(loaded.trades, result.trades)
    pd.testing.assert_series_equal(loaded.stats, result.stats, check_names=False)


def test_runs_are_kept_apart_and_stats_are_valid_json(engine, result):
    first = save_result(engine, result)
    second = save_result(engine, result)
    assert first != second
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                sa.text("SELECT run_id, COUNT(*) FROM strategy_signals GROUP BY run_id")
            ).all()
        )
        stats_json = connection.execute(
            sa.text("SELECT stats_json FROM strategy_runs WHERE run_id = :r"), {"r": first}
        ).scalar_one()
    assert counts == {first: 400, second: 400}
    stats = json.loads(stats_json)  # strict JSON: no NaN/Infinity literals
    assert stats["trade_count"] == result.stats["trade_count"]


def test_unknown_run_id_raises(engine):
    with pytest.raises(KeyError, match="no stored backtest"):
        load_run(engine, "00000000-0000-0000-0000-000000000000")
