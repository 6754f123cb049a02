"""Technical indicators: validated wrappers over the Numba kernels, returning Lines.

Pure core: numpy and numba only. Every indicator is **causal** (the value at ``t`` uses inputs
at ``t`` and before only) and returns float64 arrays the length of its input, with ``nan``
before its first defined value. The wrappers validate their arguments and raise
``ValueError``/``TypeError`` saying how to fix them; the kernels
(:mod:`research.kernels.indicators`, re-exported here as ``*_nb``) never raise. Every
indicator accepts zero-length input.

**Look-back and history window.** Given :class:`~research.lines.Line` inputs (the columns of
the bars a strategy receives, or other indicators), an indicator returns Lines whose
``lookback`` (bars before the first defined value) and ``history`` (bars a window must hold so
that its last value equals the full-history value bit for bit) follow from the indicator's
own numbers: ``lookback = input lookback + own lookback`` and ``history = input history +
own history - 1``, the largest over the inputs (so an indicator of an indicator adds its own,
e.g. the MACD signal line is an EMA of the MACD line). The own numbers are stated in each
docstring; for raw prices (``lookback`` 0, ``history`` 1) they are the result's. Given plain
arrays, an indicator returns plain arrays (their history is unknown).

Conventions (each matches the pandas formulation named in its docstring):

* **Window indicators** (SMA, Bollinger, rolling std and z-score, Donchian) use the last ``n``
  values, the current one included: look-back ``n - 1``, history ``n``. Every output whose
  window contains a ``nan`` is ``nan``. Each value is a pure function of its window's values,
  bit for bit: moving sums are kept **exactly** (see :mod:`research.kernels.window_sums`) and
  rounded once, and deviations are summed directly over the window, never by a floating-point
  running add-and-subtract whose drift would depend on the history before the window. A window
  whose values are all equal has mean exactly that value and standard deviation exactly 0.
* **Recursive indicators** (EMA, Wilder RSI and ATR) follow pandas ``ewm(adjust=False)``: the
  recursion ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]`` is seeded with the first non-``nan``
  input, and outputs stay ``nan`` until ``n`` inputs have been seen (``min_periods=n``). Leading
  ``nan`` inputs are skipped; a ``nan`` after the seed propagates to every later output. Their
  value depends on the seed with weight ``(1 - alpha)**k`` after ``k`` steps; after
  :func:`converged_warmup` steps that weight is below ``e**-60`` (about ``1e-26``), far under
  half an ulp, so sequences started from different points round to **identical** floats. Their
  history window is that many steps after the input's own history (``converged_warmup(alpha)
  + 1`` bars on prices).

**Scoped memo.** Inside ``with indicator_cache():`` the wrappers remember their results, keyed
by their input array objects and their parameters, so that a sweep computes each
distinct window once per batch instead of once per parameter set. Outside such a scope
(strategies in the runner, plain calls) nothing is remembered. See :func:`indicator_cache`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from research.indicator_memo import (  # noqa: F401 - the memo's scope is part of this API
    DEFAULT_CACHE_BYTES,
    IndicatorMemo,
    _memoized,
    indicator_cache,
)
from research.kernels.indicators import (  # noqa: F401 - the kernels are part of this API
    atr_nb,
    crossed_above_nb,
    ema_nb,
    equal_run_nb,
    event_position_nb,
    ewm_nb,
    rolling_max_nb,
    rolling_min_nb,
    rolling_std_nb,
    rolling_zscore_nb,
    rsi_nb,
    trailing_exit_position_nb,
    true_range_nb,
)
from research.kernels.window_sums import window_means
from research.lines import Line, as_line, combined

#: Steps after which a recursive indicator has forgotten its seed: ``ceil(SEED_DECAY / alpha)``.
SEED_DECAY = 60.0


# --------------------------------------------------------------------------- helpers


def ema_alpha(span: int) -> float:
    """Smoothing factor of an EMA with the given span: ``2 / (span + 1)`` (pandas ``span``)."""
    return 2.0 / (span + 1.0)


def wilder_alpha(n: int) -> float:
    """Smoothing factor of Wilder's moving average (RSI, ATR): ``1 / n``."""
    return 1.0 / n


