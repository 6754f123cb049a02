"""Trades to closed candles, and fine candles to coarser ones, vectorized with numpy.

Conventions (docs/architecture.md §2): a candle's ``ts`` is its **close** time; the candle labelled ``T``
on timeframe ``tf`` holds the trades with ``T - tf <= t < T``, the same trades as the exchange's
candle whose open time is ``T - tf``.

Intervals without trades follow the exchange's rule, chosen with ``empty``:

``"flat"`` (Binance)
    a candle is emitted with volume 0 and ``open = high = low = close =`` the previous close.
``"omit"`` (Bittrex)
    no candle is emitted.

Rolling candles up (:func:`resample_candles`) uses Binance's rule, which reproduces the
exchange's own coarser candles exactly (checked against Binance's 5m, 1h, 4h and 1d candles in
``tests/data_pipeline/test_aggregate_real.py``): zero-volume candles are
ignored for open/high/low/close; a coarse interval whose candles all have zero volume is a flat
candle at the previous close.

Everything here works on whole arrays (``np.*.reduceat`` over the boundaries of intervals);
there is no Python loop per trade.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EMPTY_RULES = ("flat", "omit")


class Candles(NamedTuple):
    """Candles as aligned arrays; ``ts`` = close time (int64 ms UTC)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    """Number of trades (rows) in the candle (int64)."""
    quote_volume: np.ndarray
    """Sum of ``price * amount``."""
    taker_buy_volume: np.ndarray
    """Base volume of trades whose taker bought (``buyer_maker`` false); NaN when unknown."""

    @property
    def size(self) -> int:
        """Number of candles."""
        return len(self.ts)

    def take(self, index) -> Candles:
        """The candles selected by a boolean mask or index array."""
        return Candles(*(column[index] for column in self))


def empty_candles() -> Candles:
    """No candles (correct dtypes)."""
    f = np.empty(0)
    return Candles(np.empty(0, np.int64), f, f, f, f, f, np.empty(0, np.int64), f, f)


def _check_rule(empty: str) -> None:
    if empty not in EMPTY_RULES:
        raise ValueError(
            f"empty must be one of {EMPTY_RULES} (Binance: 'flat', Bittrex: 'omit'), got {empty!r}"
        )


def _check_timeframe(timeframe_ms) -> int:
    if (
        isinstance(timeframe_ms, bool)
        or not isinstance(timeframe_ms, (int, np.integer))
        or timeframe_ms <= 0
    ):
        raise ValueError(
            f"timeframe_ms must be a positive integer of milliseconds, got {timeframe_ms!r}"
        )
    return int(timeframe_ms)


