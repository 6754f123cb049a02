"""What strategies, backtests and the runner share: bars, costs, stops and risk limits.

Pure core: numpy only. A strategy is a **pure, causal, vectorized** function from
:class:`Bars` to a target position level per bar (``+1.0`` fully long, ``0.0`` flat,
``-1.0`` fully short, fractions in between; a fraction of equity), made a
:class:`~research.strategy_model.StrategySpec` by ``@strategy`` (docs/architecture.md §3). The
same spec drives ``research.backtest`` and the runner.

Timing rule everywhere: the target computed at bar ``t``'s close is filled at bar ``t+1``'s
open.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# --------------------------------------------------------------------------- bars


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars of one market as aligned numpy arrays.

    Attributes
    ----------
    ts : ndarray of int64
        Bar **close** times, milliseconds UTC, strictly increasing. The bar labelled ``T`` holds
        the trades with ``T - timeframe_ms <= t < T``.
    open, high, low, close, volume : ndarray of float64
        Prices and base-asset volume, same length as ``ts``.
    timeframe_ms : int
        Bar length in milliseconds (0 when unknown).
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe_ms: int = 0

    COLUMNS = ("open", "high", "low", "close", "volume")

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in ("ts",) + self.COLUMNS:
            array = getattr(self, name)
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                raise TypeError(
                    f"Bars.{name} must be a 1-D numpy array, got {type(array).__name__}"
                )
            if len(array) != n:
                raise ValueError(
                    f"Bars.{name} has {len(array)} values but ts has {n}: all columns must align"
                )
        if self.ts.dtype != np.int64:
            raise TypeError("Bars.ts must be int64 milliseconds UTC (close times)")
        for name in self.COLUMNS:
            if getattr(self, name).dtype != np.float64:
                raise TypeError(f"Bars.{name} must be float64, got {getattr(self, name).dtype}")

    @classmethod
    def from_arrays(
        cls,
        ts: Sequence[int] | np.ndarray,
        open: Sequence[float] | np.ndarray,  # noqa: A002 - the column's name
        high: Sequence[float] | np.ndarray,
        low: Sequence[float] | np.ndarray,
        close: Sequence[float] | np.ndarray,
        volume: Sequence[float] | np.ndarray | None = None,
        timeframe_ms: int = 0,
    ) -> Bars:
        """Build bars from array-likes, converting dtypes and checking that ``ts`` increases.

        Raises
        ------
        ValueError
            If ``ts`` is not strictly increasing (the message names the first offending index).
        """
        ts_array = np.ascontiguousarray(ts, dtype=np.int64)
        if len(ts_array) > 1:
            bad = np.flatnonzero(np.diff(ts_array) <= 0)
            if len(bad):
                raise ValueError(
                    f"bar timestamps must strictly increase: ts[{bad[0] + 1}]={ts_array[bad[0] + 1]} "
                    f"follows ts[{bad[0]}]={ts_array[bad[0]]}; sort and de-duplicate the bars first"
                )
        as_float = lambda values: np.ascontiguousarray(values, dtype=np.float64)  # noqa: E731
        volume_array = as_float(volume) if volume is not None else np.zeros(len(ts_array))
        return cls(
            ts_array,
            as_float(open),
            as_float(high),
            as_float(low),
            as_float(close),
            volume_array,
            int(timeframe_ms),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, index: slice) -> Bars:
        """Return the bars in ``index`` (a slice), sharing memory with these bars."""
        if not isinstance(index, slice):
            raise TypeError("Bars can only be sliced, e.g. bars[:100] or bars[-50:]")
        return Bars(
            self.ts[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume[index],
            self.timeframe_ms,
        )

    def for_kernels(self) -> Bars:
        """These bars with every array C-contiguous and writable, the layout the kernels are
        compiled and cached for (:func:`research.load_bars` gives it): ``self`` when every
        array already has it, else new bars in which each array without it is a copy (the
        same values).

        A read-only array (pandas' ``to_numpy()`` under copy-on-write, a memory map) or a
        strided one (``bars[::2]``) is another argument type to Numba: every kernel it reaches
        would be compiled once more, for half a minute or longer, although ``candela warmup``
        has run. The kernels never write into the bars.
        """
        names = ("ts",) + self.COLUMNS
        arrays = [getattr(self, name) for name in names]
        if all(a.flags.c_contiguous and a.flags.writeable for a in arrays):
            return self
        copies = [np.require(a, requirements=("C", "W")) for a in arrays]
        return Bars(*copies, self.timeframe_ms)


# --------------------------------------------------------------------------- costs and limits


class Costs(NamedTuple):
    """Trading costs applied to every fill.

    Attributes
    ----------
    fee_rate : float
        Fee as a fraction of notional (``0.001`` = 0.1 %), paid in the quote currency on every
        fill, entry and exit alike.
    slippage_bps : float
        Slippage in basis points, always against the trader: a buy fills at
        ``price * (1 + slippage_bps / 1e4)``, a sell at ``price * (1 - slippage_bps / 1e4)``.
    """

    fee_rate: float = 0.001
    slippage_bps: float = 0.0


class Stops(NamedTuple):
    """Protective exits, checked against every bar's high and low. ``nan`` disables one.

    Attributes
    ----------
    stop_loss : float
        Exit when price moves this fraction against the entry price (``0.05`` = 5 %).
    take_profit : float
        Exit when price moves this fraction in favour of the entry price.
    trailing_stop : float
        Exit when price falls this fraction below the highest price since entry (for shorts,
        rises above the lowest). The extreme is taken over completed bars and the current open.

    Notes
    -----
    A stop that the open gaps through fills at the open. When a stop and the take-profit could
    both trigger within one bar, the stop (the worse outcome) is assumed. After a protective
    exit the bot stays flat until the strategy's target changes.
    """

    stop_loss: float = math.nan
    take_profit: float = math.nan
    trailing_stop: float = math.nan


class RiskLimits(NamedTuple):
    """Account-level limits, enforced by the execution function in backtest and runner alike.

    Attributes
    ----------
    max_position : float
        Largest absolute target level allowed; targets are clipped to ``[-max_position,
        max_position]``.
    daily_loss_limit : float
        When equity at a bar's close has fallen this fraction below the equity at the start of
        the UTC day, the position is closed at the next open and no new position is taken until
        the next UTC day. ``nan`` disables it.
    max_drawdown : float
        When equity at a bar's close has fallen this fraction below its running peak, the
        position is closed at the next open and trading halts for good (kill switch).
        ``nan`` disables it.
    """

    max_position: float = 1.0
    daily_loss_limit: float = math.nan
    max_drawdown: float = math.nan


# --------------------------------------------------------------------------- strategies


def __getattr__(name: str):
    # the strategy specification lives in research.strategy_model (which imports this module);
    # ``from research.types import StrategySpec`` keeps working
    if name == "StrategySpec":
        from research.strategy_model import StrategySpec

        return StrategySpec
    raise AttributeError(f"module 'research.types' has no attribute {name!r}")
