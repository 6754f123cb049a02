"""The portfolio strategy model: strategies that decide target weights over a universe.

Pure core: numpy and the research core only, so the runner and the strategies can import it.
A portfolio strategy is a :class:`PortfolioSpec`: a function from a :class:`~research.panel.Panel`
(the universe's bars on one close-time grid) and parameters to **target weights**, one row per
grid bar and one column per market (fractions of the book's equity, signed; decided at the
bar's close, traded at the next open by :mod:`research.kernels.portfolio`). Two ways to make one:

* :func:`allocate` applies a single-market strategy (``@strategy``) to every market of the
  universe, each on its own bars, and turns the targets into weights with an
  :class:`Allocation` rule (:data:`EQUAL_WEIGHT`, :func:`inverse_volatility`, or your own). The
  look-back and history window follow from the strategy's and the rule's Lines.
* ``@portfolio`` turns a **cross-sectional** function ``f(panel, p1=..., ...) -> weights`` that
  sees the whole universe at once into a spec; it declares its look-back and history window
  in grid bars (numbers or functions of the parameters), which the history-window check
  verifies. The helpers below (:func:`trailing_return`, :func:`log_returns`, :func:`top_k`,
  :func:`period_anchors`) state theirs.

**Look-back and history window.** ``lookback(params)``: grid bars before the first defined
weights (the library sets those rows to ``nan``: no decision). ``history_window(params)``: bars
of each market the runner loads per decision so that the weights at the last bar equal the
full-history ones bit for bit. A window of a market's last ``H`` bars always covers the last
``H`` grid bars, so one number serves both kinds of strategy.

**Weights.** After the look-back a weight is a finite number; ``nan`` is allowed only for a
market that has had no bar yet (it is read as 0). :func:`check_weights` refuses anything else,
and weights whose gross sum exceeds the book's limit, naming the market and the time.
"""

from __future__ import annotations

import collections
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from research.indicators import rolling_std, shift
from research.kernels.portfolio_records import Rebalance
from research.lines import as_line, numbers_of
from research.panel import Panel, forward_fill
from research.strategy_model import EMPTY_BARS, StrategySpec, _params_class, parse_constraint
from research.types import Bars

#: Relative tolerance of the gross-weight check (rounding of weights that sum to the limit).
GROSS_TOLERANCE = 1e-9


class PortfolioEvaluation(NamedTuple):
    """One evaluation of a portfolio strategy over a panel.

    Attributes
    ----------
    weights : ndarray of float64, shape (n, m)
        Target weights per grid bar and market; ``nan`` in the look-back rows and for markets
        before their first bar.
    lookback : int
        Grid bars before the first defined weights.
    history_window : int
        Bars of each market the runner loads per decision.
    """

    weights: np.ndarray
    lookback: int
    history_window: int