def aggregate_trades(
    ts, price, amount, timeframe_ms: int, *, buyer_maker=None, empty: str = "flat"
) -> Candles:
    """Candles of every interval from the first trade's to the last trade's.

    Parameters
    ----------
    ts : array_like of int
        Trade times, ms UTC, non-decreasing (sort by ``(ts, id)`` first).
    price, amount : array_like of float
        Trade price and base-asset amount.
    timeframe_ms : int
        Candle length.
    buyer_maker : array_like of bool, optional
        Binance's ``m`` flag (the buyer was the maker, i.e. the taker sold); gives
        ``taker_buy_volume``.
    empty : {"flat", "omit"}
        What an interval without trades becomes (see the module docstring).

    Returns
    -------
    Candles
        One candle per interval; the last one may still be open if its interval has not ended —
        the caller decides (see :class:`CandleAggregator` for live use).

    Raises
    ------
    ValueError
        If the arrays do not align, ``ts`` decreases, or ``timeframe_ms``/``empty`` is invalid.
    """
    tf = _check_timeframe(timeframe_ms)
    _check_rule(empty)
    ts = np.asarray(ts, dtype=np.int64)
    price = np.asarray(price, dtype=np.float64)
    amount = np.asarray(amount, dtype=np.float64)
    if price.shape != ts.shape or amount.shape != ts.shape or ts.ndim != 1:
        raise ValueError("ts, price and amount must be 1-D arrays of the same length")
    if len(ts) == 0:
        return empty_candles()
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        raise ValueError("trade ts must be non-decreasing: sort the trades by (ts, id) first")
    taker_buy = None
    if buyer_maker is not None:
        maker = np.asarray(buyer_maker, dtype=bool)
        if maker.shape != ts.shape:
            raise ValueError("buyer_maker must align with ts")
        taker_buy = np.where(maker, 0.0, amount)
    candles = _group(ts // tf * tf + tf, price, amount, taker_buy)
    return fill_empty(candles, tf) if empty == "flat" else candles


def _group(
    bucket: np.ndarray, price: np.ndarray, amount: np.ndarray, taker_buy: np.ndarray | None
) -> Candles:
    """One candle per run of equal ``bucket`` values (bucket = close time), no filling."""
    n = len(bucket)
    starts = np.concatenate(([0], np.flatnonzero(bucket[1:] != bucket[:-1]) + 1))
    ends = np.concatenate((starts[1:], [n]))
    return Candles(
        ts=bucket[starts],
        open=price[starts],
        high=np.maximum.reduceat(price, starts),
        low=np.minimum.reduceat(price, starts),
        close=price[ends - 1],
        volume=np.add.reduceat(amount, starts),
        trades=(ends - starts).astype(np.int64),
        quote_volume=np.add.reduceat(price * amount, starts),
        taker_buy_volume=(
            np.add.reduceat(taker_buy, starts)
            if taker_buy is not None
            else np.full(len(starts), np.nan)
        ),
    )


def fill_empty(
    candles: Candles,
    timeframe_ms: int,
    *,
    previous_ts: int | None = None,
    previous_close: float | None = None,
) -> Candles:
    """Insert flat zero-volume candles for every interval missing between candles.

    With ``previous_ts``/``previous_close`` (the last candle already emitted), intervals between
    it and the first candle are filled too.
    """
    tf = _check_timeframe(timeframe_ms)
    if candles.size == 0:
        return candles
    first = candles.ts[0] if previous_ts is None else previous_ts + tf
    last = int(candles.ts[-1])
    count = (last - int(first)) // tf + 1
    if count == candles.size:
        return candles
    slot = (candles.ts - first) // tf
    grid_ts = first + np.arange(count, dtype=np.int64) * tf
    filled = np.zeros(count, dtype=bool)
    filled[slot] = True
    # close of the latest non-empty candle at or before each slot (the "previous close")
    source = np.where(filled, np.arange(count), -1)
    np.maximum.accumulate(source, out=source)
    closes = np.full(count, np.nan)
    closes[slot] = candles.close
    carry = np.where(
        source >= 0,
        closes[np.maximum(source, 0)],
        np.nan if previous_close is None else previous_close,
    )

    def column(values, fill, dtype=np.float64):
        out = np.empty(count, dtype=dtype)
        out[:] = fill
        out[slot] = values
        return out

    result = Candles(
        ts=grid_ts,
        open=column(candles.open, carry),
        high=column(candles.high, carry),
        low=column(candles.low, carry),
        close=column(candles.close, carry),
        volume=column(candles.volume, 0.0),
        trades=column(candles.trades, 0, np.int64),
        quote_volume=column(candles.quote_volume, 0.0),
        taker_buy_volume=column(candles.taker_buy_volume, 0.0),
    )
    if previous_close is None:  # nothing known before the first candle: never invent a price
        keep = ~np.isnan(result.close)
        result = result.take(keep)
    return result


def resample_candles(
    ts,
    open,
    high,
    low,
    close,
    volume,
    source_ms: int,
    target_ms: int,
    *,  # noqa: A002
    complete_only: bool = True,
) -> Candles:
    """Roll candles up to a coarser timeframe with Binance's zero-volume rule.

    Parameters
    ----------
    ts, open, high, low, close, volume : array_like
        Source candles, ``ts`` = close times, strictly increasing, on the ``source_ms`` grid.
    source_ms, target_ms : int
        Source and target timeframe; ``target_ms`` must be a multiple of ``source_ms``.
    complete_only : bool
        Emit only coarse candles whose every source candle is present (default). ``False`` also
        emits coarse candles from the source candles that exist.

    Returns
    -------
    Candles
        ``trades``/``quote_volume``/``taker_buy_volume`` are not known from candles: ``trades``
        holds the number of source candles, the others NaN.
    """
    source = _check_timeframe(source_ms)
    target = _check_timeframe(target_ms)
    if target % source:
        raise ValueError(
            f"target timeframe ({target} ms) must be a multiple of the source ({source} ms)"
        )
    ts = np.asarray(ts, dtype=np.int64)
    o, h, lo, c, v = (np.asarray(x, dtype=np.float64) for x in (open, high, low, close, volume))
    if len(ts) == 0:
        return empty_candles()
    if (np.diff(ts) <= 0).any() or (ts % source).any():
        raise ValueError("source ts must be strictly increasing close times on the source grid")
    bucket = (ts - 1) // target * target + target
    n = len(ts)
    starts = np.concatenate(([0], np.flatnonzero(bucket[1:] != bucket[:-1]) + 1))
    ends = np.concatenate((starts[1:], [n]))
    traded = v > 0
    index = np.arange(n)
    first_traded = np.minimum.reduceat(np.where(traded, index, n), starts)
    last_traded = np.maximum.reduceat(np.where(traded, index, -1), starts)
    any_traded = first_traded < n
    high_traded = np.maximum.reduceat(np.where(traded, h, -np.inf), starts)
    low_traded = np.minimum.reduceat(np.where(traded, lo, np.inf), starts)
    flat = o[starts]  # all zero volume: flat at the previous close (what the flat candles hold)
    result = Candles(
        ts=bucket[starts],
        open=np.where(any_traded, o[np.minimum(first_traded, n - 1)], flat),
        high=np.where(any_traded, high_traded, flat),
        low=np.where(any_traded, low_traded, flat),
        close=np.where(any_traded, c[np.maximum(last_traded, 0)], flat),
        volume=np.add.reduceat(v, starts),
        trades=(ends - starts).astype(np.int64),
        quote_volume=np.full(len(starts), np.nan),
        taker_buy_volume=np.full(len(starts), np.nan),
    )
    if complete_only:
        result = result.take(result.trades == target // source)
    return result


class CandleAggregator:
    """Live trades -> closed candles for several timeframes of one market.

    Feed trades in batches with :meth:`add` (each batch sorted by trade id, every trade once;
    the collector dedupes). A candle closes when a trade of a later interval arrives, or when
    :meth:`close_until` is told the wall clock has passed its close time. Closed candles are
    returned once, oldest first, per timeframe; the candle still open is kept.

    The first interval of each timeframe is only partly observed (the aggregator started inside
    it), so candles opening before ``emit_from_ms`` are never emitted; by default that is the
    first trade's time. Backfill fills that edge from the exchange's own candles. A collector
    that restarts hands over what it knows of each open interval with :meth:`resume` instead.

    Parameters
    ----------
    timeframes_ms : dict of str to int
        Timeframe name -> length, e.g. ``{"1m": 60_000, "1h": 3_600_000}``.
    empty : {"flat", "omit"}
        The exchange's rule for intervals without trades.
    emit_from_ms : int, optional
        Earliest candle **open** time that may be emitted.
    """

    def __init__(
        self, timeframes_ms: dict[str, int], *, empty: str = "flat", emit_from_ms: int | None = None
    ):
        _check_rule(empty)
        if not timeframes_ms:
            raise ValueError("give at least one timeframe")
        self.timeframes = {name: _check_timeframe(ms) for name, ms in timeframes_ms.items()}
        self.empty = empty
        self._emit_from: dict[str, int | None] = dict.fromkeys(self.timeframes, emit_from_ms)
        self._open: dict[str, Candles | None] = dict.fromkeys(self.timeframes)
        self._last_emitted_ts: dict[str, int | None] = dict.fromkeys(self.timeframes)
        self._last_close: dict[str, float | None] = dict.fromkeys(self.timeframes)
        self.late_trades = 0

    def open_candle(self, timeframe: str) -> Candles | None:
        """The candle still open on ``timeframe`` (one row), if any."""
        return self._open[timeframe]

    def add(self, ts, price, amount, buyer_maker=None) -> dict[str, Candles]:
        """Add trades (time order); return the candles this closed, per timeframe."""
        ts = np.asarray(ts, dtype=np.int64)
        price = np.asarray(price, dtype=np.float64)
        amount = np.asarray(amount, dtype=np.float64)
        if len(ts):
            for name, start in self._emit_from.items():
                if start is None:
                    self._emit_from[name] = int(ts.min())
        if len(ts) > 1 and (np.diff(ts) < 0).any():
            order = np.argsort(ts, kind="stable")
            ts, price, amount = ts[order], price[order], amount[order]
            if buyer_maker is not None:
                buyer_maker = np.asarray(buyer_maker)[order]
        taker_buy = (
            None if buyer_maker is None else np.where(np.asarray(buyer_maker, bool), 0.0, amount)
        )
        closed = {}
        for name, tf in self.timeframes.items():
            closed[name] = self._add_one(name, tf, ts, price, amount, taker_buy)
        return closed

    def _add_one(self, name, tf, ts, price, amount, taker_buy) -> Candles:
        current = self._open[name]
        floor = (
            current.ts[0] - tf
            if current is not None
            else (self._last_emitted_ts[name] if self._last_emitted_ts[name] is not None else None)
        )
        if floor is not None:
            late = ts < floor
            if late.any():
                self.late_trades += int(np.count_nonzero(late))
                keep = ~late
                ts, price, amount = ts[keep], price[keep], amount[keep]
                taker_buy = None if taker_buy is None else taker_buy[keep]
        if len(ts) == 0:
            return empty_candles()
        groups = _group(ts // tf * tf + tf, price, amount, taker_buy)
        if current is not None:
            if groups.ts[0] == current.ts[0]:
                merged = Candles(
                    ts=current.ts,
                    open=current.open,
                    high=np.maximum(current.high, groups.high[:1]),
                    low=np.minimum(current.low, groups.low[:1]),
                    close=groups.close[:1],
                    volume=current.volume + groups.volume[:1],
                    trades=current.trades + groups.trades[:1],
                    quote_volume=current.quote_volume + groups.quote_volume[:1],
                    taker_buy_volume=current.taker_buy_volume + groups.taker_buy_volume[:1],
                )
                groups = _concat(merged, groups.take(slice(1, None)))
            else:
                groups = _concat(current, groups)
        if self.empty == "flat":
            groups = fill_empty(
                groups,
                tf,
                previous_ts=self._last_emitted_ts[name],
                previous_close=self._last_close[name],
            )
        self._open[name] = groups.take(slice(-1, None))
        return self._emit(name, tf, groups.take(slice(0, -1)))

    def resume(
        self,
        timeframe: str,
        *,
        open_from_ms: int,
        previous: tuple[int, float] | None = None,
        partial: Candles | None = None,
    ) -> None:
        """Continue ``timeframe`` where an earlier aggregator of the same market stopped.

        Parameters
        ----------
        open_from_ms : int
            Open time of the first candle this aggregator may emit: the interval the earlier
            one left open, when its part before the trades still to come is known (``partial``,
            or nothing of it happened yet), else the interval after it (that one is skipped).
        previous : (close ts, close), optional
            The stored candle just before, for the flat candles of intervals without trades.
        partial : Candles, optional
            One candle: the open interval's part known so far (built from stored finer
            candles); the trades added next extend it.
        """
        self._emit_from[timeframe] = int(open_from_ms)
        if previous is not None:
            self._last_emitted_ts[timeframe] = int(previous[0])
            self._last_close[timeframe] = float(previous[1])
        self._open[timeframe] = partial

    def close_until(self, now_ms: int, *, fill_empty: bool | None = None) -> dict[str, Candles]:
        """Close every candle whose interval ended at or before ``now_ms`` (wall clock).

        Parameters
        ----------
        now_ms : int
            The wall clock, ms UTC.
        fill_empty : bool, optional
            Also emit flat candles for elapsed intervals without any trade (default: when
            ``empty="flat"``). A live collector passes ``False``: silence on a stream does not prove
            there were no trades, so those candles wait for the next trade, whose id shows that
            nothing was missed.
        """
        fill = self.empty == "flat" if fill_empty is None else fill_empty
        closed = {}
        for name, tf in self.timeframes.items():
            current = self._open[name]
            last_due = now_ms // tf * tf  # close time of the newest interval that has ended
            if current is None:
                previous = self._last_emitted_ts[name]
                if not fill or previous is None or last_due <= previous:
                    closed[name] = empty_candles()
                    continue
                close = self._last_close[name]
                count = (last_due - previous) // tf
                closed[name] = self._emit(name, tf, _flat(previous + tf, count, tf, close))
                continue
            if current.ts[0] > now_ms:
                closed[name] = empty_candles()
                continue
            candles = current
            if fill and last_due > current.ts[0]:
                count = (last_due - int(current.ts[0])) // tf
                candles = _concat(
                    current, _flat(int(current.ts[0]) + tf, count, tf, float(current.close[0]))
                )
            self._open[name] = None
            closed[name] = self._emit(name, tf, candles)
        return closed

    def _emit(self, name: str, tf: int, candles: Candles) -> Candles:
        if candles.size == 0:
            return candles
        self._last_emitted_ts[name] = int(candles.ts[-1])
        self._last_close[name] = float(candles.close[-1])
        start = self._emit_from[name]
        if start is not None:
            candles = candles.take(candles.ts - tf >= start)
        return candles


def _flat(first_ts: int, count: int, tf: int, close: float) -> Candles:
    ts = first_ts + np.arange(count, dtype=np.int64) * tf
    price = np.full(count, close)
    zeros = np.zeros(count)
    return Candles(
        ts,
        price,
        price.copy(),
        price.copy(),
        price.copy(),
        zeros,
        np.zeros(count, np.int64),
        zeros.copy(),
        zeros.copy(),
    )


def _concat(first: Candles, second: Candles) -> Candles:
    return Candles(*(np.concatenate((a, b)) for a, b in zip(first, second)))
