"""Helpers shared by the runner, parity and fault tests (imported as ``runner_support``).

Bars come from the real files shipped with the repository (``market_files``); close ts = open + timeframe.
Nothing here fakes our own code: tests run the real runner on a real database.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
from market_files import read_ohlcv_csv

from candela.core import schema
from candela.core.db import insert_ignoring_duplicates
from research.types import Bars
from runner.config import BotConfig, parse_bot_config
from runner.process import Replay, Runner, RunnerSettings

ADA_BTC = ("bittrex", "ADA/BTC", "1m")
ADA_BTC_FILE = "ohlcv/bittrex_ADA-BTC_1m.csv.gz"
MINUTE_MS = 60_000

FAST_SETTINGS = RunnerSettings(
    poll_interval=0.05,
    heartbeat_interval=0.2,
    restart_backoff=(0.05, 0.1, 0.2),
    database_retry=(0.05, 0.5),
    workers=4,
)


def read_csv_bars(path: Path, timeframe_ms: int, limit: int | None = None) -> Bars:
    """Read a market-data CSV (open times) into :class:`Bars` with close times."""
    return read_ohlcv_csv(path, timeframe_ms, limit)


def store_bars(
    engine, market: tuple[str, str, str], bars: Bars, start: int = 0, stop: int | None = None
) -> int:
    """Insert ``bars[start:stop]`` into ``ohlcv`` (idempotent); return the rows inserted."""
    exchange, symbol, timeframe = market
    stop = len(bars) if stop is None else stop
    rows = [
        dict(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            ts=int(bars.ts[i]),
            open=float(bars.open[i]),
            high=float(bars.high[i]),
            low=float(bars.low[i]),
            close=float(bars.close[i]),
            volume=float(bars.volume[i]),
        )
        for i in range(start, stop)
    ]
    with engine.begin() as connection:
        return insert_ignoring_duplicates(connection, schema.ohlcv, rows)


def bot_config(bot_id: str, strategy: str, market=ADA_BTC, *, resolve=None, **fields) -> BotConfig:
    """A validated :class:`BotConfig` (``resolve`` injects a test strategy resolver)."""
    exchange, symbol, timeframe = market
    data = dict(id=bot_id, strategy=strategy, exchange=exchange, symbol=symbol, timeframe=timeframe)
    data.update(fields)
    kwargs = {} if resolve is None else {"resolve": resolve}
    return parse_bot_config(data, source=f"test bot {bot_id}", **kwargs)


def replay(engine, bus, configs, *, settings=FAST_SETTINGS, from_ts=None, to_ts=None):
    """Run the real runner in replay mode until every bot is done; return its reports."""
    runner = Runner(engine, bus, configs, settings=settings, replay=Replay(from_ts, to_ts))
    return asyncio.run(runner.run())


def runner_fills(engine, bot_id: str) -> np.ndarray:
    """The bot's recorded fills as rows ``(ts, side, price, size, fee)`` (side +1 buy, -1 sell)."""
    from runner.ledger import trade_rows

    with engine.connect() as connection:
        rows = trade_rows(connection, bot_id)
    return np.array(
        [
            (
                row["ts"],
                1.0 if row["side"] == "buy" else -1.0,
                row["price"],
                row["size"],
                row["fee"],
            )
            for row in rows
        ],
        dtype=np.float64,
    ).reshape(-1, 5)


def backtest_fills(result) -> np.ndarray:
    """``research.backtest`` fills as rows ``(ts, side, price, size, fee)``."""
    fills = result.fills
    ts = fills["ts"].astype("int64").to_numpy() // 10**6 if len(fills) else np.empty(0)
    if len(fills) and fills["ts"].dt.unit != "ns":
        ts = fills["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    side = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0)
    return (
        np.column_stack(
            [ts, side, fills["price"].to_numpy(), fills["size"].to_numpy(), fills["fee"].to_numpy()]
        )
        .astype(np.float64)
        .reshape(-1, 5)
    )


def final_equity(engine, bot_id: str) -> float:
    """Equity at the bot's last recorded bar."""
    from sqlalchemy import select

    with engine.connect() as connection:
        value = connection.execute(
            select(schema.bot_performance.c.equity)
            .where(schema.bot_performance.c.bot_id == bot_id)
            .order_by(schema.bot_performance.c.ts.desc())
            .limit(1)
        ).scalar()
    return math.nan if value is None else float(value)


def count_rows(engine, table, bot_id: str) -> int:
    from sqlalchemy import func, select

    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(table).where(table.c.bot_id == bot_id)
            ).scalar_one()
        )