@dataclass(frozen=True, eq=False)
class PortfolioSpec:
    """A portfolio strategy (made by :func:`portfolio` or :func:`allocate`).

    Attributes
    ----------
    name : str
    params : type
        A ``NamedTuple`` class of the parameters, with defaults and types.
    function : callable
        ``function(panel, params) -> weights (n, m)``.
    sweep : mapping
        Default sweep values per parameter.
    constraints : tuple of Constraint
    long_only : bool
        Whether the weights are never negative (documentation, oracle configuration).
    description : str
    lookback_of, history_of : callable
        ``f(params) -> int``: look-back and history window.
    rebalance_of : callable
        ``f(params) -> Rebalance``: when the book sends the weights to the market (the
        strategy's default; a backtest or a bot may override it).
    strategy : StrategySpec or None
        For :func:`allocate`: the single-market strategy applied to each market.
    allocation : Allocation or None
        For :func:`allocate`: the rule that turns its targets into weights.
    defined_by : callable or None
        The author's function (the decorated one, or the allocated strategy's): its source
        file identifies the code behind a bot's decisions.
    """

    name: str
    params: type
    function: Callable[[Panel, Any], np.ndarray]
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    constraints: tuple = ()
    long_only: bool = False
    description: str = ""
    lookback_of: Callable[[Any], int] = lambda params: 0
    history_of: Callable[[Any], int] = lambda params: 1
    rebalance_of: Callable[[Any], Rebalance] = lambda params: Rebalance()
    strategy: StrategySpec | None = None
    allocation: Allocation | None = None
    defined_by: Callable[..., Any] | None = None

    def make_params(self, values: Mapping[str, Any] | Any | None = None, **overrides: Any) -> Any:
        """A validated ``params`` instance, exactly as :meth:`StrategySpec.make_params` (unknown
        names with a suggestion, types, constraints)."""
        # the same rules as a single-market strategy's: its method reads only name, params
        # and constraints, which a PortfolioSpec has too
        return StrategySpec.make_params(self, values, **overrides)

    def _params(self, params: Any) -> Any:
        return params if isinstance(params, self.params) else self.make_params(params)

    def lookback(self, params: Any = None) -> int:
        """Grid bars before the first defined weights."""
        return _whole(self, "lookback", self.lookback_of(self._params(params)), 0)

    def history_window(self, params: Any = None, timeframe_ms: int | None = None) -> int:
        """Bars of each market the runner loads per decision (at least ``lookback + 1``).

        ``timeframe_ms`` is the universe's bar length, for a strategy whose history depends on
        it (a ``history=`` function of two arguments, ``(params, timeframe_ms)``).

        Raises
        ------
        ValueError
            If the strategy needs the timeframe and none is given.
        """
        params = self._params(params)
        if _takes_timeframe(self.history_of):
            if not timeframe_ms:
                raise ValueError(
                    f"portfolio strategy {self.name!r}: its history window depends "
                    "on the bars' timeframe: pass timeframe_ms"
                )
            history = self.history_of(params, int(timeframe_ms))
        else:
            history = self.history_of(params)
        return max(_whole(self, "history", history, 1), self.lookback(params) + 1)

    def rebalance(self, params: Any = None) -> Rebalance:
        """The strategy's rebalancing rule for ``params``."""
        rule = self.rebalance_of(self._params(params))
        if not isinstance(rule, Rebalance):
            raise TypeError(
                f"portfolio strategy {self.name!r}: rebalance= must give a "
                f"research.kernels.portfolio_records.Rebalance, got {rule!r}"
            )
        return rule

    def evaluate(self, panel: Panel, params: Any = None) -> PortfolioEvaluation:
        """The weights over ``panel``: ``nan`` in the look-back rows, checked by
        :func:`check_weights` (without the gross limit, which is the book's).

        Raises
        ------
        TypeError, ValueError
            If ``panel`` is not a Panel, or the function returns something else than an
            ``(n, m)`` array of numbers, or a ``nan`` weight where one is not allowed.
        """
        if not isinstance(panel, Panel):
            raise TypeError(
                f"portfolio strategy {self.name!r} takes a research.panel.Panel "
                f"(see research.panel.align or load_universe), got "
                f"{type(panel).__name__}"
            )
        params = self._params(params)
        weights = self.function(panel, params)
        shape = (len(panel), panel.n_markets)
        if (
            not isinstance(weights, np.ndarray)
            or weights.shape != shape
            or weights.dtype.kind not in "biuf"
        ):
            got = (
                f"an array of shape {weights.shape} and dtype {weights.dtype}"
                if isinstance(weights, np.ndarray)
                else type(weights).__name__
            )
            raise TypeError(
                f"portfolio strategy {self.name!r} must return an array of shape "
                f"{shape} (one weight per grid bar and market), got {got}"
            )
        weights = np.array(weights, dtype=np.float64)
        lookback = self.lookback(params)
        weights[:lookback] = np.nan
        check_weights(weights, panel, lookback, self.name)
        return PortfolioEvaluation(
            weights, lookback, self.history_window(params, panel.timeframe_ms)
        )

    def weights(self, panel: Panel, params: Any = None) -> np.ndarray:
        """:meth:`evaluate`'s weights."""
        return self.evaluate(panel, params).weights

    def check_enough_bars(self, n_bars: int, params: Any = None) -> None:
        """Raise ``ValueError`` if ``n_bars`` grid bars cannot give one decision."""
        params = self._params(params)
        needed = self.lookback(params) + 1
        if n_bars < needed:
            raise ValueError(
                f"portfolio strategy {self.name!r} with {params} needs at least {needed} grid "
                f"bars (look-back {needed - 1}) but got {n_bars}: load a longer history or use "
                "shorter look-back parameters"
            )


