"""Bars of several markets on one close-time grid: the input of a portfolio.

Pure core: numpy only. The backtest, the strategies over a universe and the runner's portfolio
bots all see a universe's bars as a :class:`Panel`, built by :func:`align`.

**The alignment rule** (docs/architecture.md §3, "Portfolios"):

* The grid is the **union** of the markets' close times: a time at which at least one market
  has a bar. A time at which no market has a bar (an exchange outage) is not on the grid, as a
  gap is not in a single market's bars; so a panel of one market is exactly that market's bars.
* A market without a bar at a grid time (a gap, not yet listed, delisted) is **absent** there:
  its row holds ``nan`` in every column. An absent market does not trade at that bar (no fill,
  no stop), and the book values its position at its **last close** (the last bar it had).
* Every market must have the same timeframe, close times on the same phase of that timeframe's
  grid, and a common span (some instant inside every market's first-to-last span): otherwise
  :func:`align` raises, naming the market and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from research.types import Bars

_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, eq=False)
class Panel:
    """OHLCV bars of several markets of one timeframe, aligned on one close-time grid.

    Attributes
    ----------
    markets : tuple of str
        The market names (e.g. ``"BTC/USDT"``), in column order.
    ts : ndarray of int64, shape (n,)
        The grid: bar close times, ms UTC, strictly increasing (the union of the markets' close
        times, see the module docstring).
    open, high, low, close, volume : ndarray of float64, shape (n, m), C order
        Row ``i`` holds each market's bar closing at ``ts[i]``; ``nan`` in every column where
        the market has no bar at that time (absent).
    timeframe_ms : int
        The markets' common bar length, ms.
    """

    markets: tuple[str, ...]
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe_ms: int

    def __post_init__(self) -> None:
        n, m = len(self.ts), len(self.markets)
        if self.ts.dtype != np.int64 or self.ts.ndim != 1:
            raise TypeError("Panel.ts must be a 1-D int64 array of close times (ms UTC)")
        for name in _COLUMNS:
            array = getattr(self, name)
            if (
                not isinstance(array, np.ndarray)
                or array.shape != (n, m)
                or array.dtype != np.float64
            ):
                raise ValueError(
                    f"Panel.{name} must be a float64 array of shape ({n}, {m}), one "
                    "row per grid time and one column per market"
                )
        if len(set(self.markets)) != m:
            raise ValueError(f"Panel.markets names a market twice: {list(self.markets)}")

    @property
    def n_markets(self) -> int:
        """Number of markets (columns)."""
        return len(self.markets)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def present(self) -> np.ndarray:
        """Boolean ``(n, m)``: whether each market has a bar at each grid time."""
        return ~np.isnan(self.open)

    def column(self, market: str | int) -> int:
        """The column of ``market`` (a name or a column number).

        Raises
        ------
        KeyError
            For a market not in the panel (the message lists the panel's markets).
        """
        if isinstance(market, (int, np.integer)) and not isinstance(market, bool):
            if not 0 <= market < self.n_markets:
                raise KeyError(
                    f"column {market} is out of range: the panel has {self.n_markets} markets"
                )
            return int(market)
        try:
            return self.markets.index(market)
        except ValueError:
            raise KeyError(
                f"market {market!r} is not in the panel; its markets are {', '.join(self.markets)}"
            ) from None

    def rows(self, market: str | int) -> np.ndarray:
        """The grid rows (int64 indices) at which ``market`` has a bar, in time order."""
        return np.flatnonzero(~np.isnan(self.open[:, self.column(market)]))

    def bars(self, market: str | int) -> Bars:
        """The bars of one market: its rows of the panel without the absent ones (contiguous
        copies), i.e. exactly the market's own bars within the panel's span."""
        j = self.column(market)
        rows = self.rows(j)
        return Bars(
            self.ts[rows],
            *(np.ascontiguousarray(getattr(self, name)[rows, j]) for name in _COLUMNS),
            timeframe_ms=self.timeframe_ms,
        )

    def __getitem__(self, index: slice) -> Panel:
        """The grid rows in ``index`` (a slice), sharing memory with this panel.

        A market may be absent at every row of the slice; it stays a column of the panel.
        """
        if not isinstance(index, slice):
            raise TypeError("a Panel can only be sliced by rows, e.g. panel[:100] or panel[-50:]")
        return Panel(
            self.markets,
            self.ts[index],
            *(getattr(self, name)[index] for name in _COLUMNS),
            self.timeframe_ms,
        )

    def select(self, markets) -> Panel:
        """A panel of some of the markets (names or columns, in the order given), on the rows
        where at least one of them has a bar."""
        columns = [self.column(market) for market in markets]
        if not columns:
            raise ValueError("select at least one market")
        keep = ~np.isnan(self.open[:, columns]).all(axis=1)
        return Panel(
            tuple(self.markets[j] for j in columns),
            self.ts[keep],
            *(np.ascontiguousarray(getattr(self, name)[keep][:, columns]) for name in _COLUMNS),
            self.timeframe_ms,
        )

    def last_close(self) -> np.ndarray:
        """``(n, m)``: each market's last close at or before each grid time (``nan`` before
        its first bar): the price at which the book values an absent market's position."""
        return forward_fill(self.close)

    def coverage_counts(self) -> dict[str, np.ndarray]:
        """Per market (arrays of length m): ``first_ts``, ``last_ts`` (its first and last close
        time on the grid), ``bars`` (grid rows where it has a bar), ``before`` (grid rows before
        its first bar: not yet listed or not yet stored), ``after`` (grid rows after its last bar:
        delisted or not yet stored), ``missing`` (grid rows between its first and last bar
        without a bar: gaps). ``bars + before + after + missing == len(panel)``; a market
        without any bar in the panel has ``first_ts = last_ts = -1`` and ``before = len``."""
        present = self.present
        n = len(self.ts)
        bars = present.sum(axis=0).astype(np.int64)
        any_bar = bars > 0
        first = np.where(any_bar, present.argmax(axis=0), n)
        last = np.where(any_bar, n - 1 - present[::-1].argmax(axis=0), n - 1)
        return {
            "first_ts": np.where(any_bar, self.ts[np.minimum(first, n - 1)] if n else -1, -1),
            "last_ts": np.where(any_bar, self.ts[last] if n else -1, -1),
            "bars": bars,
            "before": first.astype(np.int64),
            "after": np.where(any_bar, n - 1 - last, 0).astype(np.int64),
            "missing": np.where(any_bar, last - first + 1 - bars, 0).astype(np.int64),
        }


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Each column's last non-nan value at or before each row (``nan`` before the first)."""
    n = values.shape[0]
    index = np.where(np.isnan(values), 0, np.arange(n)[:, None])
    np.maximum.accumulate(index, axis=0, out=index)
    filled = np.take_along_axis(values, index, axis=0)
    return filled


