"""The live loop, end to end: exchange trades -> ``candela data collect`` -> closed bars
committed and announced -> ``candela run`` bots decide -> signals and virtual fills recorded.

Everything real but the exchange: the collector and the runner are the CLI commands, run as
separate processes, talking to each other through real PostgreSQL and Redis; the collector
reaches the loopback exchange (Binance's REST and WebSocket protocols, :mod:`live_exchange`)
through real ccxt. The exchange plays real recorded Binance trades (BTC/USDT and ETH/USDT,
2024-08-08 23:54 to 2024-08-09 00:05, shipped in ``tests/fixtures/market``), moved to start now
and sped up ``SPEED`` times; the collector's wall clock never runs ahead of the exchange's, so
candles close on trades, as on a busy market.

The oracles: the candles of the recorded trades (:func:`data_pipeline.aggregate.aggregate_trades`
over the whole list, itself checked against pandas and Binance's own klines elsewhere), minus
the first interval (the collector saw only its end) and the last (still open); and, for every
bot, ``research.backtest`` over the bars the collector stored, whose fills the bot's recorded
fills must equal exactly, one decision per bar.

The same loop then runs with a dropped WebSocket, a killed collector and a killed runner
(SIGKILL), each restarted: nothing is lost, nothing is duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from live_exchange import MINUTE_MS, LiveExchange, moved
from market_files import market_file
from mock_exchange import read_trade_file
from runner_support import backtest_fills, final_equity, runner_fills, wait_for
from sqlalchemy import func, select

import research
from candela.core import schema
from candela.core.bus import RedisBus
from candela.core.db import connect, now_ms
from data_pipeline.aggregate import aggregate_trades
from research.types import Bars, Stops
from strategies.registry import get_strategy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
SPEED = 20.0
"""Exchange seconds per wall-clock second: the 11 recorded minutes play in about 33 s."""
RECORDED_FROM = 1_723_161_000_000
"""2024-08-08 23:50 UTC: the trades of the later recorded window, after this time."""
MARKETS = {
    "BTC/USDT": ("BTCUSDT", "BTC", "USDT", "trades/trades_binance_BTC-USDT.csv.gz"),
    "ETH/USDT": ("ETHUSDT", "ETH", "USDT", "trades/trades_binance_ETH-USDT.csv.gz"),
}
COSTS = {"fee_rate": 0.001, "slippage_bps": 1.0}
BOTS = {  # short windows: the recorded stream makes ten closed 1m bars per market
    "btc-sma": ("BTC/USDT", "sma_cross", {"fast": 1, "slow": 2}, {}),
    "btc-donchian": (
        "BTC/USDT",
        "donchian_breakout",
        {"entry_window": 2, "exit_window": 1, "max_hold": 3, "allow_short": True},
        {},
    ),
    "eth-sma": ("ETH/USDT", "sma_cross", {"fast": 2, "slow": 3}, {}),
    "eth-sma-stop": ("ETH/USDT", "sma_cross", {"fast": 1, "slow": 2}, {"stop_loss": 0.0005}),
    "eth-donchian": (
        "ETH/USDT",
        "donchian_breakout",
        {"entry_window": 2, "exit_window": 1, "max_hold": 3, "allow_short": True},
        {},
    ),
}


class Loop:
    """One live loop: the exchange, the two processes, a Redis listener, the bots' configs."""

    def __init__(
        self,
        exchange: LiveExchange,
        url: str,
        redis_url: str,
        folder: Path,
        start_ms: int,
        trades: dict[str, list[dict]],
        prefix: str,
    ) -> None:
        self.exchange, self.url, self.redis_url, self.folder = exchange, url, redis_url, folder
        self.start_ms, self.trades, self.prefix = start_ms, trades, prefix
        self.engine = connect(url)
        self.environment = dict(os.environ, CANDELA_DATABASE_URL=url, CANDELA_REDIS_URL=redis_url)
        self.collector: subprocess.Popen | None = None
        self.runner: subprocess.Popen | None = None
        self.logs: list[tuple[str, str]] = []
        self._files: list = []
        self.announced: list[dict] = []
        self.signals: list[dict] = []
        self._lock = threading.Lock()
        self.listener = RedisBus(redis_url)
        end_ms = max(trade["ts"] for market in trades.values() for trade in market) + MINUTE_MS
        self.listener.subscribe(["market:binance:*"], self._on_bar(start_ms, end_ms))
        self.listener.subscribe([f"signals:{prefix}-*"], self._on_signal)

    def _on_bar(self, first_ms: int, last_ms: int):
        def record(_channel, payload):
            if first_ms <= payload.get("ts", 0) <= last_ms:  # ours (the shared Redis carries more)
                with self._lock:
                    self.announced.append(payload)

        return record

    def _on_signal(self, _channel, payload):
        with self._lock:
            self.signals.append(payload)

    # ------------------------------------------------------------------ processes

    def start_collector(self) -> None:
        command = [
            sys.executable,
            "-m",
            "candela.cli",
            "data",
            "collect",
            "--exchange",
            "binance",
            "--symbols",
            ",".join(MARKETS),
            "--timeframes",
            "1m",
            "--rest-url",
            self.exchange.http_url,
            "--ws-url",
            self.exchange.ws_url,
            "--rate-limit-ms",
            "1",
            "--timeout",
            "5",
        ]
        self.collector = self._spawn("collector", command)

    def start_runner(self) -> None:
        command = [
            sys.executable,
            "-m",
            "candela.cli",
            "run",
            "--bots",
            str(self.folder),
            "--poll",
            "0.2",
            "--heartbeat",
            "0.5",
        ]
        self.runner = self._spawn("runner", command)

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.folder.parent / f"{name}-{len(self.logs)}.log", "w")  # noqa: SIM115
        self._files.append(log)  # closed in close()
        self.logs.append((name, log.name))
        return subprocess.Popen(
            command, cwd=REPO, env=self.environment, stdout=log, stderr=subprocess.STDOUT
        )

    def kill(self, name: str) -> None:
        """SIGKILL the ``collector`` or the ``runner`` (no warning, no cleanup)."""
        process = getattr(self, name)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        setattr(self, name, None)

    def stop(self) -> None:
        """Stop both processes the way a user does (Ctrl-C / SIGTERM); check they exit cleanly."""
        for process, stop_signal, clean in (
            (self.runner, signal.SIGTERM, (0,)),
            (self.collector, signal.SIGINT, (0, 130)),
        ):
            if process is not None and process.poll() is None:
                process.send_signal(stop_signal)
                process.wait(60)
                assert process.returncode in clean, self.output()
        self.close()

    def close(self) -> None:
        """Kill what still runs; release the listener, the engine and the log files."""
        for process in (self.runner, self.collector):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
        self.listener.close()
        self.engine.dispose()
        for log in self._files:
            log.close()

    def output(self) -> str:
        return "\n".join(
            f"----- {name}\n{Path(path).read_text()[-3000:]}" for name, path in self.logs
        )

    def alive(self) -> None:
        """Fail if a process that should run has exited."""
        for name, process in (("collector", self.collector), ("runner", self.runner)):
            assert process is None or process.poll() is None, f"{name} exited\n{self.output()}"

    # ------------------------------------------------------------------ state

    def stored(self, symbol: str) -> np.ndarray:
        ohlcv = schema.ohlcv
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    ohlcv.c.ts,
                    ohlcv.c.open,
                    ohlcv.c.high,
                    ohlcv.c.low,
                    ohlcv.c.close,
                    ohlcv.c.volume,
                )
                .where(
                    ohlcv.c.exchange == "binance",
                    ohlcv.c.symbol == symbol,
                    ohlcv.c.timeframe == "1m",
                )
                .order_by(ohlcv.c.ts)
            ).all()
        return np.array(rows, dtype=np.float64).reshape(-1, 6)

    def cursor(self, bot_id: str) -> int | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(schema.bot_state.c.cursor_ts).where(schema.bot_state.c.bot_id == bot_id)
            ).scalar()

    def heartbeats(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                select(func.count())
                .select_from(schema.bots)
                .where(
                    schema.bots.c.heartbeat_at.is_not(None),
                    schema.bots.c.bot_id.like(f"{self.prefix}-%"),
                )
            ).scalar_one()

    def wait_until_exchange(self, ms: int) -> None:
        while self.exchange.now_ms < ms:
            self.alive()
            time.sleep(0.05)

    def closed_candles(self, symbol: str) -> np.ndarray:
        """The oracle: candles of every interval the collector saw whole (not the first one,
        whose start it missed, not the last one, still open)."""
        trades = self.trades[symbol]
        candles = aggregate_trades(
            [t["ts"] for t in trades],
            [float(t["price"]) for t in trades],
            [float(t["amount"]) for t in trades],
            MINUTE_MS,
        )
        table = np.column_stack(
            [candles.ts, candles.open, candles.high, candles.low, candles.close, candles.volume]
        )
        return table[1:-1]