def check_weights(
    weights: np.ndarray, panel: Panel, lookback: int, name: str, max_gross: float | None = None
) -> None:
    """Refuse weights a book cannot trade, naming the market, the time and the fix.

    After the first ``lookback`` rows every weight must be finite, except ``nan`` for a market
    that has had no bar yet; with ``max_gross``, each row's sum of absolute weights must not
    exceed it (beyond a relative 1e-9 of rounding).

    Raises
    ------
    ValueError
    """
    body = weights[lookback:]
    if not np.isfinite(body).all():
        listed = np.maximum.accumulate(panel.present, axis=0)[lookback:]
        bad = ~np.isfinite(body) & (listed | np.isinf(body))
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise ValueError(
                f"portfolio strategy {name!r} gave the weight {body[row, column]} for "
                f"{panel.markets[column]} at {_when(panel.ts[lookback + row])}: weights must be "
                "finite numbers after the look-back (0.0 for no position)"
            )
    if max_gross is not None:
        gross = np.nansum(np.abs(body), axis=1)
        over = np.flatnonzero(gross > max_gross * (1.0 + GROSS_TOLERANCE))
        if len(over):
            row = over[0]
            raise ValueError(
                f"portfolio strategy {name!r} asks for a gross weight of {gross[row]:.6g} at "
                f"{_when(panel.ts[lookback + row])}, above the book's limit max_gross="
                f"{max_gross:g}: scale the weights down or raise max_gross in the limits"
            )


def _when(ts: int) -> str:
    """A close time as ISO UTC text (no pandas in the core)."""
    return str(np.datetime64(int(ts), "ms")) + "Z"


def _takes_timeframe(function: Callable) -> bool:
    """Whether a ``history=`` function takes ``(params, timeframe_ms)``."""
    try:
        return len(inspect.signature(function).parameters) == 2
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def _whole(spec: PortfolioSpec, what: str, value: Any, least: int) -> int:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < least
    ):
        raise ValueError(
            f"portfolio strategy {spec.name!r}: {what} must be an int of at least "
            f"{least} bars, got {value!r}"
        )
    return int(value)


def _as_function(value: Any, what: str, name: str) -> Callable[[Any], Any]:
    if callable(value):
        return value
    if what == "rebalance":
        if not isinstance(value, Rebalance):
            raise TypeError(
                f"portfolio strategy {name!r}: rebalance= takes a Rebalance or a "
                f"function of the parameters, got {value!r}"
            )
    elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"portfolio strategy {name!r}: {what}= must be a number of bars or a "
            f"function of the parameters, got {value!r}"
        )
    return lambda params: value


# --------------------------------------------------------------------------- @portfolio


