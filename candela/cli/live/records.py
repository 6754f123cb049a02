"""A bot's records and its market's bars, read for the reconciliation (docs/architecture.md §4).

:func:`load_records` returns a :class:`BotRecords`: the stored config (resolved to its
strategy), every decision (``signals``), every fill (``trades``), the lifecycle events, and
the market's bars over the decisions' span with their history, each bar with **every version
it had** (``ohlcv`` holds the current one, ``ohlcv_revisions`` the ones revisions replaced)
and when each was stored. :meth:`BotRecords.version_at` answers "what did this bar look like
at that moment", which is how the reconciliation rebuilds the bars a bot consumed.

All times are int64 ms UTC; a bar's ``ts`` is its close time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from candela.core import schema

VALUES = ("open", "high", "low", "close", "volume")


class ReconcileError(ValueError):
    """The bot cannot be reconciled (unknown, or its strategy no longer resolves); the message
    says why and what to do."""


@dataclass
class BotRecords:
    """Everything the reconciliation reads about one bot.

    Attributes
    ----------
    bot_id : str
    config : runner.config.BotConfig
        The stored config (``bots.config_json``), its strategy resolved as it is today.
    status : str
    registered_at : int
        When the bot (this version) was registered: bars stored before are history to it.
    signals : DataFrame
        One row per decision, by ``ts``: ``created_at`` (when it was made), ``raw_target``,
        ``target``, ``action``, ``executed``, ``price``, ``config_hash``, ``strategy_hash``.
    trades : DataFrame
        The recorded fills in order: ``bar_ts``, ``seq``, ``ts``, ``side``, ``size``,
        ``price``, ``fee``, ``reason``, ``realized_pnl``, ``cash_after``, ``position_after``.
    events : DataFrame
        ``bot_events`` rows (``ts``, ``event``, ``detail``) in order.
    bars : DataFrame
        The market's current bars, indexed by ``ts``: the history window before the first
        decision and every bar up to the last decision. Columns ``open`` .. ``volume``,
        ``stored_at`` (when this version was stored) and ``first_stored_at`` (when the bar
        was first stored, whatever its version; ``NaN`` when not recorded).
    revisions : DataFrame
        Replaced versions of those bars: ``ts``, ``open`` .. ``volume``, ``stored_at``,
        ``revised_at``, oldest first per bar.
    history : int
        Bars before a decision the strategy needs (its history window).
    """

    bot_id: str
    config: object
    status: str
    registered_at: int
    signals: pd.DataFrame
    trades: pd.DataFrame
    events: pd.DataFrame
    bars: pd.DataFrame
    revisions: pd.DataFrame
    history: int
    _chains: dict = field(default_factory=dict, repr=False)

    @property
    def market(self) -> tuple[str, str, str]:
        return self.config.market

    @property
    def timeframe_ms(self) -> int:
        return self.config.timeframe_ms

    def versions(self, ts: int) -> list[tuple[tuple[float, ...], float, float]]:
        """Every version of bar ``ts``: ``(values, stored_at, replaced_at)`` oldest first;
        the current one (if the bar is stored) last with ``replaced_at`` = ``inf``; times
        ``NaN`` where not recorded."""
        if not self._chains:
            for row in self.revisions.itertuples(index=False):
                self._chains.setdefault(int(row.ts), []).append(
                    (
                        tuple(float(getattr(row, name)) for name in VALUES),
                        _ms(row.stored_at),
                        float(row.revised_at),
                    )
                )
        chain = list(self._chains.get(int(ts), []))
        if ts in self.bars.index:
            row = self.bars.loc[ts]
            chain.append(
                (tuple(float(row[name]) for name in VALUES), _ms(row["stored_at"]), np.inf)
            )
        return chain

    def version_at(self, ts: int, moment: float) -> tuple[float, ...] | None:
        """Values of bar ``ts`` as stored at ``moment``, or ``None`` if it was not stored yet
        (a bar whose storage time is not recorded counts as stored before anything)."""
        chain = self.versions(ts)
        if not chain:
            return None
        first_stored = chain[0][1]
        if not np.isnan(first_stored) and first_stored > moment:
            return None
        for values, _stored, replaced in chain:
            if replaced > moment:
                return values
        return None  # every version was replaced by then and the bar is gone now


def _ms(value) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def load_records(engine: Engine, bot_id: str, *, resolve=None) -> BotRecords:
    """Read everything :mod:`candela.cli.live.reconcile` needs about ``bot_id``.

    ``resolve`` maps a strategy reference to its spec (default: the runner's resolver).

    Raises
    ------
    ReconcileError
        If no bot ``bot_id`` is stored, or its stored config no longer validates (e.g. its
        strategy file is gone).
    """
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli import strategy_model
    from runner.config import BotConfigError, parse_bot_config

    with engine.connect() as connection:
        bot = connection.execute(select(schema.bots).where(schema.bots.c.bot_id == bot_id)).first()
        if bot is None:
            known = (
                connection.execute(select(schema.bots.c.bot_id).order_by(schema.bots.c.bot_id))
                .scalars()
                .all()
            )
            raise ReconcileError(
                f"no bot {bot_id!r} in the database (bots: {', '.join(known) or 'none'}); "
                "'candela bots list' shows them"
            )
        options = {} if resolve is None else {"resolve": resolve}
        try:
            config = parse_bot_config(
                json.loads(bot.config_json), source=f"bot {bot_id} (its stored config)", **options
            )
        except BotConfigError as exc:
            raise ReconcileError(
                f"{exc}; the reconciliation reruns the bot's strategy, so it must "
                "resolve as it did when the bot ran"
            ) from exc
        signals = _frame(
            connection,
            select(
                schema.signals.c.ts,
                schema.signals.c.created_at,
                schema.signals.c.raw_target,
                schema.signals.c.target,
                schema.signals.c.action,
                schema.signals.c.executed,
                schema.signals.c.price,
                schema.signals.c.config_hash,
                schema.signals.c.strategy_hash,
            )
            .where(schema.signals.c.bot_id == bot_id)
            .order_by(schema.signals.c.ts),
        )
        trades = _frame(
            connection,
            select(
                *[
                    schema.trades.c[name]
                    for name in (
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
                ]
            )
            .where(schema.trades.c.bot_id == bot_id)
            .order_by(schema.trades.c.bar_ts, schema.trades.c.seq),
        )
        events = _frame(
            connection,
            select(schema.bot_events.c.ts, schema.bot_events.c.event, schema.bot_events.c.detail)
            .where(schema.bot_events.c.bot_id == bot_id)
            .order_by(schema.bot_events.c.ts, schema.bot_events.c.id),
        )
        history = int(
            strategy_model.history_window(config.spec, config.spec.make_params(config.params))
        )
        bars, revisions = _bars(connection, config.market, signals, history)
    return BotRecords(
        bot_id=bot_id,
        config=config,
        status=bot.status,
        registered_at=int(bot.created_at),
        signals=signals.set_index("ts", drop=False),
        trades=trades,
        events=events,
        bars=bars,
        revisions=revisions,
        history=history,
    )


def _frame(connection, query) -> pd.DataFrame:
    result = connection.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _bars(
    connection, market, signals: pd.DataFrame, history: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Current bars and replaced versions, from ``history`` bars before the first decision to the
    last decision."""
    table, old = schema.ohlcv, schema.ohlcv_revisions
    exchange, symbol, timeframe = market
    columns = [
        table.c.ts,
        *[table.c[name] for name in VALUES],
        table.c.ingested_at.label("stored_at"),
    ]
    empty = pd.DataFrame(columns=["ts", *VALUES, "stored_at", "first_stored_at"]).set_index(
        "ts", drop=False
    )
    if signals.empty:
        return empty, pd.DataFrame(columns=["ts", *VALUES, "stored_at", "revised_at"])
    first, last = int(signals["ts"].iloc[0]), int(signals["ts"].iloc[-1])
    key = (table.c.exchange == exchange, table.c.symbol == symbol, table.c.timeframe == timeframe)
    before = (
        connection.execute(
            select(table.c.ts)
            .where(*key, table.c.ts < first)
            .order_by(table.c.ts.desc())
            .limit(max(history - 1, 0))
        )
        .scalars()
        .all()
    )
    begin = min(before) if before else first
    bars = _frame(
        connection,
        select(*columns).where(*key, table.c.ts >= begin, table.c.ts <= last).order_by(table.c.ts),
    )
    revisions = _frame(
        connection,
        select(
            old.c.ts,
            *[old.c[name] for name in VALUES],
            old.c.ingested_at.label("stored_at"),
            old.c.revised_at,
        )
        .where(
            old.c.exchange == exchange,
            old.c.symbol == symbol,
            old.c.timeframe == timeframe,
            old.c.ts >= begin,
            old.c.ts <= last,
        )
        .order_by(old.c.ts, old.c.revised_at, old.c.id),
    )
    first_stored = (
        revisions.groupby("ts")["stored_at"].first() if len(revisions) else pd.Series(dtype=float)
    )
    bars["first_stored_at"] = [
        _earliest(first_stored.get(ts), stored)
        for ts, stored in zip(bars["ts"], bars["stored_at"], strict=True)
    ]
    return bars.set_index("ts", drop=False), revisions


def _earliest(replaced_version_stored, current_stored) -> float:
    """When a bar was first stored: its oldest version's time (``NaN`` if not recorded)."""
    if replaced_version_stored is not None and not pd.isna(replaced_version_stored):
        return float(replaced_version_stored)
    if (
        replaced_version_stored is None
        and current_stored is not None
        and not pd.isna(current_stored)
    ):
        return float(current_stored)
    return float("nan")