class LiveRunner:
    """The real runner following live bars in a background thread (a context manager)."""

    def __init__(self, engine, bus, configs, *, settings=FAST_SETTINGS, **options) -> None:
        import threading

        self.runner = Runner(engine, bus, configs, settings=settings, **options)
        self.reports = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="live-runner", daemon=True)

    def _main(self) -> None:
        try:
            self.reports = asyncio.run(self.runner.run())
        except BaseException as exc:  # noqa: BLE001 - surfaced by __exit__
            self.error = exc

    def __enter__(self) -> LiveRunner:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.runner.request_stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error is not None and exc_info[0] is None:
            raise self.error


def wait_for(
    predicate, timeout: float = 60.0, interval: float = 0.02, message: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true, or fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def cursor_ts(engine, bot_id: str) -> int | None:
    """The bot's committed cursor (close ts of its last processed bar)."""
    from sqlalchemy import select

    with engine.connect() as connection:
        return connection.execute(
            select(schema.bot_state.c.cursor_ts).where(schema.bot_state.c.bot_id == bot_id)
        ).scalar()


def table_rows(engine, table, bot_id: str, columns: tuple[str, ...]) -> list[tuple]:
    """``columns`` of every row of ``bot_id`` in ``table``, in ts (then seq) order."""
    from sqlalchemy import select

    order = (
        [table.c.bar_ts, table.c.seq]
        if "seq" in table.c
        else [table.c.ts]
        if "ts" in table.c
        else []
    )
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(*[table.c[name] for name in columns])
                .where(table.c.bot_id == bot_id)
                .order_by(*order)
            )
        ]


TRADE_COLUMNS = (
    "bar_ts",
    "seq",
    "ts",
    "side",
    "size",
    "price",
    "fee",
    "reason",
    "realized_pnl",
    "cash_after",
    "position_after",
)


# --------------------------------------------------------------------------- portfolio bots

BITTREX_1M = ("ADA-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC", "DASH-BTC")
"""Real Bittrex 1m markets of January 2018 (the first three ship with the repository; XLM and
DASH come from the wider collection). DASH has 1,493 gaps: an absent market very often."""


def bittrex_universe(names=BITTREX_1M, grid_bars: int | None = None) -> dict[str, Bars]:
    """``{symbol: Bars}`` of real Bittrex 1m markets, cut so that their union (the portfolio's
    grid) holds ``grid_bars`` close times (all of them when ``None``)."""
    from market_files import read_market_bars

    bars = {name.replace("-", "/"): read_market_bars(f"bittrex_{name}_1m.csv.gz") for name in names}
    first = max(int(one.ts[0]) for one in bars.values())  # the January 2018 segment
    bars = {
        symbol: one[int(np.searchsorted(one.ts, first - 3 * 3_600_000)) :]
        for symbol, one in bars.items()
    }
    if grid_bars is not None:
        grid = np.unique(np.concatenate([one.ts for one in bars.values()]))
        last = grid[min(grid_bars, len(grid)) - 1]
        bars = {
            symbol: one[: int(np.searchsorted(one.ts, last, side="right"))]
            for symbol, one in bars.items()
        }
    return bars


def portfolio_config(
    bot_id: str, portfolio: str, symbols, *, exchange="bittrex", timeframe="1m", **fields
):
    """A validated portfolio bot config over ``symbols``."""
    data = dict(
        id=bot_id,
        portfolio=portfolio,
        universe={"exchange": exchange, "timeframe": timeframe, "symbols": list(symbols)},
    )
    data.update(fields)
    return parse_bot_config(data, source=f"test bot {bot_id}")


def portfolio_fills(engine, bot_id: str) -> list[tuple]:
    """The bot's recorded fills as ``(ts, symbol, side, price, size, fee)``, in order."""
    from runner.ledger import trade_rows

    with engine.connect() as connection:
        rows = trade_rows(connection, bot_id)
    return [
        (row["ts"], row["symbol"], row["side"], row["price"], row["size"], row["fee"])
        for row in rows
    ]


def portfolio_backtest_fills(result) -> list[tuple]:
    """A portfolio backtest's fills as ``(ts, symbol, side, price, size, fee)``."""
    fills = result.fills
    ts = fills["ts"].dt.as_unit("ms").astype("int64").tolist()
    return list(
        zip(
            ts,
            fills["market"],
            fills["side"],
            fills["price"].tolist(),
            fills["size"].tolist(),
            fills["fee"].tolist(),
        )
    )


def equity_rows(engine, bot_id: str) -> np.ndarray:
    """``(ts, equity)`` of every recorded bar of ``bot_id``."""
    rows = table_rows(engine, schema.bot_performance, bot_id, ("ts", "equity"))
    return np.array(rows, dtype=np.float64).reshape(-1, 2)
