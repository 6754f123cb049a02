"""The live monitor of ``notebooks/04_live_monitor.ipynb``: ipywidgets, a plotly ``FigureWidget``.

:class:`Monitor` shows

* a banner: red when a bot's heartbeat is stale or its market's bars stopped (the conditions a
  live runner records and announces on ``system:events``, :mod:`runner.health`), green otherwise;
* a table of bots: status, heartbeat age, position, equity, P&L, last decision, bars behind,
  flags (:func:`candela.cli.live.snapshot.bot_rows`);
* for the chosen bot, start and stop buttons that run what ``candela bots start|stop`` runs
  (:func:`candela.cli.commands.bots.change_status`), and a chart of its market's candles with
  its fills and, below, its equity.

Where the data comes from: with ``CANDELA_REDIS_URL`` set, the monitor subscribes to
``market:*``, ``signals:*``, ``trades:*``, ``status:*`` and ``system:events``; a message is
applied at once (the live feed): a closed bar that follows the chart's last candle is appended,
a fill is drawn, a decision moves the chart on. Whatever the messages cannot supply (bars
missed while disconnected, bars a replay never announces, the equity line) is read from the
database (the catch-up), and every ``refresh`` seconds the table and the chart are brought up to
the database anyway, so a lost message only delays an update. :attr:`Monitor.counts` says how
much came from where.

In JupyterLab, ``monitor.start()`` follows in the background (until ``monitor.stop()``);
``await monitor.run(seconds)`` follows for a while and returns (papermill, tests).
"""

from __future__ import annotations

import asyncio
import html
import math
import threading
from collections import Counter, deque

import ipywidgets as widgets
import numpy as np

from candela.cli.commands import CommandError
from candela.cli.commands.bots import change_status
from candela.cli.live import monitor_view as view
from candela.cli.live import snapshot
from candela.cli.live.monitor_view import GREEN, RED
from candela.core.bus import SYSTEM_EVENTS, RedisBus, redis_url
from candela.core.db import connect
from candela.core.db import database_url as resolve_database_url
from candela.core.timeframes import timeframe_to_ms
from research.formatting import fmt_count, fmt_number, fmt_time

CHANNELS = ("market:*", "signals:*", "trades:*", "status:*", SYSTEM_EVENTS)