def converged_warmup(alpha: float) -> int:
    """Steps after which a recursion with smoothing ``alpha`` no longer depends on its seed.

    Returns ``ceil(60 / alpha)``: the seed's weight ``(1 - alpha)**k <= exp(-alpha * k)`` is then
    at most ``exp(-60)`` (about ``8.8e-27``), so two runs of the recursion started at different
    bars agree to far below half an ulp and round to the same float64 values (in practice they
    become bit-identical well before; the strategy tests check bit-equality on real data). A
    recursive indicator's history window is this many bars after its input's.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return int(math.ceil(SEED_DECAY / alpha - 1e-9))


def _as_series(name: str, values) -> tuple[np.ndarray, Any]:
    """``(array, original)``: ``values`` as a contiguous float64 plain array, and ``values``
    itself when that array is its memory unconverted (the result may then be remembered, see
    :func:`research.indicator_memo._memoized`), else ``None``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise TypeError(
            f"{name} must be a 1-D array of prices, got an array of shape {array.shape}"
        )
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.dtype == np.float64 and array.flags.c_contiguous and isinstance(values, np.ndarray):
        return array, values
    return np.ascontiguousarray(array, dtype=np.float64), None


def _as_window(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int number of bars, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1 bar, got {value}")
    return int(value)


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length, got {detail}")


def _lines(value: Any, inputs: tuple, lookback: int, history: int) -> Any:
    """``value`` (an array, or a NamedTuple / tuple of arrays) as Lines whose numbers add
    ``lookback`` and ``history - 1`` to the largest of the ``inputs``' (see the module
    docstring); unchanged (plain) unless the inputs are Lines (and scalars)."""
    if len(inputs) == 1:
        source = inputs[0]
        if type(source) is not Line or source.history < 1:
            return value
        numbers = source.lookback, source.history
    else:
        numbers = combined(inputs) if any(type(x) is Line for x in inputs) else None
        if numbers is None:
            return value
    out_lookback, out_history = numbers[0] + lookback, numbers[1] + history - 1
    if isinstance(value, tuple):
        parts = [as_line(part, out_lookback, out_history) for part in value]
        return type(value)(*parts) if hasattr(value, "_fields") else tuple(parts)
    return as_line(value, out_lookback, out_history)


# --------------------------------------------------------------------------- wrappers


def sma(values, n: int) -> np.ndarray:
    """Simple moving average: the mean of the last ``n`` values, the current one included.

    Equals pandas ``s.rolling(n).mean()``: ``nan`` for the first ``n - 1`` values and for every
    window containing a ``nan``. Computed as ``fsum(window) / n`` (the correctly rounded sum,
    kept exactly while the window slides, see :func:`research.kernels.window_sums.window_means`),
    so the value at ``t`` depends only on ``values[t-n+1 : t+1]`` bit for bit; a constant window
    gives exactly its value. Look-back ``n - 1``, history ``n``.
    """
    x, n = _as_series("values", values), _as_window("n", n)
    return _memoized("sma", (x,), (n,),
                     lambda: _lines(window_means(x[0], n), (values,), n - 1, n))


def ema(values, n: int) -> np.ndarray:
    """Exponential moving average with span ``n`` (``alpha = 2 / (n + 1)``).

    Equals pandas ``s.ewm(span=n, adjust=False, min_periods=n).mean()``: seeded with the first
    non-``nan`` value, ``nan`` until ``n`` values have been seen. A ``nan`` after the seed
    propagates to all later values. Look-back ``n - 1``; history
    ``converged_warmup(ema_alpha(n)) + 1`` (the seed forgotten to the last bit).
    """
    x, n = _as_series("values", values), _as_window("n", n)
    history = converged_warmup(ema_alpha(n)) + 1
    return _memoized("ema", (x,), (n,),
                     lambda: _lines(ema_nb(x[0], n), (values,), n - 1, history))


def rsi(close, n: int = 14) -> np.ndarray:
    """Relative strength index with Wilder smoothing, in ``[0, 100]``.

    ``avg_gain`` and ``avg_loss`` are pandas ``ewm(alpha=1/n, adjust=False, min_periods=n)``
    means of the positive and negative parts of ``close.diff()`` (seeded with the first change,
    so the first value is at index ``n``); ``rsi = 100 - 100 / (1 + avg_gain / avg_loss)``,
    ``100`` when ``avg_loss == 0 < avg_gain`` and ``50`` when both are 0 (no movement at all).
    Look-back ``n``; history ``converged_warmup(1 / n) + 2`` (one change more than an EMA).
    """
    x, n = _as_series("close", close), _as_window("n", n)
    history = converged_warmup(wilder_alpha(n)) + 2
    return _memoized("rsi", (x,), (n,), lambda: _lines(rsi_nb(x[0], n), (close,), n, history))


class Macd(NamedTuple):
    """MACD line, signal line and histogram (``line - signal``)."""

    line: np.ndarray
    signal: np.ndarray
    histogram: np.ndarray


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """Moving average convergence/divergence.

    ``line = ema(close, fast) - ema(close, slow)`` (look-back ``slow - 1``, history that of the
    slow EMA); ``signal = ema(line, signal)`` seeded with the first line value (look-back
    ``slow + signal - 2``, history the line's plus ``converged_warmup(ema_alpha(signal))``);
    ``histogram = line - signal`` (the signal's numbers). Same as the pandas ``ewm(span=...,
    adjust=False, min_periods=span)`` formulation.
    """
    x = _as_series("close", close)
    fast, slow, signal = (_as_window(k, v) for k, v in
                          (("fast", fast), ("slow", slow), ("signal", signal)))
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be smaller than slow ({slow}): swap them")

    line_history = converged_warmup(ema_alpha(slow)) + 1
    signal_history = line_history + converged_warmup(ema_alpha(signal))

    def compute() -> Macd:
        line = ema_nb(x[0], fast) - ema_nb(x[0], slow)
        signal_line = ema_nb(line, signal)
        later = _lines((signal_line, line - signal_line), (close,), slow + signal - 2,
                       signal_history)
        return Macd(_lines(line, (close,), slow - 1, line_history), *later)

    return _memoized("macd", (x,), (fast, slow, signal), compute)


class Bands(NamedTuple):
    """Bollinger bands: middle (SMA), upper and lower."""

    middle: np.ndarray
    upper: np.ndarray
    lower: np.ndarray


def bollinger(close, n: int = 20, num_std: float = 2.0, ddof: int = 0) -> Bands:
    """Bollinger bands: ``middle = sma(close, n)``, ``upper/lower = middle +/- num_std * std``.

    ``std`` is the **population** standard deviation (``ddof=0``, as in Bollinger's definition)
    of the same ``n`` closes, pandas ``rolling(n).std(ddof=0)``; pass ``ddof=1`` for the sample
    one. Computed two-pass per window (exact window function; ``0`` for a constant window).
    Look-back ``n - 1``, history ``n``.
    """
    x = _as_series("close", close)
    n = _as_window("n", n)
    if not isinstance(num_std, (int, float, np.integer, np.floating)) or not num_std >= 0:
        raise ValueError(f"num_std must be a non-negative number, got {num_std!r}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    num_std, ddof = float(num_std), int(ddof)

    def compute() -> Bands:
        middle = window_means(x[0], n)
        width = num_std * rolling_std_nb(x[0], n, ddof)
        return Bands(middle, middle + width, middle - width)

    return _memoized("bollinger", (x,), (n, num_std, ddof),
                     lambda: _lines(compute(), (close,), n - 1, n))


def rolling_std(values, n: int, ddof: int = 0) -> np.ndarray:
    """Rolling standard deviation of the last ``n`` values (pandas ``rolling(n).std(ddof)``).

    Two-pass over each window around its first value (a pure function of the window, more
    accurate than pandas' online update); exactly ``0`` for a constant window. Look-back
    ``n - 1``, history ``n``.
    """
    x = _as_series("values", values)
    n = _as_window("n", n)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    ddof = int(ddof)
    return _memoized("rolling_std", (x,), (n, ddof),
                     lambda: _lines(rolling_std_nb(x[0], n, ddof), (values,), n - 1, n))


def true_range(high, low, close) -> np.ndarray:
    """True range per bar; the first bar's is ``high - low`` (see :func:`true_range_nb`).
    Look-back 0, history 2 (the previous close)."""
    h, lo, c = _as_series("high", high), _as_series("low", low), _as_series("close", close)
    _same_length(high=h[0], low=lo[0], close=c[0])
    return _memoized("true_range", (h, lo, c), (),
                     lambda: _lines(true_range_nb(h[0], lo[0], c[0]), (high, low, close), 0,
                                    2))


def atr(high, low, close, n: int = 14) -> np.ndarray:
    """Average true range with Wilder smoothing (``alpha = 1 / n``).

    pandas ``true_range.ewm(alpha=1/n, adjust=False, min_periods=n).mean()`` where the first
    bar's true range is ``high - low``; first value at index ``n - 1``. Look-back ``n - 1``;
    history ``converged_warmup(1 / n) + 2`` (the true range's 2 bars, then the seed forgotten).
    """
    h, lo, c = _as_series("high", high), _as_series("low", low), _as_series("close", close)
    _same_length(high=h[0], low=lo[0], close=c[0])
    n = _as_window("n", n)
    history = converged_warmup(wilder_alpha(n)) + 2
    return _memoized("atr", (h, lo, c), (n,),
                     lambda: _lines(atr_nb(h[0], lo[0], c[0], n), (high, low, close), n - 1,
                                    history))


class Channel(NamedTuple):
    """Donchian channel: upper (highest high) and lower (lowest low)."""

    upper: np.ndarray
    lower: np.ndarray


def donchian(high, low, n: int = 20) -> Channel:
    """Donchian channel over the last ``n`` bars, **the current bar included**.

    ``upper = high.rolling(n).max()``, ``lower = low.rolling(n).min()``. Look-back ``n - 1``,
    history ``n``. For a breakout test against the channel of the bars *before* ``t``, compare
    with ``shift(upper)`` (see :func:`shift`).
    """
    h, lo = _as_series("high", high), _as_series("low", low)
    _same_length(high=h[0], low=lo[0])
    n = _as_window("n", n)
    return _memoized("donchian", (h, lo), (n,), lambda: _lines(
        Channel(rolling_max_nb(h[0], n), rolling_min_nb(lo[0], n)), (high, low), n - 1, n))


def rolling_zscore(values, n: int, ddof: int = 0) -> np.ndarray:
    """Rolling z-score ``(x[t] - mean) / std`` over the last ``n`` values (``ddof`` as in
    :func:`rolling_std`); ``nan`` before ``n`` values, around ``nan`` inputs and where
    ``std == 0``. Mean and deviations are taken around the window's first value, so the (often
    tiny) deviation ``x[t] - mean`` keeps full precision. Look-back ``n - 1``, history ``n``."""
    x = _as_series("values", values)
    n = _as_window("n", n)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    ddof = int(ddof)
    return _memoized("rolling_zscore", (x,), (n, ddof),
                     lambda: _lines(rolling_zscore_nb(x[0], n, ddof), (values,), n - 1, n))


def unchanged_run(values) -> np.ndarray:
    """Number of consecutive bars, ending at each bar, whose value equals the previous one.

    ``0`` where the value changed (or at the first bar); ``nan`` breaks a run. Returned as a
    plain int64 array: a run may reach back to the first bar, so no window of recent bars is
    sure to give its value (see :func:`unchanged` for a test over a bounded window).
    """
    run = equal_run_nb(_as_series("values", values)[0])
    return np.maximum(run - 1, 0)


def unchanged(values, n: int) -> np.ndarray:
    """Bool: the value has not changed over the last ``n`` bars, i.e. ``values[t-n .. t]`` are
    ``n + 1`` equal, non-``nan`` values (``False`` for the first ``n`` bars). Look-back 0,
    history ``n + 1``."""
    x, n = _as_series("values", values), _as_window("n", n)
    return _memoized("unchanged", (x,), (n,),
                     lambda: _lines(equal_run_nb(x[0]) > n, (values,), 0, n + 1))


def shift(values, periods: int = 1) -> np.ndarray:
    """``values`` delayed by ``periods`` bars (``nan`` in front), like pandas ``shift``.

    The way to compare a bar with earlier ones: ``close > shift(close)``. Look-back and history
    ``periods`` more than the input's.
    """
    x = _as_series("values", values)
    if isinstance(periods, bool) or not isinstance(periods, (int, np.integer)) or periods < 0:
        raise ValueError(f"periods must be a non-negative int, got {periods!r}")
    periods = int(periods)

    def compute() -> np.ndarray:
        out = np.full(len(x[0]), np.nan)
        if periods < len(x[0]):
            out[periods:] = x[0][: len(x[0]) - periods]
        return _lines(out, (values,), periods, periods + 1)

    return _memoized("shift", (x,), (periods,), compute)


def crossed_above(a, b) -> np.ndarray:
    """Bool array: ``a[t] > b[t] and a[t-1] <= b[t-1]`` (``False`` at 0 and around ``nan``).
    Look-back 1, history 2."""
    x, y = _as_series("a", a)[0], _as_series("b", b)[0]
    _same_length(a=x, b=y)
    return _lines(crossed_above_nb(x, y), (a, b), 1, 2)


def crossed_below(a, b) -> np.ndarray:
    """Bool array: ``a[t] < b[t] and a[t-1] >= b[t-1]`` (``False`` at 0 and around ``nan``).
    Look-back 1, history 2."""
    x, y = _as_series("a", a)[0], _as_series("b", b)[0]
    _same_length(a=x, b=y)
    return _lines(crossed_above_nb(y, x), (a, b), 1, 2)


# --------------------------------------------------------------------------- windowed signal rules
#
# Path-dependent rules ("in a trade until an exit") written as *windowed most-recent-event*
# rules: the decision at ``t`` looks at events in the last ``max_hold`` bars only, so it is a
# pure function of a bounded window of history (the runner's parity contract), unlike a state
# machine whose state can depend on the whole history. Look-back: that of the inputs (a bar
# whose events are all false is flat, whatever the bars before); history: the inputs' plus
# ``max_hold - 1``.


def _events(name: str, values, size: int | None = None) -> np.ndarray:
    """Event flags as a contiguous bool array; a scalar (``False``) is broadcast to ``size``."""
    if size is not None and not isinstance(values, np.ndarray) or \
            isinstance(values, np.ndarray) and values.ndim == 0:
        return np.full(size, bool(values))
    return np.ascontiguousarray(values, dtype=np.bool_)


def event_position(long_entry, long_exit, short_entry=False, short_exit=False,
                   max_hold: int = 100) -> np.ndarray:
    """Turn entry/exit event flags into a position level per bar (``+1``, ``-1`` or ``0``).

    Rule at bar ``t``: take the most recent entry event (long or short) among bars
    ``t - max_hold + 1 .. t``. The position is that side if no exit event of the same side
    occurred after it (up to and including ``t``), else flat; flat if there is no entry event
    in the window. So each new entry event re-arms a time stop of ``max_hold`` bars, an
    opposite entry reverses the position, and an exit event on the entry bar itself is ignored.
    If both sides enter on the same bar, long wins. The result at ``t`` depends only on the
    events at bars ``t - max_hold + 1 .. t``. ``short_entry`` and ``short_exit`` may be
    ``False`` (or ``None``: no short side). Look-back that of the inputs, history theirs plus
    ``max_hold - 1``.
    """
    entries = _events("long_entry", long_entry)
    size = len(entries)
    flags = (entries, _events("long_exit", long_exit, size),
             _events("short_entry", False if short_entry is None else short_entry, size),
             _events("short_exit", False if short_exit is None else short_exit, size))
    _same_length(long_entry=flags[0], long_exit=flags[1], short_entry=flags[2],
                 short_exit=flags[3])
    max_hold = _as_window("max_hold", max_hold)
    out = event_position_nb(*flags, max_hold)
    inputs = tuple(x for x in (long_entry, long_exit, short_entry, short_exit)
                   if x is not None)
    return _lines(out, inputs, 0, max_hold)


def trailing_exit_position(entry, close, stop_distance, max_hold: int = 100):
    """Long position from entry events with a trailing exit on closes and a time stop.

    Rule at bar ``t``: let ``s`` be the most recent bar with ``entry[s]`` among
    ``t - max_hold + 1 .. t``; flat if none. Long iff for every ``u`` in ``s+1 .. t``:
    ``close[u] >= max(close[s..u]) - stop_distance[u]`` (a ``nan`` distance counts as an exit).
    Each entry event re-arms the trailing high and the ``max_hold``-bar time stop. Returns
    ``(position, stop_level)`` with ``stop_level[t] = max(close[s..t]) - stop_distance[t]``
    while long, ``nan`` otherwise. The result at ``t`` depends only on bars
    ``t - max_hold + 1 .. t``: look-back that of the inputs, history theirs plus
    ``max_hold - 1``.
    """
    flags = np.ascontiguousarray(entry, dtype=np.bool_)
    prices = _as_series("close", close)[0]
    distance = _as_series("stop_distance", stop_distance)[0]
    _same_length(entry=flags, close=prices, stop_distance=distance)
    max_hold = _as_window("max_hold", max_hold)
    out = trailing_exit_position_nb(flags, prices, distance, max_hold)
    return _lines(out, (entry, close, stop_distance), 0, max_hold)


# --------------------------------------------------------------------------- your own indicators


def indicator(lookback: int | Callable[..., int], history: int | Callable[..., int] | None = None):
    """Decorator: make an array function an indicator whose results are Lines.

    ``@indicator(lookback=..., history=...)`` declares the function's own look-back (values
    before its first defined output, on raw prices) and history window (bars a window needs so
    that its last output equals the full-history one bit for bit; default ``lookback + 1``,
    right for a function of the last ``lookback + 1`` values). Each may be a number or a
    function called with the same arguments as the indicator (``lookback=lambda values, n:
    n - 1``). The function receives plain arrays (the Lines' values) and returns an array, or a
    tuple / NamedTuple of arrays, aligned with its input. On Line inputs every result is a Line
    with ``lookback = input lookback + own lookback`` and ``history = input history + own
    history - 1`` (the largest over the inputs); on plain inputs the results stay plain. The
    function must accept zero-length arrays: a strategy reads its numbers on empty bars.

    Example::

        @indicator(lookback=lambda values, n: n - 1)
        def rolling_median(values, n):
            out = np.full(len(values), np.nan)
            if len(values) >= n:
                windows = np.lib.stride_tricks.sliding_window_view(values, n)
                out[n - 1:] = np.median(windows, axis=1)
            return out
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            plain_args = [_unwrapped(value) for value in args]
            plain_kwargs = {key: _unwrapped(value) for key, value in kwargs.items()}
            result = function(*plain_args, **plain_kwargs)
            inputs = tuple(value for value in (*args, *kwargs.values())
                           if isinstance(value, np.ndarray))
            if not any(isinstance(value, Line) for value in inputs):
                return result
            own_lookback = _declared("lookback", lookback, args, kwargs, function, 0)
            own_history = (own_lookback + 1 if history is None else
                           _declared("history", history, args, kwargs, function, 1))
            return _lines(result, inputs, own_lookback, own_history)

        return wrapper

    return decorate


def _unwrapped(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, Line) else value


def _declared(what: str, value: Any, args: tuple, kwargs: dict, function: Callable,
              least: int) -> int:
    number = value(*args, **kwargs) if callable(value) else value
    if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, np.integer)) \
            or number < least:
        raise ValueError(f"@indicator {what}= of {function.__name__} must give an int of at "
                         f"least {least} bars, got {number!r}")
    return int(number)
