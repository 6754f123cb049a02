"""The execution function only where it acts: backtests without stops or risk limits.

Without stops and risk limits, :func:`~research.kernels.execution.advance_nb` does nothing on
a bar with no order pending but mark the account to market (``cash + position * close``) and
decide the next level; the day, the equity peak and the trailing extreme it also carries act
only through stops and limits. So between two orders the account is constant and only its
equity moves. The loops here call :func:`advance_nb` itself (with both switches off) on every
bar where an order is pending, and mark the other bars with the very expression it uses; the
decision of those bars is :func:`~research.kernels.execution._decide`'s, scanned until it
differs from the level last ordered. Fills, equity and exposure are those of the bar-by-bar
loop, bit for bit (tested); the account's day, peak and trailing extreme are not tracked
between orders, so no final state is returned.

What a row costs is then mostly the order bars, and for a boolean target (``flags``) three
things keep them cheap (:mod:`research.kernels.flag_changes`):

* the next flag change is found eight flags at a time (one 64-bit compare per word, and the
  trailing zero bits of the first word that differs), and the bars up to it are marked by a
  loop without a test per bar, which the compiler vectorises;
* the changes are found a few orders ahead and kept in a small ring, and the close time,
  open, high and low of the bar after each (where its order fills) are prefetched then: the
  marking between orders reads only the closes, so without the hint each order bar waited for
  main memory, which cost an SMA cross on a million bars more than all its arithmetic;
* the loop is compiled without reference counting and with the execution function inlined,
  so the account stays in registers.

Two entry points:

* :func:`marked_run_nb` writes the equity of every bar into the caller's array (the tests
  compare it with the bar-by-bar loop; :func:`research.backtest` keeps that loop, which is
  as fast on float64 levels: it checks each bar as it goes);
* :func:`sweep_row_nb` is a sweep row: it runs the bars in chunks of ``CHUNK`` that stay in
  the cache and folds each chunk, as soon as it is marked, into the return and drawdown
  statistics (:func:`~research.kernels.stats.stats_block_nb`, the blocks of
  :func:`~research.kernels.stats.equity_stats_nb`) and into the per-segment return moments
  (:func:`~research.kernels.moments._power_sums_nb`, the blocks of
  :func:`~research.kernels.moments.segment_moments_nb`): the same functions over the same
  blocks of the same returns, so the same bits, without a bars-long equity array per row.

Both take the bars already checked: ``n`` is the number of bars from the first that the
execution function accepts (:func:`accepted_bars_nb`, computed once per bars).

The target comes either as float64 levels (``levels``, ``nan`` = flat) or, for a strategy whose
target is boolean, as its bytes (``flags``, 1 = long) with the look-back before which it is
``nan``: ``levels[i]`` is then ``nan`` for ``i < lookback`` else ``float(flags[i])``, what
:meth:`research.strategy_model.StrategySpec.evaluate` makes of it, without making it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from research.kernels.execution import _bar_status, _decide, advance_nb
from research.kernels.flag_changes import RING, find_changes, mark, next_flag_change
from research.kernels.moments import COUNT, SUM, SUM_CUBE, SUM_LOG, SUM_QUAD, SUM_SQ, _power_sums_nb
from research.kernels.records import (
    FILL_DTYPE,
    HALT_NONE,
    MAX_FILLS_PER_BAR,
    REASON_SIGNAL,
    STATUS_OK,
    Config,
    State,
)
from research.kernels.stats import (
    BLOCK,
    _returns_nb,
    stats_block_nb,
    stats_result_nb,
    stats_start_nb,
)

#: Bars per chunk of :func:`sweep_row_nb`: whole blocks of the statistics, 64 KiB of equity.
CHUNK = 4 * BLOCK

_INLINED = {"cache": True, "error_model": "numpy", "inline": "always"}


@njit(cache=True, error_model="numpy", nogil=True)
def accepted_bars_nb(ts, open_, high, low, close):
    """``(n, status)``: how many bars, from the first, a fresh account processes before the
    execution function rejects one (:func:`~research.kernels.execution._bar_status`), and
    that bar's status (``STATUS_OK`` when it accepts them all)."""
    last_ts = -1.0  # a fresh account's (research.kernels.records.new_state)
    for i in range(len(ts)):
        status = _bar_status(last_ts, ts[i], open_[i], high[i], low[i], close[i])
        if status != STATUS_OK:
            return i, status
        last_ts = float(ts[i])
    return len(ts), STATUS_OK


@njit(**_INLINED)
def _level_at(cfg, levels, flags, lookback, i):
    """The target of bar ``i`` (``nan`` = flat), from ``levels`` or ``flags`` (module doc)."""
    if len(flags) == 0:
        return levels[i]
    if i < lookback:
        return np.nan
    return 1.0 if flags[i] != 0 else 0.0


