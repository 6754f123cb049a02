"""What the database holds: markets, spans, bar counts, last update, open gaps.

``candela data status`` prints :func:`market_status`; ``candela data gaps`` prints the gap
ledger (:func:`data_pipeline.gaps.list_gaps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from candela.core.schema import collector_state, gaps, ohlcv
from candela.core.timeframes import timeframe_to_ms
from data_pipeline.gaps import Gap


@dataclass(frozen=True)
class MarketStatus:
    """One stored market.

    Attributes
    ----------
    bars : int
        Stored bars.
    first_ts, last_ts : int
        Close times of the oldest and newest stored bar (ms UTC).
    expected_bars : int
        Bars the span ``first_ts .. last_ts`` has on the timeframe grid.
    open_gaps : int
        Ledger gaps still ``open`` (rows rejected, to be asked again).
    confirmed_empty_bars : int
        Bars the exchange confirmed it has no data for (ledger ``confirmed_empty`` and the rest
        of ``partially_refetched`` gaps).
    collector_updated_at : int or None
        When a live collector last committed trades of this symbol (ms UTC), if ever.
    """

    exchange: str
    symbol: str
    timeframe: str
    bars: int
    first_ts: int
    last_ts: int
    expected_bars: int
    open_gaps: int
    confirmed_empty_bars: int
    collector_updated_at: int | None


def market_status(connection: Connection, exchange: str | None = None) -> list[MarketStatus]:
    """Every stored market (optionally of one exchange), ordered by exchange, symbol, timeframe."""
    query = select(
        ohlcv.c.exchange,
        ohlcv.c.symbol,
        ohlcv.c.timeframe,
        func.count(),
        func.min(ohlcv.c.ts),
        func.max(ohlcv.c.ts),
    ).group_by(ohlcv.c.exchange, ohlcv.c.symbol, ohlcv.c.timeframe)
    if exchange is not None:
        query = query.where(ohlcv.c.exchange == exchange)
    markets = connection.execute(
        query.order_by(ohlcv.c.exchange, ohlcv.c.symbol, ohlcv.c.timeframe)
    ).all()
    ledger: dict[tuple, list] = {}
    for row in connection.execute(
        select(gaps.c.exchange, gaps.c.symbol, gaps.c.timeframe, gaps.c.status, gaps.c.missing_bars)
    ):
        ledger.setdefault((row.exchange, row.symbol, row.timeframe), []).append(
            (row.status, row.missing_bars)
        )
    updated = {
        (row.exchange, row.symbol): row.updated_at
        for row in connection.execute(
            select(
                collector_state.c.exchange, collector_state.c.symbol, collector_state.c.updated_at
            )
        )
    }
    result = []
    for ex, symbol, timeframe, count, first, last in markets:
        entries = ledger.get((ex, symbol, timeframe), [])
        tf = timeframe_to_ms(timeframe)
        result.append(
            MarketStatus(
                exchange=ex,
                symbol=symbol,
                timeframe=timeframe,
                bars=int(count),
                first_ts=int(first),
                last_ts=int(last),
                expected_bars=(int(last) - int(first)) // tf + 1,
                open_gaps=sum(1 for status, _ in entries if status == "open"),
                confirmed_empty_bars=sum(n for status, n in entries if status == "confirmed_empty"),
                collector_updated_at=updated.get((ex, symbol)),
            )
        )
    return result


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def format_status(markets: list[MarketStatus]) -> str:
    """A plain-text table of :func:`market_status`."""
    if not markets:
        return "no market data stored yet: run 'candela data backfill' or 'candela data import'"
    header = (
        "exchange",
        "symbol",
        "tf",
        "bars",
        "first close (UTC)",
        "last close (UTC)",
        "missing",
        "open gaps",
        "collector update",
    )
    rows = [
        (
            m.exchange,
            m.symbol,
            m.timeframe,
            f"{m.bars:,}",
            _when(m.first_ts),
            _when(m.last_ts),
            f"{m.expected_bars - m.bars:,}",
            f"{m.open_gaps:,}",
            _when(m.collector_updated_at),
        )
        for m in markets
    ]
    return _table(header, rows)


def format_gaps(entries: list[Gap]) -> str:
    """A plain-text table of gap ledger rows."""
    if not entries:
        return "no gaps recorded"
    header = (
        "exchange",
        "symbol",
        "tf",
        "first missing (UTC)",
        "last missing (UTC)",
        "bars",
        "status",
        "detail",
    )
    rows = [
        (
            g.exchange,
            g.symbol,
            g.timeframe,
            _when(g.first_missing_ts),
            _when(g.last_missing_ts),
            f"{g.missing_bars:,}",
            g.status,
            g.detail or "",
        )
        for g in entries
    ]
    return _table(header, rows)


def _table(header: tuple, rows: list[tuple]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in (header, *rows)
    ]
    return "\n".join(lines)
