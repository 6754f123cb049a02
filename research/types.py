"""The strategy contract: bars, costs, stops, risk limits and strategy specifications.

Pure core: numpy only. A strategy is a **pure, causal, vectorized** function from
:class:`Bars` to a target position level per bar (``+1.0`` fully long, ``0.0`` flat,
``-1.0`` fully short, fractions in between; a fraction of equity), with declared parameters,
sweep ranges, a warm-up length and the indicators it wants recorded and plotted
(docs/architecture.md §3). The same :class:`StrategySpec` drives ``research.backtest`` and the runner.

Timing rule everywhere: the target computed at bar ``t``'s close is filled at bar ``t+1``'s
open.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
                raise TypeError(f"Bars.{name} must be a 1-D numpy array, got {type(array).__name__}")
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
    ) -> "Bars":
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
        return cls(ts_array, as_float(open), as_float(high), as_float(low), as_float(close),
                   volume_array, int(timeframe_ms))

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, index: slice) -> "Bars":
        """Return the bars in ``index`` (a slice), sharing memory with these bars."""
        if not isinstance(index, slice):
            raise TypeError("Bars can only be sliced, e.g. bars[:100] or bars[-50:]")
        return Bars(self.ts[index], self.open[index], self.high[index], self.low[index],
                    self.close[index], self.volume[index], self.timeframe_ms)


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

TargetFunction = Callable[[Bars, Any], np.ndarray]
IndicatorFunction = Callable[[Bars, Any], dict[str, np.ndarray]]


@dataclass(frozen=True)
class StrategySpec:
    """Everything the backtest and the runner need to know about one strategy.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"sma_cross"``.
    params : type
        A ``NamedTuple`` class whose fields are the parameters, with defaults.
    target : callable
        ``target(bars, params) -> ndarray[float64]`` of ``len(bars)`` target levels. Pure,
        vectorized and causal: ``target(bars[:t+1])[-1] == target(bars)[t]`` for every ``t``
        past warm-up. ``nan`` (e.g. during warm-up) means flat.
    warmup : callable
        ``warmup(params) -> int``: bars needed before the first meaningful target. The runner
        passes at least this many bars (plus one) to ``target``.
    indicators : callable
        ``indicators(bars, params) -> {name: ndarray}``: values recorded with every live signal
        and drawn on plots.
    overlays : tuple of str
        Indicator names drawn on the price pane; the others get a pane of their own.
    sweep : mapping
        Default sweep range per parameter name, e.g. ``{"fast": range(5, 55)}``.
    check : callable, optional
        ``check(params)`` raises ``ValueError`` for invalid combinations (e.g. ``fast >= slow``).
    evaluate : callable, optional
        ``evaluate(bars, params) -> (target, indicators)`` computing both in one pass; must give
        exactly what ``target`` and ``indicators`` give. The runner, which needs both at every
        bar, uses it through :meth:`target_and_indicators`.
    stops : Stops
        Default protective exits the strategy is designed with.
    long_only : bool
        Whether ``target`` never goes below zero (documentation and oracle configuration).
    description : str
        One paragraph on the idea and its rules.
    """

    name: str
    params: type
    target: TargetFunction
    warmup: Callable[[Any], int]
    indicators: IndicatorFunction
    overlays: tuple[str, ...] = ()
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None
    evaluate: Callable[[Bars, Any], tuple[np.ndarray, dict[str, np.ndarray]]] | None = None
    stops: Stops = Stops()
    long_only: bool = False
    description: str = ""

    def make_params(self, values: Mapping[str, Any] | Any | None = None, **overrides: Any) -> Any:
        """Return a validated ``params`` instance from defaults, ``values`` and ``overrides``.

        Raises
        ------
        ValueError
            For an unknown parameter name (with a "did you mean" suggestion), a value of the
            wrong type, or a combination that :attr:`check` rejects.
        """
        fields = self.params._fields
        merged: dict[str, Any] = {}
        if values is not None:
            merged.update(values._asdict() if hasattr(values, "_asdict") else dict(values))
        merged.update(overrides)
        for key in merged:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown parameter {key!r} for strategy {self.name!r}{hint} "
                    f"(parameters: {', '.join(fields)})"
                )
        defaults = self.params._field_defaults
        converted = {}
        for key, value in merged.items():
            default = defaults.get(key)
            converted[key] = _convert_param(self.name, key, value, default)
        params = self.params(**converted)
        if self.check is not None:
            self.check(params)
        return params

    def target_and_indicators(self, bars: Bars, params: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return ``(target(bars, params), indicators(bars, params))``, in one pass if possible."""
        if self.evaluate is not None:
            return self.evaluate(bars, params)
        return self.target(bars, params), self.indicators(bars, params)

    def required_bars(self, params: Any) -> int:
        """Bars the strategy needs for one meaningful decision: ``warmup(params) + 1``."""
        return int(self.warmup(params)) + 1

    def check_enough_bars(self, n_bars: int, params: Any) -> None:
        """Raise ``ValueError`` if ``n_bars`` cannot cover the warm-up of ``params``."""
        needed = self.required_bars(params)
        if n_bars < needed:
            raise ValueError(
                f"strategy {self.name!r} with {params} needs at least {needed} bars "
                f"(warm-up {needed - 1}) but got {n_bars}: load a longer history or use shorter "
                "look-back parameters"
            )


def _convert_param(strategy: str, key: str, value: Any, default: Any) -> Any:
    """Coerce ``value`` to the type of ``default`` (int, float, bool), or raise ``ValueError``."""
    if isinstance(default, bool):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
    else:
        return value
    raise ValueError(
        f"parameter {key!r} of strategy {strategy!r} must be {type(default).__name__}, "
        f"got {value!r}"
    )