@njit(**_INLINED)
def _decided(cfg, value):
    """The level :func:`_decide` orders for a target ``value`` without stops and limits."""
    return _decide(cfg, value, np.nan, float(HALT_NONE))[0]


@njit(**_INLINED)
def _marked_until(
    cfg, levels, flags, lookback, ordered, cash, position, close, i, end, out, base, ring
):
    """Mark bars from ``i`` on (``out[b - base] = cash + position * close[b]``) up to the
    first bar in ``[i, end)`` whose decided level differs from ``ordered``, marked too; return
    that bar (``end`` if none). Flags past the look-back are :func:`_flagged_until`'s (with
    an empty ring: ``ring`` is only passed on)."""
    j = i
    if len(flags) == 0:
        while j < end:
            out[j - base] = cash + position * close[j]
            value = levels[j]
            # a target equal to the ordered level (within the limits) decides that level
            if value != ordered and _decided(cfg, value) != ordered:
                return j
            j += 1
        return j
    if j < lookback:
        masked = _decided(cfg, np.nan) != ordered
        while j < min(lookback, end):
            out[j - base] = cash + position * close[j]
            if masked:
                return j
            j += 1
    if j >= end:
        return j
    found, _ = _flagged_until(
        cfg, flags, ordered, cash, position, close, j, end, out, base, ring, 0, 0
    )
    return found


@njit(**_INLINED)
def _flagged_until(cfg, flags, ordered, cash, position, close, i, end, out, base, ring, head, tail):
    """:func:`_marked_until` for a target given as flags, from a bar ``i`` past the look-back:
    the first bar in ``[i, end)`` whose flag decides a level other than ``ordered`` is bar
    ``i`` itself or the first flag change after it, which the ring of
    :func:`~research.kernels.flag_changes.find_changes` holds (the search falls back on a
    scan when the ring has none after ``i``). Returns
    ``(bar, head)``: ``head`` past the changes at or before ``i``."""
    on, off = _decided(cfg, 1.0) == ordered, _decided(cfg, 0.0) == ordered
    if not (on or off):
        j = i
    elif on and off:
        j = end
    else:
        want = 1 if on else 0
        if flags[i] != want:
            j = i
        else:
            while head < tail and ring[head & (RING - 1)] <= i:
                head += 1
            if head < tail:
                j = ring[head & (RING - 1)]
            else:
                j = next_flag_change(flags, i + 1, end, want)
    stop = j + 1 if j < end else end
    mark(out[i - base : stop - base], close[i:stop], cash, position)
    return j, head


@njit(cache=True, error_model="numpy", _nrt=False)
def run_span_nb(
    cfg,
    account,
    ts,
    open_,
    high,
    low,
    close,
    levels,
    flags,
    lookback,
    i,
    end,
    out,
    base,
    fills,
    ring,
):
    """Run bars ``[i, end)``, writing bar ``b``'s equity to ``out[b - base]``.

    Compiled without reference counting (it allocates nothing), as the backtest loop is, with
    :func:`~research.kernels.execution.advance_nb` inlined: the account stays in registers.

    ``account`` is ``(cash, position, entry, extreme, pending, pending_reason, ordered, day,
    day_start_equity, peak, halt, equity, n_fills, exposed)``; returns it after the bars, and
    the first bar not run: ``end``, or an earlier bar where an order is pending and ``fills``
    has fewer than ``MAX_FILLS_PER_BAR`` free records."""
    cash, position, entry, extreme, pending, reason, ordered = account[:7]
    day, day_start, peak, halt, equity = account[7:12]
    n_fills, exposed = account[12], account[13]
    # flag changes found ahead of bar i (flags only): see _find_changes
    head = tail = 0
    ahead = end
    if len(flags) and max(i, lookback) < end:
        tail, ahead = find_changes(
            flags, ring, head, tail, max(i, lookback), end, ts, open_, high, low
        )
    while i < end:
        if not math.isnan(pending):  # an order: the execution function's bar
            if ahead < end:
                tail, ahead = find_changes(
                    flags, ring, head, tail, ahead, end, ts, open_, high, low
                )
            if n_fills + MAX_FILLS_PER_BAR > len(fills):
                break
            st = State(
                cash,
                position,
                entry,
                extreme,
                pending,
                reason,
                ordered,
                np.nan,
                day,
                day_start,
                peak,
                halt,
                equity,
                float(ts[i - 1]) if i > 0 else -1.0,
                float(i),
            )
            n_fills, st = advance_nb(
                st,
                cfg,
                None,
                None,
                ts[i],
                open_[i],
                high[i],
                low[i],
                close[i],
                _level_at(cfg, levels, flags, lookback, i),
                fills,
                n_fills,
            )
            cash, position, entry, extreme = st.cash, st.position, st.entry_price, st.trail_extreme
            pending, reason, ordered = st.pending_target, st.pending_reason, st.ordered_target
            day, day_start, peak, halt, equity = (
                st.day,
                st.day_start_equity,
                st.peak_equity,
                st.halt,
                st.equity,
            )
            out[i - base] = equity
            if position != 0.0:
                exposed += 1
            i += 1
            continue
        # no order: marked to market until a bar decides another level (marked too)
        if len(flags) and i >= lookback:
            j, head = _flagged_until(
                cfg, flags, ordered, cash, position, close, i, end, out, base, ring, head, tail
            )
        else:
            j = _marked_until(
                cfg,
                levels,
                flags,
                lookback,
                ordered,
                cash,
                position,
                close,
                i,
                end,
                out,
                base,
                ring,
            )
        stop = j + 1 if j < end else end
        if position != 0.0:
            exposed += stop - i
        equity = out[stop - 1 - base]
        if j < end:
            pending = _decided(cfg, _level_at(cfg, levels, flags, lookback, j))
            reason = float(REASON_SIGNAL)
        i = stop
    account = (
        cash,
        position,
        entry,
        extreme,
        pending,
        reason,
        ordered,
        day,
        day_start,
        peak,
        halt,
        equity,
        n_fills,
        exposed,
    )
    return account, i