def align(
    bars: Mapping[str, Bars],
    start: int | None = None,
    end: int | None = None,
    *,
    window: bool = False,
) -> Panel:
    """Align the bars of several markets on one close-time grid (the module docstring's rule).

    Parameters
    ----------
    bars : mapping of str to Bars
        Each market's bars, keyed by its name; the panel's columns follow the mapping's order.
        Every ``Bars`` must have its ``timeframe_ms`` set, the same for all.
    start, end : int, optional
        Inclusive bounds on the grid's close times, ms UTC.
    window : bool
        Align a decision's window (the runner's, a history check's): markets without a bar
        (not yet listed) and markets without a common span are allowed; at least one market
        must have a bar.

    Returns
    -------
    Panel

    Raises
    ------
    ValueError
        With no market, markets of different timeframes or grid phases, no common span (the
        message gives each market's span), or no bar between ``start`` and ``end``; each
        message names the market and the fix.
    TypeError
        If a value is not :class:`~research.types.Bars`.
    """
    if not bars:
        raise ValueError("a universe needs at least one market: pass {name: Bars, ...}")
    names = [str(name) for name in bars]
    series = list(bars.values())
    for name, one in zip(names, series, strict=False):
        if not isinstance(one, Bars):
            raise TypeError(
                f"market {name!r}: expected research.types.Bars, got {type(one).__name__}"
            )
        if len(one) == 0 and not window:
            raise ValueError(
                f"market {name!r} has no bars: load a span where it has data or "
                "leave it out of the universe"
            )
    filled = [(name, one) for name, one in zip(names, series, strict=False) if len(one)]
    if not filled:
        raise ValueError("no market has a bar: a window needs at least one")
    timeframe = _common_timeframe(names, series)
    _check_phase(*map(list, zip(*filled, strict=False)), timeframe)
    if not window:
        _check_common_span(names, series)
    grid = np.unique(np.concatenate([one.ts for one in series]))
    if start is not None:
        grid = grid[grid >= start]
    if end is not None:
        grid = grid[grid <= end]
    if len(grid) == 0:
        raise ValueError(f"no market has a bar between {start} and {end} (ms UTC): widen the span")
    n, m = len(grid), len(series)
    columns = {name: np.full((n, m), np.nan) for name in _COLUMNS}
    for j, one in enumerate(series):
        inside = (one.ts >= grid[0]) & (one.ts <= grid[-1])
        rows = np.searchsorted(grid, one.ts[inside])
        for name in _COLUMNS:
            columns[name][rows, j] = getattr(one, name)[inside]
    return Panel(tuple(names), grid, *(columns[name] for name in _COLUMNS), timeframe_ms=timeframe)