def portfolio(
    function: Callable[..., Any] | None = None,
    *,
    lookback: int | Callable,
    history: int | Callable | None = None,
    rebalance: Rebalance | Callable = Rebalance(),
    sweep: Mapping[str, Sequence[Any]] | None = None,
    constraints: Sequence[str] = (),
    long_only: bool = False,
    name: str | None = None,
) -> Any:
    """Decorator: turn a cross-sectional ``def f(panel, p1: int = 10, ...) -> weights`` into a
    :class:`PortfolioSpec`.

    The function receives the :class:`~research.panel.Panel` (absent markets ``nan``) and its
    parameters as keywords, and returns an ``(n, m)`` array of target weights (it may use the
    helpers of this module). Parameters and constraints are read as for ``@strategy``.

    Parameters
    ----------
    lookback : int or callable
        Grid bars before the first defined weights, or ``f(params)``.
    history : int or callable, optional
        Bars per market a window needs so that its last weights equal the full-history ones
        (default ``lookback + 1``), or ``f(params)``, or ``f(params, timeframe_ms)`` when it
        depends on the bars' length.
    rebalance : Rebalance or callable
        The book's default rebalancing rule, or ``f(params)``.
    sweep, constraints, long_only, name
        As ``@strategy``.
    """

    def decorate(function: Callable[..., Any]) -> PortfolioSpec:
        spec_name = name or function.__name__
        params = _params_class(function, spec_name)
        for key in sweep or {}:
            if key not in params._fields:
                raise ValueError(
                    f"portfolio strategy {spec_name!r}: sweep names unknown "
                    f"parameter {key!r} (parameters: {', '.join(params._fields)})"
                )
        parsed = tuple(parse_constraint(text, params._fields, spec_name) for text in constraints)
        lookback_of = _as_function(lookback, "lookback", spec_name)
        history_of = (
            _as_function(history, "history", spec_name)
            if history is not None
            else (lambda p: lookback_of(p) + 1)
        )
        spec = PortfolioSpec(
            name=spec_name,
            params=params,
            function=lambda panel, p: function(panel, **p._asdict()),
            sweep=dict(sweep or {}),
            constraints=parsed,
            long_only=bool(long_only),
            description=inspect.cleandoc(function.__doc__ or ""),
            lookback_of=lookback_of,
            history_of=history_of,
            rebalance_of=_as_function(rebalance, "rebalance", spec_name),
            defined_by=function,
        )
        spec.make_params()  # the defaults must satisfy the constraints
        return spec

    return decorate if function is None else decorate(function)


# --------------------------------------------------------------------------- allocate


class Allocation(NamedTuple):
    """A rule that turns per-market targets into weights.

    Attributes
    ----------
    name : str
    params : mapping of str to default
        The rule's own parameters (added to the strategy's; names must differ).
    combine : callable
        ``combine(targets, measures, **params) -> weights``: row by row (no look-back):
        ``targets`` ``(n, m)`` are the strategy's levels (0 where flat or not yet listed),
        ``measures`` the per-market measure (or ``None``).
    measure : callable, optional
        ``measure(bars, **params) -> Line``: a per-market series computed on each market's own
        bars (e.g. its volatility), whose look-back and history the rule inherits.
    """

    name: str
    params: Mapping[str, Any]
    combine: Callable[..., np.ndarray]
    measure: Callable[..., np.ndarray] | None = None


def _equal(targets: np.ndarray, measures: Any) -> np.ndarray:
    return targets / targets.shape[1]


EQUAL_WEIGHT = Allocation("equal weight", {}, _equal)
"""Each market gets its target over the number of markets (a fixed slot of ``1/m``)."""


def _volatility(bars: Bars, vol_window: int) -> np.ndarray:
    return rolling_std(np.log(bars.close / shift(bars.close, 1)), vol_window)


def _inverse(targets: np.ndarray, measures: np.ndarray, vol_window: int) -> np.ndarray:
    inverse = np.where(measures > 0.0, 1.0 / np.where(measures > 0.0, measures, 1.0), np.nan)
    total = np.nansum(inverse, axis=1, keepdims=True)
    share = np.where(
        np.isfinite(inverse) & (total > 0.0), inverse / np.where(total > 0.0, total, 1.0), 0.0
    )
    return targets * share


def inverse_volatility(vol_window: int = 24 * 7) -> Allocation:
    """Weights inverse to each market's volatility: market ``j`` gets ``target_j * (1 / vol_j) /
    sum_k (1 / vol_k)`` over the markets whose volatility is known (so that all targets at 1
    sum to 1). ``vol_j`` is the standard deviation of the market's last ``vol_window`` log
    returns on its own bars (look-back ``vol_window``, history ``vol_window + 1``); a market
    without it gets 0."""
    return Allocation("inverse volatility", {"vol_window": int(vol_window)}, _inverse, _volatility)