def fresh_account(initial_cash: float) -> tuple:
    """The account values :func:`run_span_nb` carries, for a fresh, flat account
    (:func:`~research.kernels.records.new_state`'s)."""
    cash = float(initial_cash)
    return (
        cash,
        0.0,
        np.nan,
        np.nan,
        np.nan,
        np.nan,
        0.0,
        -1.0,
        cash,
        cash,
        float(HALT_NONE),
        cash,
        0,
        0,
    )


@njit(cache=True, error_model="numpy", _nrt=False)
def marked_run_nb(
    config, account, i, ts, open_, high, low, close, levels, flags, lookback, n, equity, fills, ring
):
    """Run the account (:func:`fresh_account`, or as this returned it) from bar ``i`` over
    the first ``n`` (accepted) bars; write each bar's equity to ``equity`` (``ring``: ``RING``
    int64 of scratch space). Returns
    ``(account, i)``: it stops before ``n`` only when ``fills`` is full (the caller grows it
    and calls again from there). The account's last two values are the fill records written
    and the bars that ended with a position."""
    return run_span_nb(
        Config(*config),
        account,
        ts,
        open_,
        high,
        low,
        close,
        levels,
        flags,
        lookback,
        i,
        n,
        equity,
        0,
        fills,
        ring,
    )


