"""Portfolio bots in the runner: their config, immutability, the grace time for late markets
(live), and the SIGKILL fault test (no decision lost or duplicated across kills).

Real bars (the bundled Bittrex 1m markets), real databases and the real runner; the live test
shifts the real bars' close times to the present so that the grace time is measured against
the wall clock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from runner_fixtures import _migrated_engine
from runner_support import (
    TRADE_COLUMNS,
    LiveRunner,
    bittrex_universe,
    portfolio_config,
    replay,
    store_bars,
    table_rows,
    wait_for,
)
from sqlalchemy import func, select

from candela.core import schema
from candela.core.bus import InProcessBus
from candela.core.db import connect, now_ms
from research.types import Bars
from runner.config import BotConfigError, load_bot_configs
from runner.registry import BotConfigChangedError, register_bots

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHIPPED = ("ADA-BTC", "ETH-BTC", "LTC-BTC")  # in the repository: runs in any clone
SYMBOLS = [name.replace("-", "/") for name in SHIPPED]


def _store(engine, universe):
    for symbol, bars in universe.items():
        store_bars(engine, ("bittrex", symbol, "1m"), bars)


# ----------------------------------------------------------------------------- config


def test_a_portfolio_config_round_trips():
    config = portfolio_config(
        "book",
        "momentum_rotation",
        SYMBOLS,
        params={"top": 1},
        limits={"max_weight": 0.5, "max_drawdown": None},
        rebalance={"period": 3_600_000},
        grace_seconds=5,
    )
    assert config.symbols == tuple(SYMBOLS) and config.params["top"] == 1
    assert config.book_rebalance.period == 3_600_000
    assert np.isnan(config.limits.max_drawdown) and config.limits.max_weight == 0.5
    again = portfolio_config(
        "book",
        "momentum_rotation",
        SYMBOLS,
        **{
            key: value
            for key, value in config.to_dict().items()
            if key not in ("id", "portfolio", "universe")
        },
    )
    assert again.to_json() == config.to_json()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"universe": {"exchange": "bittrex", "timeframe": "1m"}}, "universe.symbols: missing"),
        (
            {
                "universe": {
                    "exchange": "bittrex",
                    "timeframe": "1m",
                    "symbols": ["ADA/BTC", "ADA/BTC"],
                }
            },
            r"universe.symbols\[1\]: ADA/BTC is listed twice",
        ),
        (
            {"universe": {"exchange": "bittrex", "timeframe": "7m", "symbols": ["ADA/BTC"]}},
            "universe.timeframe: unsupported timeframe '7m'",
        ),
        (
            {
                "universe": {
                    "exchange": "bittrex",
                    "timeframe": "1m",
                    "symbols": ["ADA/BTC"],
                    "timeframes": "1h",
                }
            },
            "universe.timeframes: unknown key",
        ),
        (
            {"portfolio": "momentum"},
            "portfolio: unknown portfolio strategy 'momentum'; did you mean 'momentum_rotation'",
        ),
        ({"params": {"top": 0}}, "params: constraint 'top >= 1'"),
        (
            {"limits": {"max_gross": -1}},
            r"limits.max_gross: must be a number within \[0.0, 100.0\]",
        ),
        ({"grace_seconds": -1}, "grace_seconds: must be a number of seconds"),
        ({"risk": {}}, "risk: unknown key"),
    ],
)
def test_bad_portfolio_configs_name_the_field(fields, message):
    data = dict(
        id="book",
        portfolio="momentum_rotation",
        universe={"exchange": "bittrex", "timeframe": "1m", "symbols": SYMBOLS},
    )
    data.update(fields)
    from runner.config import parse_bot_config

    with pytest.raises(BotConfigError, match=message):
        parse_bot_config(data, source="book.json")


def test_a_universe_cannot_change_after_the_bot_traded(any_engine):
    universe = bittrex_universe(SHIPPED, grid_bars=400)
    _store(any_engine, universe)
    config = portfolio_config("book", "momentum_rotation", SYMBOLS, params={"window": 30})
    replay(any_engine, InProcessBus(), [config])
    changed = portfolio_config("book", "momentum_rotation", SYMBOLS[:2], params={"window": 30})
    with pytest.raises(
        BotConfigChangedError,
        match=r"universe.symbols \[\"ADA/BTC\", "
        r"\"ETH/BTC\", \"LTC/BTC\"\] -> "
        r"\[\"ADA/BTC\", \"ETH/BTC\"\]",
    ):
        register_bots(any_engine, [changed])
    with any_engine.connect() as connection:  # nothing written
        stored = connection.execute(
            select(schema.bots.c.config_json).where(schema.bots.c.bot_id == "book")
        ).scalar_one()
    assert json.loads(stored)["universe"]["symbols"] == SYMBOLS


# ----------------------------------------------------------------------------- live grace


def _shifted(universe: dict[str, Bars], last_row_close: int, row: int) -> dict[str, Bars]:
    """The bars with their close times moved so that grid row ``row`` closes at
    ``last_row_close`` (real prices, times of today)."""
    grid = np.unique(np.concatenate([bars.ts for bars in universe.values()]))
    shift = last_row_close - int(grid[row])
    return {
        symbol: Bars(
            bars.ts + shift,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            bars.volume,
            bars.timeframe_ms,
        )
        for symbol, bars in universe.items()
    }


def _signal(engine, bot_id, ts):
    with engine.connect() as connection:
        return connection.execute(
            select(schema.signals).where(
                schema.signals.c.bot_id == bot_id, schema.signals.c.ts == ts
            )
        ).first()


@pytest.mark.slow
def test_a_late_market_is_waited_for_the_grace_time_then_recorded_missing(any_engine):
    grace = 2.0
    row = 150
    universe = bittrex_universe(SHIPPED, grid_bars=row + 3)
    universe = _shifted(universe, now_ms() + 3_000, row)  # row 150 closes in 3 s
    grid = np.unique(np.concatenate([bars.ts for bars in universe.values()]))
    late, on_time = "LTC/BTC", ["ADA/BTC", "ETH/BTC"]
    for symbol, bars in universe.items():
        assert grid[row] in bars.ts and grid[row + 1] in bars.ts, symbol  # all three have them

    def store(symbol, rows):
        bars = universe[symbol]
        keep = np.isin(bars.ts, grid[rows])
        store_bars(
            any_engine,
            ("bittrex", symbol, "1m"),
            bars,
            int(np.argmax(keep)),
            int(np.argmax(keep)) + int(keep.sum()),
        )

    for symbol in universe:
        store(symbol, slice(0, row))
    config = portfolio_config(
        "late",
        "momentum_rotation",
        SYMBOLS,
        grace_seconds=grace,
        params={"window": 30},
        start=int(grid[row - 10]),
    )
    with LiveRunner(any_engine, InProcessBus(), [config]):
        wait_for(
            lambda: _signal(any_engine, "late", int(grid[row - 1])) is not None,
            message="the history before the late bar",
        )
        for symbol in on_time:
            store(symbol, slice(row, row + 1))
        wait_for(
            lambda: _signal(any_engine, "late", int(grid[row])) is not None,
            timeout=30,
            message="the decision after the grace time",
        )
        decided = _signal(any_engine, "late", int(grid[row]))
        # decided only once the grace time after the bar's close had passed, without LTC/BTC
        assert decided.created_at >= grid[row] + grace * 1000
        indicators = json.loads(decided.indicators_json)
        assert indicators["present"] == on_time and indicators["missing"] == [late]
        # the late bar comes after the decision: it is not traded; the next bar is complete
        for symbol in universe:
            store(symbol, slice(row, row + 2))
        stored_at = now_ms()
        wait_for(
            lambda: _signal(any_engine, "late", int(grid[row + 1])) is not None,
            timeout=30,
            message="the next, complete bar",
        )
        complete = _signal(any_engine, "late", int(grid[row + 1]))
        assert json.loads(complete.indicators_json)["missing"] == []
        assert complete.created_at - stored_at < grace * 1000  # no wait for a complete bar


# ----------------------------------------------------------------------------- SIGKILL


def _ledger(engine, bot_id):
    return (
        table_rows(engine, schema.trades, bot_id, TRADE_COLUMNS + ("symbol",)),
        table_rows(
            engine,
            schema.signals,
            bot_id,
            ("ts", "action", "target", "raw_target", "price", "executed", "indicators_json"),
        ),
        table_rows(engine, schema.bot_performance, bot_id, ("ts", "equity", "cash")),
        table_rows(engine, schema.bot_state, bot_id, ("cash", "cursor_ts", "state_json")),
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_at_random_points_loses_and_duplicates_no_portfolio_decision(
    pg_url, sqlite_url, tmp_path
):
    universe = bittrex_universe(SHIPPED, grid_bars=800)
    grid = np.unique(np.concatenate([bars.ts for bars in universe.values()]))
    folder = tmp_path / "bots"
    folder.mkdir()
    bots = {
        "kill-book": dict(
            portfolio="momentum_rotation",
            params={"top": 1, "window": 20, "every_hours": 1},
            stops={"stop_loss": 0.01},
            costs={"fee_rate": 0.0025},
        ),
        "kill-trend": dict(
            portfolio="inverse_vol_trend",
            params={"trend": 30, "vol_window": 30},
            rebalance={"drift": 0.02},
            costs={"fee_rate": 0.0025},
        ),
    }
    for bot_id, fields in bots.items():
        data = dict(
            universe={"exchange": "bittrex", "timeframe": "1m", "symbols": SYMBOLS}, **fields
        )
        (folder / f"{bot_id}.json").write_text(json.dumps(data))
    engine = connect(pg_url)
    _store(engine, universe)
    reference = _migrated_engine(sqlite_url)
    _store(reference, universe)
    replay(reference, InProcessBus(), load_bot_configs(folder))

    env = dict(os.environ, CANDELA_DATABASE_URL=pg_url, PYTHONPATH=str(HERE))
    env.pop("CANDELA_REDIS_URL", None)
    command = [
        sys.executable,
        "-m",
        "candela.cli",
        "run",
        "--bots",
        str(folder),
        "--replay",
        "--poll",
        "0.05",
    ]
    total = len(grid) * len(bots)
    thresholds = sorted(random.Random(20261203).sample(range(20, total - 50), 12))

    def recorded() -> int:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(schema.signals)).scalar_one()
            )

    killed = 0
    for threshold in thresholds:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            while process.poll() is None and recorded() < threshold:
                time.sleep(0.003)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                killed += 1
            process.wait(timeout=30)
        if process.returncode not in (-signal.SIGKILL, 0):
            pytest.fail(
                f"runner exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}"
            )
        process.stderr.close()
    assert killed >= 10 and recorded() < total
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    for bot_id in bots:
        trades, signals, performance, state = _ledger(engine, bot_id)
        assert len(signals) == len(grid) and len(performance) == len(grid)
        assert len(trades) > 10
        assert (trades, signals, performance, state) == _ledger(reference, bot_id)
    reference.dispose()
    engine.dispose()
