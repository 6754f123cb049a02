"""Universes: several stored markets of one timeframe, loaded as one :class:`~research.panel.Panel`.

A universe is an exchange, a timeframe and a list of symbols, or every symbol stored for that
exchange and timeframe (optionally of one quote currency) with data in a span, e.g. every
Binance USDT pair. :func:`load_universe` reads each market's bars (:func:`research.data.load_bars`)
and aligns them (:func:`research.panel.align`: one close-time grid, absent markets ``nan``);
:func:`coverage` tells, per market, how much of the grid it covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from candela.core.timeframes import timeframe_to_ms
from research.data import _engine, _to_utc, load_bars, to_ms
from research.panel import Panel, align


def universe_symbols(
    engine: Engine | str | None,
    exchange: str,
    timeframe: str,
    *,
    quote: str | None = None,
    start=None,
    end=None,
) -> list[str]:
    """The symbols stored for ``exchange`` at ``timeframe`` with at least one bar between
    ``start`` and ``end`` (inclusive close times; ``None``: unbounded), sorted; with ``quote``
    only those quoted in it (``"USDT"``: ``BTC/USDT``, ``ETH/USDT``, ...).

    Raises
    ------
    ValueError
        If none is stored (the message says what is).
    """
    engine = _engine(engine)
    timeframe_to_ms(timeframe)
    clauses, values = [], {"e": exchange, "t": timeframe}
    if start is not None:
        clauses.append(" AND ts >= :start")
        values["start"] = to_ms(start)
    if end is not None:
        clauses.append(" AND ts <= :end")
        values["end"] = to_ms(end)
    with engine.connect() as connection:
        symbols = sorted(
            connection.execute(
                text(
                    "SELECT DISTINCT symbol FROM ohlcv WHERE exchange = :e AND timeframe = :t"
                    + "".join(clauses)
                ),
                values,
            ).scalars()
        )
    if quote is not None:
        symbols = [symbol for symbol in symbols if symbol.split("/")[-1] == quote]
    if not symbols:
        what = f"{exchange} {timeframe}" + (f" quoted in {quote}" if quote else "")
        raise ValueError(
            f"no market of {what} has bars in the span: see research.inventory() "
            "for what is stored, or import/backfill the markets first"
        )
    return symbols


def load_universe(
    engine: Engine | str | None,
    exchange: str,
    timeframe: str,
    symbols: Sequence[str] | None = None,
    *,
    quote: str | None = None,
    start=None,
    end=None,
    history: int = 0,
) -> Panel:
    """Load a universe's bars as one panel.

    Parameters
    ----------
    engine : Engine, str or None
        As for :func:`research.data.load_bars`.
    exchange, timeframe : str
        One exchange and one timeframe for every market.
    symbols : sequence of str, optional
        The markets, in column order; default every stored one with data in the span
        (:func:`universe_symbols`, with ``quote``).
    quote : str, optional
        With ``symbols=None``: only the markets quoted in this currency.
    start, end : optional
        Inclusive bounds on the grid's close times (as :func:`research.data.load_bars`).
    history : int
        Also load up to this many grid bars before ``start`` (a strategy's history window, for
        a backtest that trades from ``start``); needs ``start``.

    Returns
    -------
    Panel
        Columns named by symbol.

    Raises
    ------
    ValueError
        For a symbol listed twice, a market that is not stored or has no bar in the span (the
        message names it and lists what is stored), markets without a common span, or a bad
        bound.
    """
    engine = _engine(engine)
    if symbols is None:
        symbols = universe_symbols(engine, exchange, timeframe, quote=quote, start=start, end=end)
    symbols = [str(symbol) for symbol in symbols]
    repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
    if repeated:
        raise ValueError(
            f"the universe lists {', '.join(repeated)} more than once: list each market once"
        )
    if not symbols:
        raise ValueError("a universe needs at least one symbol")
    if history and start is None:
        raise ValueError("history= loads bars before start=: give start too")
    start_ms = None if start is None else to_ms(start)
    bars = {}
    for symbol in symbols:
        try:
            bars[symbol] = _load(engine, exchange, symbol, timeframe, start_ms, end, history)
        except ValueError as exc:
            raise ValueError(f"universe market {exchange} {symbol} {timeframe}: {exc}") from None
    panel = align(bars, end=None if end is None else to_ms(end))
    if history and start_ms is not None:
        first = max(0, int(np.searchsorted(panel.ts, start_ms)) - int(history))
        panel = panel[first:]
    return panel


def _load(engine, exchange, symbol, timeframe, start_ms, end, history):
    if history:
        return load_bars(engine, exchange, symbol, timeframe, start_ms, end, history=history)
    return load_bars(engine, exchange, symbol, timeframe, start_ms, end)


def coverage(panel: Panel) -> pd.DataFrame:
    """How much of the panel's grid each market covers.

    Returns
    -------
    DataFrame
        One row per market (index ``market``): ``first`` and ``last`` (UTC close times of its
        first and last bar in the panel), ``bars`` (grid bars it has), ``coverage`` (``bars``
        over the grid's length, a fraction), ``before`` (grid bars before its first: not yet
        listed or not stored), ``missing`` (grid bars without a bar between its first and last:
        gaps) and ``after`` (grid bars after its last: delisted or not stored).
    """
    counts = panel.coverage_counts()
    n = len(panel)
    frame = pd.DataFrame(
        {
            "first": _to_utc(np.where(counts["bars"] > 0, counts["first_ts"], 0)),
            "last": _to_utc(np.where(counts["bars"] > 0, counts["last_ts"], 0)),
            "bars": counts["bars"],
            "coverage": counts["bars"] / n if n else np.zeros(panel.n_markets),
            "before": counts["before"],
            "missing": counts["missing"],
            "after": counts["after"],
        },
        index=pd.Index(list(panel.markets), name="market"),
    )
    empty = counts["bars"] == 0
    frame.loc[empty, ["first", "last"]] = pd.NaT
    return frame
