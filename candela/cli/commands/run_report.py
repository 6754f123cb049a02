"""What ``candela run`` tells its user: what it starts, how far it is, what happened.

* :func:`describe` (before the runner starts): the database, the bus, every market with its
  stored bars, and every bot with where it resumes. Markets without a stored bar are named.
* :class:`ProgressReporter` (while it runs): a replay shows its progress (bars committed out of
  the bars to replay, bars/s and the time left), as a progress bar on a terminal and as a line
  every ``line_every`` seconds otherwise; following live bars, one summary line every
  ``summary_every`` seconds (bots running, bars and trades since the last line, the newest bar
  processed, database and bus health).
* :func:`final_report` (after it): one line per bot; a bot that processed no bar says why (its
  market has no stored bar, or no bar after its last processed one or in the window).

``bars`` always counts each bot's bars: five bots replaying 1,000 bars make 5,000 bars.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from candela.core import schema
from candela.core.db import redacted
from runner.portfolio_config import bot_markets


@dataclass(frozen=True)
class MarketBars:
    """Stored bars of one market: ``count``, close ts of the first and the last (or ``None``)."""

    count: int
    first_ts: int | None
    last_ts: int | None


def stored_bars(engine, markets) -> dict[tuple[str, str, str], MarketBars]:
    """:class:`MarketBars` of each ``(exchange, symbol, timeframe)`` of ``markets``."""
    ohlcv = schema.ohlcv
    found = {}
    with engine.connect() as connection:
        for market in markets:
            exchange, symbol, timeframe = market
            row = connection.execute(
                select(func.count(), func.min(ohlcv.c.ts), func.max(ohlcv.c.ts)).where(
                    ohlcv.c.exchange == exchange,
                    ohlcv.c.symbol == symbol,
                    ohlcv.c.timeframe == timeframe,
                )
            ).one()
            found[market] = MarketBars(int(row[0]), row[1], row[2])
    return found


def _cursors(engine, bot_ids) -> dict[str, int | None]:
    state = schema.bot_state
    with engine.connect() as connection:
        rows = connection.execute(
            select(state.c.bot_id, state.c.cursor_ts).where(state.c.bot_id.in_(list(bot_ids)))
        ).all()
    return {row.bot_id: row.cursor_ts for row in rows}


def market_name(market) -> str:
    """``binance BTC/USDT 1m``."""
    return " ".join(market)


def bus_description(bus) -> str:
    """Which bus the runner publishes on, and what that means for other processes."""
    url = getattr(bus, "url", None)
    if url:
        return f"Redis at {redacted(url)}"
    return (
        "in-process (CANDELA_REDIS_URL is not set: other processes, such as a notebook, "
        "see no signals; the database records everything)"
    )


def describe(engine, bus, configs, replay, markets: dict, url: str | None = None) -> list[str]:
    """The lines ``candela run`` prints before it starts (see the module docstring); ``url``
    is the database URL as the user gave it (default: the engine's)."""
    from research.formatting import fmt_count, fmt_time

    n_markets = len({market for config in configs for market in bot_markets(config)})
    if replay is None:
        mode = "following live bars (Ctrl-C or SIGTERM stops every bot after its current bar)"
    else:
        window = []
        if replay.from_ts is not None:
            window.append(f"from {fmt_time(replay.from_ts)}")
        window.append("to the newest" if replay.to_ts is None else f"to {fmt_time(replay.to_ts)}")
        mode = f"replaying stored bars {' '.join(window)}"
    lines = [
        f"candela run: {len(configs)} bot(s) on {n_markets} market(s), {mode}",
        f"  database  {redacted(url or engine.url.render_as_string(hide_password=False))}",
        f"  bus       {bus_description(bus)}",
    ]
    for market, bars in sorted(markets.items()):
        if bars.count:
            lines.append(
                f"  market    {market_name(market)}: {fmt_count(bars.count)} stored bars, "
                f"{fmt_time(bars.first_ts)} .. {fmt_time(bars.last_ts)}"
            )
        elif replay is None:
            lines.append(
                f"  market    {market_name(market)}: no stored bar yet; its bots wait for "
                "the first one ('candela data collect' stores them)"
            )
        else:
            lines.append(
                f"  market    {market_name(market)}: no stored bar: nothing to replay "
                "(store bars with 'candela data backfill' or 'candela data import')"
            )
    cursors = _cursors(engine, [config.bot_id for config in configs])
    for config in configs:
        params = ", ".join(f"{key}={value}" for key, value in config.params.items())
        cursor = cursors.get(config.bot_id)
        where = (
            f"resumes after {fmt_time(cursor)}"
            if cursor is not None
            else f"starts at {fmt_time(config.start)}"
            if config.start is not None
            else "new"
        )
        lines.append(
            f"  bot       {config.bot_id}: {config.strategy}({params}) on "
            f"{', '.join(market_name(m) for m in bot_markets(config))}; {where}"
        )
    return lines


class ProgressReporter:
    """Shows a runner's progress while it runs; see the module docstring.

    Parameters
    ----------
    runner : runner.process.Runner
    replay : bool
        A replay (progress and time left) or live (periodic summary).
    stream : file
        Where to write (default ``sys.stderr``).
    line_every : float
        Seconds between progress lines when ``stream`` is not a terminal.
    summary_every : float
        Seconds between live summary lines (0: none).
    """

    def __init__(
        self,
        runner,
        *,
        replay: bool,
        stream=None,
        line_every: float = 10.0,
        summary_every: float = 60.0,
    ) -> None:
        self.runner = runner
        self.replay = replay
        self.stream = stream if stream is not None else sys.stderr
        self.line_every = line_every
        self.summary_every = summary_every
        self.started = time.monotonic()
        self._bar = None
        self._last_line = self.started
        self._last_summary = (self.started, 0, 0)

    async def run(self) -> None:
        """Report until cancelled."""
        try:
            while True:
                await asyncio.sleep(min(0.5, self.line_every))
                self.tick()
        finally:
            self.close()

    def tick(self) -> None:
        """Update the display (called every half second, or every ``line_every`` if shorter)."""
        if self.replay:
            self._replay_progress()
        elif self.summary_every and time.monotonic() - self._last_summary[0] >= self.summary_every:
            self.stream.write(self.summary_line() + "\n")
            self.stream.flush()

    def _replay_progress(self) -> None:
        done, total = self.runner.progress.totals()
        # the total is known once every bot has recovered (a bot that cannot is waited for at
        # most 10 s): a bar that grows its total while it runs reads as lost work
        waiting = not self.runner.progress.all_recovered()
        if not total or (waiting and time.monotonic() - self.started < 10):
            return
        if self.stream.isatty():
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=total,
                    desc="replay",
                    unit=" bars",
                    file=self.stream,
                    smoothing=0.1,
                    dynamic_ncols=True,
                )
            self._bar.total = max(total, self._bar.total)
            self._bar.update(done - self._bar.n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.line_every:
            self._last_line = now
            self.stream.write(self.progress_line(done, total, now - self.started) + "\n")
            self.stream.flush()

    @staticmethod
    def progress_line(done: int, total: int, seconds: float) -> str:
        """``replay: 45% 22,500/50,000 bars, 2,250 bars/s, 12 s left``."""
        from research.formatting import fmt_count, fmt_duration

        rate = done / seconds if seconds > 0 else 0.0
        left = (
            f"{fmt_duration((total - done) / rate * 1000)} left"
            if rate > 0
            else "time left unknown"
        )
        share = 100.0 * done / total if total else 100.0
        return (
            f"replay: {share:.0f}% {fmt_count(done)}/{fmt_count(total)} bars, "
            f"{fmt_count(rate)} bars/s, {left}"
        )

    def summary_line(self) -> str:
        """One line on a live runner: bots by state, bars and trades since the last line,
        database and bus health."""
        from research.formatting import fmt_count

        now = time.monotonic()
        done, _ = self.runner.progress.totals()
        trades = self.runner.progress.fills
        since, done_before, trades_before = self._last_summary
        self._last_summary = (now, done, trades)
        states: dict[str, int] = {}
        for state in self.runner.bot_states().values():
            states[state] = states.get(state, 0) + 1
        bots = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        database = "DOWN" if self.runner.database.down else "ok"
        connected = getattr(self.runner.bus, "connected", True)
        bus = "ok" if connected else "DOWN (messages queued)"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return (
            f"{stamp}  bots: {bots}; {fmt_count(done - done_before)} bars and "
            f"{fmt_count(trades - trades_before)} fills in the last {now - since:.0f} s; "
            f"database {database}, bus {bus}"
        )

    def close(self) -> None:
        """Finish the progress bar, or (not on a terminal) print the last progress line."""
        if not self.replay:
            return
        done, total = self.runner.progress.totals()
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.close()
            self._bar = None
        elif total and not self.stream.isatty():
            seconds = time.monotonic() - self.started
            self.stream.write(self.progress_line(done, total, seconds) + "\n")
            self.stream.flush()


def final_report(engine, configs, reports, replay, markets: dict, seconds: float) -> list[str]:
    """One line per bot after the run, and the replay's throughput (see the module docstring)."""
    from research.formatting import fmt_count, fmt_time

    cursors = _cursors(engine, [config.bot_id for config in configs])
    lines = []
    total = 0
    for config in configs:
        report = reports[config.bot_id]
        total += report.bars
        status = report.status
        note = f"  error: {report.last_error}" if report.last_error else ""
        if report.bars == 0 and status in ("finished", "active"):
            market = max(bot_markets(config), key=lambda m: markets[m].count)
            bars = markets[market]
            cursor = cursors.get(config.bot_id)
            if not bars.count:
                status = "no bars"
                note = (
                    f"  {market_name(market)} has no stored bar: store some with "
                    "'candela data backfill' or 'candela data import'"
                )
            elif cursor is not None and cursor >= min(bars.last_ts, _end(replay, bars.last_ts)):
                status = "up to date"
                note = (
                    f"  already processed every stored bar (the newest closed "
                    f"{fmt_time(bars.last_ts)})"
                )
            else:
                status = "no bars"
                note = "  no stored bar in the requested window"
        lines.append(
            f"{config.bot_id:<24} {status:<10} bars={report.bars:<8,} "
            f"restarts={report.restarts}{note}"
        )
    if replay is not None and seconds > 0 and total:
        lines.append(
            f"replayed {fmt_count(total)} bars of {len(configs)} bot(s) in "
            f"{seconds:.1f} s: {fmt_count(total / seconds)} bars/s"
        )
    return lines


def _end(replay, newest: int) -> int:
    """The last bar close time a run goes to: ``--to`` of a replay, else ``newest``."""
    return newest if replay is None or replay.to_ts is None else replay.to_ts