class Monitor:
    """Watch paper bots live; see the module docstring.

    Parameters
    ----------
    database_url : str, optional
        Default: ``CANDELA_DATABASE_URL``, else the embedded SQLite.
    redis : str, optional
        Redis URL for the live feed; default ``CANDELA_REDIS_URL``. Without one, the monitor
        reads everything from the database every ``refresh`` seconds.
    bots : list of str, optional
        The bots to show (default: every bot but retired versions).
    bars : int
        Candles in the chart.
    stale_after : float
        Seconds after which an active bot's heartbeat counts as stale.
    refresh : float
        Seconds between two reads of the database.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        redis: str | None = None,
        bots: list[str] | None = None,
        bars: int = 120,
        stale_after: float = 15.0,
        refresh: float = 1.0,
    ) -> None:
        self.url = resolve_database_url(database_url)
        self.bot_ids = bots
        self.bars = int(bars)
        self.stale_after_ms = int(stale_after * 1000)
        self.refresh_seconds = float(refresh)
        self.counts: Counter = Counter()
        """``messages``, ``refreshes``, ``bars_from_redis``, ``bars_from_database``,
        ``fills_from_redis``, ``fills_from_database``, ``chart_updates``."""
        self.notices: deque = deque(maxlen=5)
        self.rows: list[snapshot.BotRow] = []
        self._queue: deque = deque()
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._chart = _ChartState()

        self.banner = widgets.HTML()
        self.table = widgets.HTML()
        self.choice = widgets.Dropdown(description="bot", layout=widgets.Layout(width="320px"))
        spaced = dict(width="90px", margin="0 0 0 8px")
        self.start_button = widgets.Button(
            description="start",
            button_style="success",
            icon="play",
            tooltip="candela bots start (the runner starts it)",
            layout=widgets.Layout(**spaced),
        )
        self.stop_button = widgets.Button(
            description="stop",
            button_style="danger",
            icon="stop",
            tooltip="candela bots stop (the runner stops it after its bar)",
            layout=widgets.Layout(**spaced),
        )
        self.message = widgets.HTML(layout=widgets.Layout(margin="0 0 0 12px"))
        self.figure = view.figure()
        self.widget = widgets.VBox(
            [
                self.banner,
                self.table,
                widgets.HBox(
                    [self.choice, self.start_button, self.stop_button, self.message],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.figure,
            ]
        )
        self.start_button.on_click(lambda _button: self._act("start"))
        self.stop_button.on_click(lambda _button: self._act("stop"))
        self.choice.observe(lambda _change: self._chose(), names="value")

        self._bus = None
        self._subscription = None
        url = redis_url(redis)
        if url:  # listening first: nothing published after the first read is missed
            self._bus = RedisBus(url)
            self._subscription = self._bus.subscribe(CHANNELS, self._receive)
        self.engine = connect(self.url)
        self.refresh()

    # ------------------------------------------------------------------ following

    def start(self) -> None:
        """Follow in the background on the running event loop (JupyterLab) until :meth:`stop`."""
        self.stop()
        self._task = asyncio.get_event_loop().create_task(self.run())

    def stop(self) -> None:
        """Stop following (the widgets stay as they are)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def run(self, seconds: float | None = None, *, until_caught_up: bool = False) -> None:
        """Refresh every ``refresh`` seconds for ``seconds`` (forever when ``None``); with
        ``until_caught_up``, return earlier once every bot with a live heartbeat has processed
        its market's newest bar."""
        self._loop = asyncio.get_running_loop()
        deadline = math.inf if seconds is None else self._loop.time() + seconds
        try:
            while self._loop.time() < deadline:
                self.refresh()
                if until_caught_up and self.caught_up:
                    return
                await asyncio.sleep(self.refresh_seconds)
        finally:
            self._loop = None

    @property
    def caught_up(self) -> bool:
        """Every bot with a live heartbeat has processed its market's newest stored bar."""
        live = [
            row
            for row in self.rows
            if row.status == "active" and "heartbeat stale" not in row.flags
        ]
        return bool(live) and all(row.bars_behind == 0 for row in live)

    def summary(self) -> str:
        """One line: what the monitor did and where its data came from."""
        counts = self.counts
        return (
            f"{fmt_count(counts['refreshes'])} refreshes, "
            f"{fmt_count(counts['messages'])} messages from Redis; "
            f"candles: {fmt_count(counts['bars_from_redis'])} from Redis, "
            f"{fmt_count(counts['bars_from_database'])} from the database; fills: "
            f"{fmt_count(counts['fills_from_redis'])} from Redis, "
            f"{fmt_count(counts['fills_from_database'])} "
            f"from the database; the chart was updated {fmt_count(counts['chart_updates'])} times"
        )

    def close(self) -> None:
        """Stop following and release Redis and the database."""
        self.stop()
        if self._subscription is not None:
            self._subscription.close()
        if self._bus is not None:
            self._bus.close()
        self.engine.dispose()

    def _receive(self, channel: str, payload: dict) -> None:
        """From the subscriber's thread: queue the message and wake the monitor."""
        self._queue.append((channel, payload))
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._apply_messages)

    # ------------------------------------------------------------------ updates

    def refresh(self) -> None:
        """Apply the queued messages, read the table, catch the chart up from the database."""
        with self._lock:
            self.counts["refreshes"] += 1
            self._drain()
            self.rows = snapshot.bot_rows(
                self.engine, self.bot_ids, stale_after_ms=self.stale_after_ms
            )
            self.banner.value = view.banner(self.rows, list(self.notices))
            self.table.value = view.table(self.rows, self.choice.value)
            options = [row.bot_id for row in self.rows]
            if list(self.choice.options) != options:
                chosen = (
                    self.choice.value if self.choice.value in options else _first_choice(self.rows)
                )
                self.choice.options = options
                self.choice.value = chosen
            row = self._row(self.choice.value)
            if row is not None:
                self._catch_up(_chart_end(row))

    def _apply_messages(self) -> None:
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        """Apply every queued message: notices, and the chosen bot's bars, fills and decisions."""
        chart = self._chart
        decided = None
        changed = False
        while self._queue:
            channel, payload = self._queue.popleft()
            self.counts["messages"] += 1
            kind, _, key = channel.partition(":")
            if channel == SYSTEM_EVENTS:
                if payload.get("event") not in ("runner_started", "runner_stopped"):
                    self.notices.append(payload)
                continue
            if chart.bot is None:
                continue
            if kind == "market" and key == chart.market_key and "open" in payload:
                changed |= chart.add_bar(payload, self.counts, source="redis")
            elif kind == "trades" and key == chart.bot:
                changed |= chart.add_fill(payload, self.counts, source="redis")
            elif kind == "signals" and key == chart.bot:
                decided = max(decided or payload["ts"], payload["ts"])
        if decided is not None:
            changed |= self._catch_up(decided, draw=False)
        if changed:
            self._draw()

    def _catch_up(self, through: int | None, *, draw: bool = True) -> bool:
        """Read from the database what the chart lacks up to the bar ``through`` (a gap)."""
        chart = self._chart
        if chart.bot is None or through is None:
            return False
        changed = False
        if chart.last_ts is None or through > chart.last_ts:
            bars = snapshot.bars_between(
                self.engine, chart.market, chart.last_ts, through, last=self.bars
            )
            for index in range(len(bars["ts"])):
                changed |= chart.add_bar(
                    {name: bars[name][index] for name in bars},
                    self.counts,
                    source="database",
                    contiguous=False,
                )
            after = chart.fills_through
            if after is None and len(bars["ts"]):
                after = int(bars["ts"][0]) - 1
            for fill in snapshot.fills_between(self.engine, chart.bot, after, through):
                changed |= chart.add_fill(fill, self.counts, source="database")
            chart.fills_through = through
        if chart.equity_ts is None or through > chart.equity_ts:
            equity = snapshot.equity_between(
                self.engine, chart.bot, chart.equity_ts, through, last=self.bars
            )
            if len(equity["ts"]):
                chart.equity.extend(
                    zip(equity["ts"].tolist(), equity["equity"].tolist(), strict=True)
                )
                chart.equity_ts = int(equity["ts"][-1])
                changed = True
        if changed and draw:
            self._draw()
        return changed

    def _draw(self) -> None:
        chart = self._chart
        chart.trim(self.bars)
        self.counts["chart_updates"] += 1
        ts = np.array(chart.ts, dtype=np.int64)
        times = view.times(ts)
        buys = [fill for fill in chart.fills.values() if fill["side"] == "buy"]
        sells = [fill for fill in chart.fills.values() if fill["side"] == "sell"]
        with self.figure.batch_update():
            candles = self.figure.data[0]
            candles.x, candles.open, candles.high, candles.low, candles.close = (
                times,
                chart.open,
                chart.high,
                chart.low,
                chart.close,
            )
            for trace, fills in ((self.figure.data[1], buys), (self.figure.data[2], sells)):
                trace.x = view.times([fill["ts"] for fill in fills])
                trace.y = [fill["price"] for fill in fills]
                trace.text = [
                    f"{fill['side']} {fmt_number(fill['size'])} at {fmt_number(fill['price'])} "
                    f"({fill['reason']})"
                    for fill in fills
                ]
            self.figure.data[3].x = view.times([point[0] for point in chart.equity])
            self.figure.data[3].y = [point[1] for point in chart.equity]
            row = self._row(chart.bot)
            title = f"{chart.bot}: {row.strategy} on {' '.join(row.market)}" if row else chart.bot
            if len(ts):
                title += f", last bar {fmt_time(int(ts[-1]))}"
            self.figure.layout.title.text = title

    # ------------------------------------------------------------------ the chosen bot

    def _row(self, bot_id):
        return next((row for row in self.rows if row.bot_id == bot_id), None)

    def _chose(self) -> None:
        row = self._row(self.choice.value)
        with self._lock:
            self._chart = _ChartState(row)
            if row is not None:
                self.table.value = view.table(self.rows, row.bot_id)
                self._catch_up(_chart_end(row), draw=False)
                self._draw()

    def _act(self, action: str) -> None:
        bot_id = self.choice.value
        if bot_id is None:
            return
        try:
            line = change_status(self.url, bot_id, action, source="from the live monitor")
            self.message.value = f"<span style='color:{GREEN}'>{html.escape(line)}</span>"
        except CommandError as exc:
            self.message.value = f"<span style='color:{RED}'>error: {html.escape(str(exc))}</span>"
        self.refresh()