def allocate(
    strategy: StrategySpec,
    rule: Allocation = EQUAL_WEIGHT,
    *,
    name: str | None = None,
    rebalance: Rebalance | Callable = Rebalance(),
    sweep: Mapping[str, Sequence[Any]] | None = None,
    long_only: bool | None = None,
    description: str = "",
) -> PortfolioSpec:
    """Apply the single-market ``strategy`` to every market of a universe and allocate with
    ``rule``.

    Each market's target is its own evaluation of ``strategy`` on its own bars (the single-market
    look-back and history window, in its bars); at a grid bar where a market is absent its last
    target holds, before its first bar it is 0 (``nan`` targets are 0, flat). The rule's
    measure is computed the same way; then ``rule.combine`` gives the weights row by row.

    Parameters
    ----------
    strategy : StrategySpec
    rule : Allocation
    name : str, optional
        Default ``"<strategy> x <rule>"``.
    rebalance : Rebalance or callable
        The book's default rebalancing rule, or ``f(params)``.
    sweep : mapping, optional
        Default sweep values; default the strategy's.
    long_only : bool, optional
        Default the strategy's.

    Raises
    ------
    TypeError, ValueError
        For a strategy that is not a StrategySpec, or a rule parameter named like one of the
        strategy's.
    """
    if not isinstance(strategy, StrategySpec):
        raise TypeError(
            f"allocate takes a single-market strategy (a StrategySpec from "
            f"@strategy), got {type(strategy).__name__}"
        )
    if not isinstance(rule, Allocation):
        raise TypeError(
            f"rule must be a research.portfolio_model.Allocation, got {type(rule).__name__}"
        )
    spec_name = name or f"{strategy.name} x {rule.name}"
    clash = sorted(set(rule.params) & set(strategy.params._fields))
    if clash:
        raise ValueError(
            f"portfolio strategy {spec_name!r}: the allocation's parameter "
            f"{clash[0]!r} has the name of a parameter of strategy "
            f"{strategy.name!r}: rename one of them"
        )
    params = _joined_params(strategy, rule)
    own = strategy.params._fields

    def split(p: Any) -> tuple[Any, dict[str, Any]]:
        values = p._asdict()
        return (
            strategy.params(**{key: values[key] for key in own}),
            {key: values[key] for key in rule.params},
        )

    def numbers(p: Any) -> tuple[int, int]:
        single, rule_params = split(p)
        lookback, history = strategy.lookback(single), strategy.history_window(single)
        if rule.measure is not None:
            measured = numbers_of(rule.measure(_line_bars(EMPTY_BARS), **rule_params))
            if measured is None:
                raise ValueError(
                    f"allocation {rule.name!r}: its measure must return a Line "
                    "(use research.indicators, or @indicator on your function)"
                )
            lookback = max(lookback, measured[0])
            history = max(history, measured[1])
        return lookback, history

    def function(panel: Panel, p: Any) -> np.ndarray:
        single, rule_params = split(p)
        targets = np.zeros((len(panel), panel.n_markets))
        measures = None if rule.measure is None else np.full(targets.shape, np.nan)
        for j in range(panel.n_markets):
            rows = panel.rows(j)
            if len(rows) == 0:
                continue
            bars = panel.bars(j)
            targets[rows, j] = np.nan_to_num(strategy.evaluate(bars, single).target, nan=0.0)
            if measures is not None:
                measures[rows, j] = rule.measure(_line_bars(bars), **rule_params)
        present = panel.present
        targets = np.where(present, targets, np.nan)
        targets = np.nan_to_num(forward_fill(targets), nan=0.0)  # absent: the last target holds
        if measures is not None:
            measures = forward_fill(np.where(present, measures, np.nan))
        return np.asarray(rule.combine(targets, measures, **rule_params), dtype=np.float64)

    spec = PortfolioSpec(
        name=spec_name,
        params=params,
        function=function,
        sweep=dict(strategy.sweep if sweep is None else sweep),
        constraints=strategy.constraints,
        long_only=strategy.long_only if long_only is None else bool(long_only),
        description=description
        or (f"{strategy.name} on every market, weighted by {rule.name}. {strategy.description}"),
        lookback_of=lambda p: numbers(p)[0],
        history_of=lambda p: numbers(p)[1],
        rebalance_of=_as_function(rebalance, "rebalance", spec_name),
        strategy=strategy,
        allocation=rule,
        defined_by=strategy.function,
    )
    spec.make_params()
    return spec