def _common_timeframe(names: list[str], series: list[Bars]) -> int:
    missing = [name for name, one in zip(names, series, strict=False) if one.timeframe_ms <= 0]
    if missing:
        raise ValueError(
            f"market {missing[0]!r} has no timeframe (Bars.timeframe_ms is 0): load "
            "it with research.load_bars or set timeframe_ms"
        )
    timeframe = series[0].timeframe_ms
    for name, one in zip(names, series, strict=False):
        if one.timeframe_ms != timeframe:
            raise ValueError(
                f"market {name!r} has {one.timeframe_ms} ms bars but {names[0]!r} has "
                f"{timeframe} ms bars: a universe has one timeframe; resample the finer markets "
                "(research.resample) or leave the market out"
            )
    return int(timeframe)


def _check_phase(names: list[str], series: list[Bars], timeframe: int) -> None:
    phase = int(series[0].ts[0] % timeframe)
    for name, one in zip(names, series, strict=False):
        off = np.flatnonzero(one.ts % timeframe != phase)
        if len(off):
            raise ValueError(
                f"market {name!r}: close time {int(one.ts[off[0]])} is off the grid of "
                f"{names[0]!r} ({timeframe} ms bars closing at {phase} ms past the step): check "
                "that every market's bars are close times of the same timeframe"
            )


def _check_common_span(names: list[str], series: list[Bars]) -> None:
    latest_first = max(range(len(series)), key=lambda j: series[j].ts[0])
    earliest_last = min(range(len(series)), key=lambda j: series[j].ts[-1])
    if series[latest_first].ts[0] > series[earliest_last].ts[-1]:
        spans = "; ".join(
            f"{name} {int(one.ts[0])}..{int(one.ts[-1])}"
            for name, one in zip(names, series, strict=False)
        )
        raise ValueError(
            f"the markets have no common span: {names[latest_first]!r} starts after "
            f"{names[earliest_last]!r} ends (close times, ms UTC: {spans}); choose markets whose "
            "data overlap"
        )


def decision_window(panel: Panel, t: int, history: int) -> Panel:
    """The panel a portfolio bot sees when it decides grid bar ``t``: each market's last
    ``history`` bars up to ``ts[t]`` (fewer when it has fewer), aligned as a window
    (:func:`align` with ``window=True``). Its last row is bar ``t``."""
    bars = {}
    for j, name in enumerate(panel.markets):
        rows = np.flatnonzero(~np.isnan(panel.open[: t + 1, j]))[-history:]
        bars[name] = Bars(
            panel.ts[rows],
            *(np.ascontiguousarray(getattr(panel, column)[rows, j]) for column in _COLUMNS),
            panel.timeframe_ms,
        )
    return align(bars, window=True)
