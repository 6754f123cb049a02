"""How far a runner's bots are: bars committed in this run, bars left to process.

The runner counts, when a bot recovers, the stored bars after its cursor (up to the end of a
replay): those are the bars it has left. Every commit adds the bars written per bot
(:class:`runner.market_group.MarketGroup`'s ``on_commit``). A replay's progress is then the
committed bars over the bars there were to process, summed over the bots; following live bars,
the bars left are the bots' lag behind the stored bars when they last recovered, less what they
committed since. Thread-safe: the market groups' threads report, any thread reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from candela.core import schema


def count_bars_after(
    connection: Connection, market: tuple[str, str, str], after_ts: int, until_ts: int | None = None
) -> int:
    """How many bars of ``market`` are stored with ``after_ts < ts <= until_ts`` (no upper
    bound when ``until_ts`` is ``None``)."""
    exchange, symbol, timeframe = market
    ohlcv = schema.ohlcv
    query = (
        select(func.count())
        .select_from(ohlcv)
        .where(
            ohlcv.c.exchange == exchange,
            ohlcv.c.symbol == symbol,
            ohlcv.c.timeframe == timeframe,
            ohlcv.c.ts > after_ts,
        )
    )
    if until_ts is not None:
        query = query.where(ohlcv.c.ts <= until_ts)
    return int(connection.execute(query).scalar_one())


@dataclass
class BotProgress:
    """One bot's bars in this run.

    Attributes
    ----------
    committed : int
        Bars committed since the runner started.
    expected : int
        ``committed`` at the bot's latest recovery plus the stored bars it had left then: the
        count ``committed`` reaches when the bot has processed every bar known at that time.
    """

    committed: int = 0
    expected: int = 0

    @property
    def left(self) -> int:
        """Bars left of those known at the latest recovery (never negative)."""
        return max(self.expected - self.committed, 0)


class Progress:
    """Bars committed and bars left, per bot; see the module docstring."""

    def __init__(self, bot_ids) -> None:
        self._lock = threading.Lock()
        self._bots = {bot_id: BotProgress() for bot_id in bot_ids}
        self._recovered: set[str] = set()
        self.fills = 0
        """Fills committed since the runner started (all bots)."""

    def recovered(self, bot_id: str, bars_left: int) -> None:
        """``bot_id`` recovered with ``bars_left`` stored bars after its cursor."""
        with self._lock:
            bot = self._bots[bot_id]
            bot.expected = bot.committed + bars_left
            self._recovered.add(bot_id)

    def all_recovered(self) -> bool:
        """Whether every bot has recovered once (before that, the totals are not all known)."""
        with self._lock:
            return len(self._recovered) == len(self._bots)

    def committed(self, counts: dict[str, int], fills: int = 0) -> None:
        """``counts[bot_id]`` more bars of each bot, and ``fills`` fills, were committed."""
        with self._lock:
            self.fills += fills
            for bot_id, count in counts.items():
                bot = self._bots[bot_id]
                bot.committed += count
                bot.expected = max(bot.expected, bot.committed)  # live bars arrived meanwhile

    def totals(self) -> tuple[int, int]:
        """``(committed, expected)`` summed over the bots."""
        with self._lock:
            return (
                sum(bot.committed for bot in self._bots.values()),
                sum(bot.expected for bot in self._bots.values()),
            )

    def bot(self, bot_id: str) -> BotProgress:
        """A copy of ``bot_id``'s progress."""
        with self._lock:
            bot = self._bots[bot_id]
            return BotProgress(bot.committed, bot.expected)