@njit(cache=True, error_model="numpy", nogil=True)
def sweep_row_nb(
    config,
    account,
    ts,
    open_,
    high,
    low,
    close,
    levels,
    flags,
    lookback,
    n,
    timeframe_ms,
    cuts,
    fills,
    moments,
    equity,
    returns,
    scratch,
):
    """One sweep row: a fresh account over the first ``n`` (accepted, ``n >= 1``) bars, its
    equity statistics and its return moments per segment.

    Parameters
    ----------
    config, account, ts, open_, high, low, close, levels, flags, lookback, n
        As for :func:`marked_run_nb` (``account`` a fresh one, :func:`fresh_account`).
    timeframe_ms : int
    cuts : ndarray of int64
        Segment boundaries, as for :func:`~research.kernels.moments.segment_moments_nb`.
    fills : ndarray of FILL_DTYPE
        Fill table to write into; when fewer than ``MAX_FILLS_PER_BAR * CHUNK`` records are
        left before a chunk, the row stops and ``n_fills`` is ``-1``: grow it and run the
        row again.
    moments : ndarray, shape (len(cuts) - 1, 6)
        Output: :func:`~research.kernels.moments.segment_moments_nb` of the equity.
    equity, returns : ndarray of float64, ``CHUNK`` long
        Scratch space.
    scratch : ndarray of float64, ``BLOCK`` long
        Scratch space.

    Returns
    -------
    n_fills, exposed : int
        The fill records written (``-1``: see ``fills``) and the bars that ended with a
        position.
    final_equity : float
    stats : tuple
        ``(mean, std, downside, max_drawdown, max_underwater_ms)`` of
        :func:`~research.kernels.stats.equity_stats_nb` over the equity.
    """
    cfg = Config(*config)
    initial_cash = account[0]
    moments[:] = 0.0
    acc = stats_start_nb(0.0, ts[0], timeframe_ms, initial_cash)  # shift set after bar 0
    n_segments = len(cuts) - 1
    segment = 0
    while segment < n_segments and min(cuts[segment + 1], n) <= cuts[segment]:
        segment += 1  # empty segments keep their zeros
    block_start = cuts[segment] if segment < n_segments else n
    filled = 0
    s1 = s2 = s3 = s4 = 0.0
    ring = np.empty(RING, dtype=np.int64)
    first = initial_cash  # equity before the segment
    before = initial_cash  # equity before the chunk
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        m = c1 - c0
        if account[12] + MAX_FILLS_PER_BAR * CHUNK > len(fills):
            return -1, 0, initial_cash, stats_result_nb(acc, 1)
        account, _ = run_span_nb(
            cfg,
            account,
            ts,
            open_,
            high,
            low,
            close,
            levels,
            flags,
            lookback,
            c0,
            c1,
            equity,
            c0,
            fills,
            ring,
        )
        if c0 == 0:
            acc = stats_start_nb(equity[0], ts[0], timeframe_ms, initial_cash)
        _returns_nb(equity[:m], before, returns)
        for b in range(0, m, BLOCK):
            e = min(b + BLOCK, m)
            acc = stats_block_nb(acc, equity[b:e], returns[b:e], ts[c0 + b : c0 + e])
        # the moments: blocks of BLOCK returns from each segment's start
        pos = c0
        while segment < n_segments and pos < c1:
            start, stop = cuts[segment], min(cuts[segment + 1], n)
            if pos < start:  # bars before the first cut belong to no segment
                pos = min(start, c1)
                continue
            if pos == start and filled == 0 and block_start == start:
                first = before if pos == c0 else equity[pos - 1 - c0]
            block_end = min(block_start + BLOCK, stop)
            take = min(block_end, c1) - pos
            if filled == 0 and pos == block_start and block_end <= c1:
                a, b2, c, d = _power_sums_nb(returns[pos - c0 : block_end - c0])
            else:
                for k in range(take):  # a block across two chunks: gathered
                    scratch[filled + k] = returns[pos - c0 + k]
                filled += take
                a = b2 = c = d = 0.0
            pos += take
            if pos < block_end:
                continue  # the block goes on in the next chunk
            if filled > 0:
                a, b2, c, d = _power_sums_nb(scratch[:filled])
                filled = 0
            s1 += a
            s2 += b2
            s3 += c
            s4 += d
            block_start = block_end
            if block_end == stop:
                moments[segment, COUNT] = stop - start
                moments[segment, SUM] = s1
                moments[segment, SUM_SQ] = s2
                moments[segment, SUM_CUBE] = s3
                moments[segment, SUM_QUAD] = s4
                moments[segment, SUM_LOG] = math.log(equity[stop - 1 - c0] / first)
                s1 = s2 = s3 = s4 = 0.0
                segment += 1
                while segment < n_segments and min(cuts[segment + 1], n) <= cuts[segment]:
                    segment += 1
                block_start = cuts[segment] if segment < n_segments else n
        before = equity[m - 1]
    return account[12], account[13], before, stats_result_nb(acc, n)


#: ``flags`` for a target given as levels.
NO_FLAGS = np.empty(0, dtype=np.uint8)
#: ``levels`` for a target given as flags.
NO_LEVELS = np.empty(0)


def fill_table(rows: int = 4096) -> np.ndarray:
    """An empty fill table of ``rows`` records."""
    return np.empty(rows, dtype=FILL_DTYPE)


def marked_run(
    config,
    ts,
    open_,
    high,
    low,
    close,
    levels,
    flags,
    lookback,
    n,
    initial_cash,
    equity,
    fills=None,
):
    """:func:`marked_run_nb` from a fresh account over the first ``n`` bars, growing the fill
    table as needed. Returns ``(fills, exposed)``: the fill records (a view of the table) and
    the bars that ended with a position."""
    if fills is None or len(fills) < MAX_FILLS_PER_BAR:
        fills = fill_table()
    config = tuple(config)
    ring = np.empty(RING, dtype=np.int64)
    account, i = fresh_account(initial_cash), 0
    while True:
        account, i = marked_run_nb(
            config,
            account,
            i,
            ts,
            open_,
            high,
            low,
            close,
            levels,
            flags,
            lookback,
            n,
            equity,
            fills,
            ring,
        )
        if i >= n:
            return fills[: account[12]], account[13]
        grown = fill_table(2 * len(fills))
        grown[: account[12]] = fills[: account[12]]
        fills = grown