class _ChartState:
    """The chosen bot's chart data: candles, fills by (bar_ts, seq), equity points."""

    def __init__(self, row: snapshot.BotRow | None = None) -> None:
        self.bot = None if row is None else row.bot_id
        self.market = None if row is None else row.market
        self.market_key = None if row is None else ":".join(row.market)
        self.timeframe_ms = None if row is None else timeframe_to_ms(row.market[2])
        self.ts: list[int] = []
        self.open: list[float] = []
        self.high: list[float] = []
        self.low: list[float] = []
        self.close: list[float] = []
        self.fills: dict[tuple[int, int], dict] = {}
        self.fills_through: int | None = None
        self.equity: list[tuple[int, float]] = []
        self.equity_ts: int | None = None

    @property
    def last_ts(self) -> int | None:
        return self.ts[-1] if self.ts else None

    def add_bar(self, bar: dict, counts: Counter, *, source: str, contiguous: bool = True) -> bool:
        """Append ``bar`` if it is newer than the last candle (from Redis: only if it is the very
        next bar; otherwise the database fills the gap)."""
        ts = int(bar["ts"])
        if self.ts and ts <= self.ts[-1]:
            return False
        if contiguous and self.ts and ts != self.ts[-1] + self.timeframe_ms:
            return False  # a gap: the catch-up reads it from the database
        self.ts.append(ts)
        for name in ("open", "high", "low", "close"):
            getattr(self, name).append(float(bar[name]))
        counts[f"bars_from_{source}"] += 1
        return True

    def add_fill(self, fill: dict, counts: Counter, *, source: str) -> bool:
        """Keep ``fill`` unless known, or older than the first candle (a message that arrives
        after the chart has moved past its bar)."""
        key = (int(fill["bar_ts"]), int(fill["seq"]))
        if key in self.fills or (self.ts and key[0] < self.ts[0]):
            return False
        self.fills[key] = {
            name: fill[name] for name in ("bar_ts", "ts", "side", "size", "price", "reason")
        }
        counts[f"fills_from_{source}"] += 1
        return True

    def trim(self, bars: int) -> None:
        """Keep the last ``bars`` candles, and the fills and equity from the first of them on."""
        cut = max(len(self.ts) - bars, 0)
        for name in ("ts", "open", "high", "low", "close"):
            setattr(self, name, getattr(self, name)[cut:])
        if not self.ts:
            return
        first = self.ts[0]
        self.fills = {key: fill for key, fill in self.fills.items() if key[0] >= first}
        self.equity = [point for point in self.equity if point[0] >= first]


def _chart_end(row: snapshot.BotRow) -> int | None:
    """The last bar to chart: the bot's last decision, else its market's newest bar."""
    return row.cursor_ts if row.cursor_ts is not None else row.newest_bar_ts


def _first_choice(rows: list[snapshot.BotRow]) -> str | None:
    """The bot charted first: the first that trades without a flag, else the first one."""
    healthy = [row for row in rows if row.cursor_ts is not None and not row.flags]
    return (healthy or rows)[0].bot_id if rows else None