def _joined_params(strategy: StrategySpec, rule: Allocation) -> type:
    """A Params NamedTuple of the strategy's parameters, then the rule's."""
    fields = list(strategy.params._fields) + list(rule.params)
    defaults = list(strategy.params._field_defaults[key] for key in strategy.params._fields)
    defaults += list(rule.params.values())
    kinds = dict(strategy.params.__annotations__)
    kinds.update({key: type(value) for key, value in rule.params.items()})
    params = collections.namedtuple("Params", fields, defaults=defaults)
    params.__annotations__ = kinds
    return params


def _line_bars(bars: Bars) -> Bars:
    """``bars`` with every column a Line of look-back 0 and history 1."""
    return Bars(
        *(as_line(getattr(bars, column), 0, 1) for column in ("ts",) + Bars.COLUMNS),
        bars.timeframe_ms,
    )


# --------------------------------------------------------------------------- panel helpers


def trailing_return(close: np.ndarray, n: int) -> np.ndarray:
    """``close[t] / close[t - n] - 1`` per market over ``n`` grid bars, ``nan`` when either bar
    is absent. Look-back ``n``, history ``n + 1``."""
    out = np.full(close.shape, np.nan)
    if n < len(close):
        out[n:] = close[n:] / close[: len(close) - n] - 1.0
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """``log(close[t] / close[t - 1])`` per market, ``nan`` when either grid bar is absent.
    Look-back 1, history 2."""
    out = np.full(close.shape, np.nan)
    if len(close) > 1:
        out[1:] = np.log(close[1:] / close[:-1])
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row by row, ``1 / k`` for the ``k`` highest finite scores (ties: the first column) and 0
    elsewhere; a row with fewer finite scores weights only those. No look-back."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    finite = np.isfinite(scores)
    order = np.argsort(np.where(finite, -scores, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :], axis=1)
    return np.where(finite & (rank < k), 1.0 / k, 0.0)


def period_anchors(ts: np.ndarray, period_ms: int, offset_ms: int = 0) -> np.ndarray:
    """For each grid bar, the row of the first bar of its period, or -1.

    Periods are ``[offset + k * period, offset + (k + 1) * period)`` of close time. A bar
    *starts* a period when the bar before it closed in an earlier one; the first bar of the
    data starts none (what came before it is unknown), so its period, and any bar whose period
    began before the data, has -1. A strategy that re-estimates once per period (on the first
    bar's data) and holds the result until the next one is then a function of the last
    ``period / timeframe + window`` bars: state that as its history window.
    """
    index = np.floor_divide(ts - offset_ms, period_ms)
    start = np.zeros(len(ts), dtype=bool)
    start[1:] = index[1:] > index[:-1]
    rows = np.where(start, np.arange(len(ts)), -1)
    anchors = np.maximum.accumulate(rows) if len(rows) else rows
    same = anchors >= 0
    same[same] = index[anchors[same]] == index[same]
    return np.where(same, anchors, -1)


def bars_per_period(period_ms: int, timeframe_ms: int) -> int:
    """Grid bars in one period (rounded up)."""
    return int(math.ceil(period_ms / timeframe_ms))