@pytest.fixture
def loop(pg_url, redis_url, tmp_path):
    """The exchange and everything around it, before anything runs."""
    first = min(
        trade["ts"]
        for _, _, _, name in MARKETS.values()
        for trade in read_trade_file(market_file(name))
        if trade["ts"] > RECORDED_FROM
    )
    # whole minutes, so that the stream starts 30 s (of the exchange's clock) after it is started,
    # and the exchange's clock is always ahead of the wall clock (it runs faster)
    shift = -(-(now_ms() + 30_000 - first) // MINUTE_MS) * MINUTE_MS
    start_ms = first + shift - 30_000
    exchange = LiveExchange(start_ms, SPEED)
    trades = {}
    for symbol, (symbol_id, base, quote, name) in MARKETS.items():
        recorded = [
            trade for trade in read_trade_file(market_file(name)) if trade["ts"] > RECORDED_FROM
        ]
        trades[symbol] = moved(recorded, shift)
        exchange.add_trades(symbol_id, trades[symbol], base, quote)
    prefix = f"live-{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "bots"
    folder.mkdir()
    for bot_id, (symbol, strategy, params, stops) in BOTS.items():
        (folder / f"{prefix}-{bot_id}.json").write_text(
            json.dumps(
                dict(
                    strategy=strategy,
                    params=params,
                    exchange="binance",
                    symbol=symbol,
                    timeframe="1m",
                    costs=COSTS,
                    stops=stops,
                    start=start_ms,
                )
            )
        )
    with exchange:
        state = Loop(exchange, pg_url, redis_url, folder, start_ms, trades, prefix)
        try:
            yield state
        finally:
            state.close()


def _start(loop: Loop) -> None:
    """Start the collector and the runner, wait until both are ready, then start the exchange."""
    loop.start_collector()
    loop.start_runner()
    wait_for(
        lambda: len(loop.exchange.ws_subscriptions) >= len(MARKETS),
        120,
        interval=0.1,
        message=f"the collector's subscriptions\n{loop.output()}",
    )
    wait_for(
        lambda: loop.heartbeats() == len(BOTS),
        120,
        interval=0.1,
        message=f"the runner's bots\n{loop.output()}",
    )
    loop.exchange.start_clock()


def _finish(loop: Loop) -> dict[str, np.ndarray]:
    """Wait for the stream's end, every closed bar stored and processed; stop; return the bars."""
    last_trade = max(t["ts"] for trades in loop.trades.values() for t in trades)
    loop.wait_until_exchange(last_trade + 1000)
    expected = {symbol: loop.closed_candles(symbol) for symbol in MARKETS}
    for symbol, table in expected.items():
        count = len(table)
        wait_for(
            lambda symbol=symbol, count=count: len(loop.stored(symbol)) >= count,
            120,
            interval=0.2,
            message=f"the collector to store {symbol}'s bars\n{loop.output()}",
        )
    for bot_id, (symbol, *_rest) in BOTS.items():
        last = int(expected[symbol][-1, 0])
        wait_for(
            lambda bot=f"{loop.prefix}-{bot_id}", last=last: loop.cursor(bot) == last,
            120,
            interval=0.2,
            message=f"{bot_id} to process the last bar\n{loop.output()}",
        )
    loop.alive()
    loop.stop()
    return expected


def _check_bars_and_bots(loop: Loop, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stored bars = the trades' candles; every bot's fills = the backtest of the stored bars."""
    stored = {}
    for symbol, table in expected.items():
        got = loop.stored(symbol)
        assert got.shape == table.shape, symbol  # none lost, none extra
        np.testing.assert_array_equal(got[:, :5], table[:, :5])
        np.testing.assert_allclose(got[:, 5], table[:, 5], rtol=1e-12)  # summed in another order
        stored[symbol] = got
    fills = 0
    for bot_id, (symbol, strategy, params, stops) in BOTS.items():
        bot = f"{loop.prefix}-{bot_id}"
        table = stored[symbol]
        bars = Bars(table[:, 0].astype(np.int64), *table[:, 1:].T, MINUTE_MS)
        result = research.backtest(
            get_strategy(strategy), bars, params, COSTS, stops=Stops(**stops)
        )
        np.testing.assert_array_equal(
            runner_fills(loop.engine, bot), backtest_fills(result), err_msg=bot
        )
        assert final_equity(loop.engine, bot) == float(result.equity.iloc[-1])
        with loop.engine.connect() as connection:
            decided = (
                connection.execute(
                    select(schema.signals.c.ts)
                    .where(schema.signals.c.bot_id == bot)
                    .order_by(schema.signals.c.ts)
                )
                .scalars()
                .all()
            )
        assert decided == table[:, 0].astype(int).tolist()  # one decision per bar, none twice
        fills += len(result.fills)
    assert fills >= 10, "the bots should trade on these bars"
    return stored


def test_live_loop_collects_announces_and_trades_like_the_backtest(loop):
    _start(loop)
    expected = _finish(loop)
    stored = _check_bars_and_bots(loop, expected)
    # every stored bar was announced once, with its values, after its commit
    for symbol, table in stored.items():
        announced = sorted(
            (a for a in loop.announced if a["symbol"] == symbol), key=lambda a: a["ts"]
        )
        assert [a["ts"] for a in announced] == table[:, 0].astype(int).tolist()
        assert [a["close"] for a in announced] == table[:, 4].tolist()
    # and every decision was published
    decisions = sum(len(stored[symbol]) for symbol, *_rest in BOTS.values())
    assert len(loop.signals) == decisions
    assert loop.exchange.ws_connections == {"BTCUSDT": 1, "ETHUSDT": 1}  # nothing dropped here


def test_live_loop_survives_a_dropped_websocket_a_killed_collector_and_a_killed_runner(loop):
    _start(loop)
    begin = loop.start_ms + 30_000
    loop.wait_until_exchange(begin + 2 * MINUTE_MS + 30_000)
    assert loop.exchange.drop_websockets() >= len(MARKETS)  # the exchange drops every stream

    loop.wait_until_exchange(begin + 4 * MINUTE_MS + 20_000)
    loop.kill("collector")  # mid-minute: its open candles die with it
    loop.wait_until_exchange(begin + 5 * MINUTE_MS + 10_000)  # trades go on meanwhile
    loop.start_collector()

    loop.wait_until_exchange(begin + 7 * MINUTE_MS + 40_000)
    loop.kill("runner")
    loop.wait_until_exchange(begin + 8 * MINUTE_MS + 20_000)  # bars close meanwhile
    loop.start_runner()

    expected = _finish(loop)
    _check_bars_and_bots(loop, expected)
    requests = loop.exchange.requests
    # the collectors fetched what the streams missed (fromId), and the restarted one the trades of
    # the candles its predecessor left open (startTime)
    assert any(path.endswith("/aggTrades") and "fromId" in query for path, query in requests)
    assert any(path.endswith("/aggTrades") and "startTime" in query for path, query in requests)
    assert min(loop.exchange.ws_connections.values()) >= 3  # at first, after the drop and restart
    # what was announced and published is what was stored and recorded (a killed process may
    # take its last messages with it: the database remembers, the runner polls it)
    engine = connect(loop.url)
    with engine.connect() as connection:
        ohlcv, signals = schema.ohlcv, schema.signals
        rows = connection.execute(select(ohlcv.c.symbol, ohlcv.c.ts, ohlcv.c.close)).all()
        recorded = set(connection.execute(select(signals.c.bot_id, signals.c.ts)).all())
    engine.dispose()
    bars = {(symbol, int(ts)): close for symbol, ts, close in rows}
    assert all(bars.get((a["symbol"], a["ts"])) == a["close"] for a in loop.announced)
    assert {(s["bot_id"], s["ts"]) for s in loop.signals} <= recorded
