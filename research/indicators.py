"""Technical indicators: Numba kernels (``*_nb``) and thin validated wrappers.

Pure core: numpy and numba only. Every indicator is **causal** (the value at ``t`` uses inputs
at ``t`` and before only) and returns float64 arrays the length of its input, with ``nan``
during warm-up. The wrappers (names without ``_nb``) validate their arguments and raise
``ValueError``/``TypeError`` saying how to fix them; the kernels take contiguous float64 arrays
and never raise.

Conventions (each matches the pandas formulation named in its docstring):

* **Window indicators** (SMA, Bollinger, z-score, Donchian) use the last ``n`` values, the
  current one included; the first ``n - 1`` outputs are ``nan``, and so is every output whose
  window contains a ``nan``. Each value is a pure function of its window's values, bit for
  bit: moving sums are kept **exactly** (see :mod:`research.kernels.window_sums`) and
  rounded once, and deviations are summed directly over the window, never by a floating-point
  running add-and-subtract whose drift would depend on the history before the window. So a
  strategy computed on a short window of recent bars gets bit-identical values to the same
  strategy computed on the full history (the runner's parity contract). A window whose values
  are all equal has mean exactly that value and standard deviation exactly 0.
* **Recursive indicators** (EMA, Wilder RSI and ATR) follow pandas ``ewm(adjust=False)``: the
  recursion ``y[t] = (1 - alpha) * y[t-1] + alpha * x[t]`` is seeded with the first non-``nan``
  input, and outputs stay ``nan`` until ``n`` inputs have been seen (``min_periods=n``). Leading
  ``nan`` inputs are skipped; a ``nan`` after the seed propagates to every later output. Their
  value depends on the seed with weight ``(1 - alpha)**k`` after ``k`` steps; after
  :func:`converged_warmup` steps that weight is below ``e**-60`` (about ``1e-26``), far under
  half an ulp, so sequences started from different points round to **identical** floats.
  Strategies declare that many bars of warm-up for each recursive indicator they use.

**Scoped memo.** Inside ``with indicator_cache():`` the wrappers remember their results, keyed
by the identity of their input arrays and their parameters, so that a sweep computes each
distinct window once per batch instead of once per parameter set, and a backtest computes its
strategy's indicators once for the target and the plot. Outside such a scope (strategies in the
runner, plain calls) nothing is remembered. See :func:`indicator_cache`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from research.kernels.window_sums import window_means

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
    """Bars after which a recursion with smoothing ``alpha`` no longer depends on its seed.

    Returns ``ceil(60 / alpha)``: the seed's weight ``(1 - alpha)**k <= exp(-alpha * k)`` is then
    at most ``exp(-60)`` (about ``8.8e-27``), so two runs of the recursion started at different
    bars agree to far below half an ulp and round to the same float64 values (in practice they
    become bit-identical well before; the strategy tests check bit-equality on real data).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return int(math.ceil(SEED_DECAY / alpha - 1e-9))


def _as_series(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise TypeError(
            f"{name} must be a 1-D array of prices, got an array of shape {array.shape}"
        )
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


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


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def equal_run_nb(x):
    """Length of the run of equal consecutive values ending at each index (``nan`` breaks runs)."""
    n = len(x)
    out = np.zeros(n, dtype=np.int64)
    for t in range(n):
        if t > 0 and x[t] == x[t - 1]:
            out[t] = out[t - 1] + 1
        elif x[t] == x[t]:
            out[t] = 1
    return out


@njit(cache=True)
def _window_deviation_nb(x, n, ddof, t):
    """``(x[t] - mean, std)`` of the window ``x[t-n+1 : t+1]``, two-pass around its first value.

    Values are shifted by the window's first value before summing (exact for nearby prices),
    which keeps the deviations accurate when they are tiny compared with the price.
    """
    origin = x[t - n + 1]
    total = 0.0
    for k in range(t - n + 1, t + 1):
        total += x[k] - origin
    mean = total / n
    squares = 0.0
    for k in range(t - n + 1, t + 1):
        d = (x[k] - origin) - mean
        squares += d * d
    return (x[t] - origin) - mean, math.sqrt(squares / (n - ddof))


@njit(cache=True)
def _rolling_deviation_nb(x, n, ddof):
    """``(x[t] - mean, std)`` of the last ``n`` values at every ``t``.

    Both are ``nan`` in warm-up and for windows holding a ``nan``; a window of identical values
    has ``std == 0.0`` exactly and deviation ``nan`` (it is never divided by).
    """
    size = len(x)
    deviation = np.full(size, np.nan)
    std = np.full(size, np.nan)
    if n - ddof <= 0:
        return deviation, std
    run = equal_run_nb(x)
    last_nan = -1
    for t in range(size):
        if x[t] != x[t]:
            last_nan = t
        if t < n - 1 or t - last_nan < n:
            continue
        if run[t] >= n:
            std[t] = 0.0
        else:
            deviation[t], std[t] = _window_deviation_nb(x, n, ddof, t)
    return deviation, std


@njit(cache=True)
def rolling_std_nb(x, n, ddof):
    """Standard deviation of the last ``n`` values (``ddof`` 0 or 1; see :func:`rolling_std`)."""
    return _rolling_deviation_nb(x, n, ddof)[1]


@njit(cache=True)
def rolling_zscore_nb(x, n, ddof):
    """``(x[t] - mean) / std`` of the last ``n`` values; ``nan`` when ``std == 0``."""
    deviation, std = _rolling_deviation_nb(x, n, ddof)
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        if std[t] > 0.0:
            out[t] = deviation[t] / std[t]
    return out


@njit(cache=True)
def ewm_nb(x, alpha, min_periods):
    """pandas ``x.ewm(alpha=alpha, adjust=False, min_periods=min_periods).mean()`` for inputs
    whose ``nan`` values are all leading: seeded with the first non-``nan`` value."""
    size = len(x)
    out = np.full(size, np.nan)
    start = 0
    while start < size and x[start] != x[start]:
        start += 1
    if start == size:
        return out
    keep = 1.0 - alpha
    y = x[start]
    if min_periods <= 1:
        out[start] = y
    for t in range(start + 1, size):
        y = keep * y + alpha * x[t]
        if t - start + 1 >= min_periods:
            out[t] = y
    return out


@njit(cache=True)
def ema_nb(x, n):
    """Exponential moving average with span ``n`` (see :func:`ema`)."""
    return ewm_nb(x, 2.0 / (n + 1.0), n)


@njit(cache=True)
def rsi_nb(close, n):
    """Wilder RSI over ``n`` changes (see :func:`rsi`)."""
    size = len(close)
    gain = np.full(size, np.nan)
    loss = np.full(size, np.nan)
    for t in range(1, size):
        d = close[t] - close[t - 1]
        if d == d:
            gain[t] = d if d > 0.0 else 0.0
            loss[t] = -d if d < 0.0 else 0.0
    avg_gain = ewm_nb(gain, 1.0 / n, n)
    avg_loss = ewm_nb(loss, 1.0 / n, n)
    out = np.full(size, np.nan)
    for t in range(size):
        g = avg_gain[t]
        lo = avg_loss[t]
        if g != g or lo != lo:
            continue
        if lo == 0.0:
            out[t] = 100.0 if g > 0.0 else 50.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + g / lo)
    return out


@njit(cache=True)
def true_range_nb(high, low, close):
    """True range: ``max(high - low, |high - prev close|, |low - prev close|)``; ``high - low``
    on the first bar (no previous close)."""
    size = len(close)
    out = np.empty(size)
    for t in range(size):
        r = high[t] - low[t]
        if t > 0:
            pc = close[t - 1]
            a = abs(high[t] - pc)
            b = abs(low[t] - pc)
            if a > r:
                r = a
            if b > r:
                r = b
            if pc != pc:
                r = np.nan
        out[t] = r
    return out


@njit(cache=True)
def atr_nb(high, low, close, n):
    """Wilder average true range (see :func:`atr`)."""
    return ewm_nb(true_range_nb(high, low, close), 1.0 / n, n)


@njit(cache=True)
def rolling_max_nb(x, n):
    """Maximum of the last ``n`` values, current included; ``nan`` if the window has a ``nan``."""
    size = len(x)
    out = np.full(size, np.nan)
    queue = np.empty(size, dtype=np.int64)  # indices of a decreasing run of values
    head = 0
    tail = 0
    last_nan = -1
    for t in range(size):
        v = x[t]
        if v != v:
            last_nan = t
            head = tail = 0
            continue
        while tail > head and x[queue[tail - 1]] <= v:
            tail -= 1
        queue[tail] = t
        tail += 1
        while queue[head] <= t - n:
            head += 1
        if t >= n - 1 and t - last_nan >= n:
            out[t] = x[queue[head]]
    return out


@njit(cache=True)
def rolling_min_nb(x, n):
    """Minimum of the last ``n`` values, current included; ``nan`` if the window has a ``nan``."""
    return -rolling_max_nb(-x, n)


@njit(cache=True)
def crossed_above_nb(a, b):
    """``out[t] = a[t] > b[t] and a[t-1] <= b[t-1]``; ``False`` at ``t = 0`` and wherever a
    ``nan`` is involved (leaving warm-up is not a cross)."""
    size = len(a)
    out = np.zeros(size, dtype=np.bool_)
    for t in range(1, size):
        out[t] = a[t] > b[t] and a[t - 1] <= b[t - 1]
    return out


# --------------------------------------------------------------------------- scoped memo

#: Default bound of one :func:`indicator_cache` scope (least recently used results go first).
DEFAULT_CACHE_BYTES = 256 * 2**20


class IndicatorMemo:
    """The results remembered by one :func:`indicator_cache` scope (least recently used first).

    Each entry keeps a reference to its input arrays, so their ``id`` cannot be reused by
    another array while the entry lives.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[tuple, tuple[tuple[np.ndarray, ...], Any, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple, inputs: tuple[np.ndarray, ...], value: Any) -> None:
        size = sum(a.nbytes for a in _arrays_of(value))
        if size > self.max_bytes:
            return
        while self.entries and self.nbytes + size > self.max_bytes:
            _, (_, _, evicted) = self.entries.popitem(last=False)
            self.nbytes -= evicted
        self.entries[key] = (inputs, value, size)
        self.nbytes += size


_ACTIVE_MEMO: ContextVar[IndicatorMemo | None] = ContextVar("candela_indicator_memo",
                                                            default=None)


@contextmanager
def indicator_cache(max_bytes: int = DEFAULT_CACHE_BYTES) -> Iterator[IndicatorMemo]:
    """Scope in which the indicator wrappers remember their results.

    Within the ``with`` block, a wrapper called again with the **same input array objects**
    (``bars.close`` itself, not a copy or a new slice) and the same parameters returns the
    value it computed the first time, instead of recomputing it; results are bit for bit what
    a fresh call returns. Since callers share them, results from inside a scope are
    **read-only** arrays (writing to one raises "assignment destination is read-only": copy it
    first, ``np.array(value)``); a copy per call would cost a sweep about as much as the
    moving averages themselves. Inputs must not be modified in place inside the scope. Inputs
    that need a conversion (another dtype, non-contiguous) are not remembered. The memo holds at
    most ``max_bytes`` of results (least recently used dropped first), lives in the current
    thread / context only, and is dropped when the block ends; scopes nest (the inner one is
    used).

    Used by :func:`research.backtest` and by each worker batch of :func:`research.sweep`.
    """
    memo = IndicatorMemo(max_bytes)
    token = _ACTIVE_MEMO.set(memo)
    try:
        yield memo
    finally:
        _ACTIVE_MEMO.reset(token)


def _arrays_of(value: Any) -> tuple[np.ndarray, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,)


def _read_only(value: Any) -> Any:
    for array in _arrays_of(value):
        array.flags.writeable = False
    return value


def _memoized(name: str, originals: tuple, inputs: tuple[np.ndarray, ...], params: tuple,
              compute: Callable[[], Any]) -> Any:
    """``compute()``, remembered in the active :func:`indicator_cache` scope if there is one
    and every input is the caller's own array (no conversion was needed)."""
    memo = _ACTIVE_MEMO.get()
    if memo is None or any(a is not b for a, b in zip(originals, inputs)):
        return compute()
    key = (name, tuple(id(a) for a in inputs), params)
    value = memo.get(key)
    if value is None:
        value = _read_only(compute())
        memo.put(key, inputs, value)
    return value


# --------------------------------------------------------------------------- wrappers


def sma(values, n: int) -> np.ndarray:
    """Simple moving average: the mean of the last ``n`` values, the current one included.

    Equals pandas ``s.rolling(n).mean()``: ``nan`` for the first ``n - 1`` values and for every
    window containing a ``nan``. Computed as ``fsum(window) / n`` (the correctly rounded sum,
    kept exactly while the window slides, see :func:`research.kernels.window_sums.window_means`),
    so the value at ``t`` depends only on ``values[t-n+1 : t+1]`` bit for bit; a constant window
    gives exactly its value.
    """
    x, n = _as_series("values", values), _as_window("n", n)
    return _memoized("sma", (values,), (x,), (n,), lambda: window_means(x, n))


def ema(values, n: int) -> np.ndarray:
    """Exponential moving average with span ``n`` (``alpha = 2 / (n + 1)``).

    Equals pandas ``s.ewm(span=n, adjust=False, min_periods=n).mean()``: seeded with the first
    non-``nan`` value, ``nan`` until ``n`` values have been seen. A ``nan`` after the seed
    propagates to all later values. Forgets its seed after
    ``converged_warmup(ema_alpha(n))`` bars.
    """
    x, n = _as_series("values", values), _as_window("n", n)
    return _memoized("ema", (values,), (x,), (n,), lambda: ema_nb(x, n))


def rsi(close, n: int = 14) -> np.ndarray:
    """Relative strength index with Wilder smoothing, in ``[0, 100]``.

    ``avg_gain`` and ``avg_loss`` are pandas ``ewm(alpha=1/n, adjust=False, min_periods=n)``
    means of the positive and negative parts of ``close.diff()`` (seeded with the first change,
    so the first value is at index ``n``); ``rsi = 100 - 100 / (1 + avg_gain / avg_loss)``,
    ``100`` when ``avg_loss == 0 < avg_gain`` and ``50`` when both are 0 (no movement at all).
    Forgets its seed after ``converged_warmup(1 / n) + 1`` bars.
    """
    x, n = _as_series("close", close), _as_window("n", n)
    return _memoized("rsi", (close,), (x,), (n,), lambda: rsi_nb(x, n))


class Macd(NamedTuple):
    """MACD line, signal line and histogram (``line - signal``)."""

    line: np.ndarray
    signal: np.ndarray
    histogram: np.ndarray


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """Moving average convergence/divergence.

    ``line = ema(close, fast) - ema(close, slow)`` (first value at ``slow - 1``);
    ``signal = ema(line, signal)`` seeded with the first line value (first value at
    ``slow + signal - 2``); ``histogram = line - signal``. Same as the pandas ``ewm(span=...,
    adjust=False, min_periods=span)`` formulation.
    """
    x = _as_series("close", close)
    fast, slow, signal = (_as_window(k, v) for k, v in
                          (("fast", fast), ("slow", slow), ("signal", signal)))
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be smaller than slow ({slow}): swap them")

    def compute() -> Macd:
        line = ema_nb(x, fast) - ema_nb(x, slow)
        signal_line = ema_nb(line, signal)
        return Macd(line, signal_line, line - signal_line)

    return _memoized("macd", (close,), (x,), (fast, slow, signal), compute)


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
    """
    x = _as_series("close", close)
    n = _as_window("n", n)
    if not isinstance(num_std, (int, float, np.integer, np.floating)) or not num_std >= 0:
        raise ValueError(f"num_std must be a non-negative number, got {num_std!r}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    num_std, ddof = float(num_std), int(ddof)

    def compute() -> Bands:
        middle = window_means(x, n)
        width = num_std * rolling_std_nb(x, n, ddof)
        return Bands(middle, middle + width, middle - width)

    return _memoized("bollinger", (close,), (x,), (n, num_std, ddof), compute)


def rolling_std(values, n: int, ddof: int = 0) -> np.ndarray:
    """Rolling standard deviation of the last ``n`` values (pandas ``rolling(n).std(ddof)``).

    Two-pass over each window around its first value (a pure function of the window, more
    accurate than pandas' online update); exactly ``0`` for a constant window.
    """
    x = _as_series("values", values)
    n = _as_window("n", n)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    ddof = int(ddof)
    return _memoized("rolling_std", (values,), (x,), (n, ddof),
                     lambda: rolling_std_nb(x, n, ddof))


def true_range(high, low, close) -> np.ndarray:
    """True range per bar; the first bar's is ``high - low`` (see :func:`true_range_nb`)."""
    h, lo, c = _as_series("high", high), _as_series("low", low), _as_series("close", close)
    _same_length(high=h, low=lo, close=c)
    return _memoized("true_range", (high, low, close), (h, lo, c), (),
                     lambda: true_range_nb(h, lo, c))


def atr(high, low, close, n: int = 14) -> np.ndarray:
    """Average true range with Wilder smoothing (``alpha = 1 / n``).

    pandas ``true_range.ewm(alpha=1/n, adjust=False, min_periods=n).mean()`` where the first
    bar's true range is ``high - low``; first value at index ``n - 1``. Forgets its seed after
    ``converged_warmup(1 / n) + 1`` bars.
    """
    h, lo, c = _as_series("high", high), _as_series("low", low), _as_series("close", close)
    _same_length(high=h, low=lo, close=c)
    n = _as_window("n", n)
    return _memoized("atr", (high, low, close), (h, lo, c), (n,), lambda: atr_nb(h, lo, c, n))


class Channel(NamedTuple):
    """Donchian channel: upper (highest high) and lower (lowest low)."""

    upper: np.ndarray
    lower: np.ndarray


def donchian(high, low, n: int = 20) -> Channel:
    """Donchian channel over the last ``n`` bars, **the current bar included**.

    ``upper = high.rolling(n).max()``, ``lower = low.rolling(n).min()``. For a breakout test
    against the channel of the bars *before* ``t``, compare with ``upper[t-1]`` (see
    :func:`shift`).
    """
    h, lo = _as_series("high", high), _as_series("low", low)
    _same_length(high=h, low=lo)
    n = _as_window("n", n)
    return _memoized("donchian", (high, low), (h, lo), (n,),
                     lambda: Channel(rolling_max_nb(h, n), rolling_min_nb(lo, n)))


def rolling_zscore(values, n: int, ddof: int = 0) -> np.ndarray:
    """Rolling z-score ``(x[t] - mean) / std`` over the last ``n`` values (``ddof`` as in
    :func:`rolling_std`); ``nan`` in warm-up, around ``nan`` inputs and where ``std == 0``.
    Mean and deviations are taken around the window's first value, so the (often tiny)
    deviation ``x[t] - mean`` keeps full precision."""
    x = _as_series("values", values)
    n = _as_window("n", n)
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population) or 1 (sample), got {ddof!r}")
    ddof = int(ddof)
    return _memoized("rolling_zscore", (values,), (x,), (n, ddof),
                     lambda: rolling_zscore_nb(x, n, ddof))


def unchanged_run(values) -> np.ndarray:
    """Number of consecutive bars, ending at each bar, whose value equals the previous one.

    ``0`` where the value changed (or at the first bar); ``nan`` breaks a run. Returned as
    int64; a pure function of the last ``k + 1`` values whenever it is below ``k``.
    """
    run = equal_run_nb(_as_series("values", values))
    return np.maximum(run - 1, 0)


def shift(values, periods: int = 1) -> np.ndarray:
    """``values`` delayed by ``periods`` bars (``nan`` in front), like pandas ``shift``."""
    values = _as_series("values", values)
    if isinstance(periods, bool) or not isinstance(periods, (int, np.integer)) or periods < 0:
        raise ValueError(f"periods must be a non-negative int, got {periods!r}")
    out = np.full(len(values), np.nan)
    if periods < len(values):
        out[periods:] = values[: len(values) - periods]
    return out


def crossed_above(a, b) -> np.ndarray:
    """Bool array: ``a[t] > b[t] and a[t-1] <= b[t-1]`` (``False`` at 0 and around ``nan``)."""
    a, b = _as_series("a", a), _as_series("b", b)
    _same_length(a=a, b=b)
    return crossed_above_nb(a, b)


def crossed_below(a, b) -> np.ndarray:
    """Bool array: ``a[t] < b[t] and a[t-1] >= b[t-1]`` (``False`` at 0 and around ``nan``)."""
    a, b = _as_series("a", a), _as_series("b", b)
    _same_length(a=a, b=b)
    return crossed_above_nb(b, a)


# --------------------------------------------------------------------------- windowed signal rules
#
# Path-dependent rules ("in a trade until an exit") written as *windowed most-recent-event*
# rules: the decision at ``t`` looks at events in the last ``max_hold`` bars only, so it is a
# pure function of a bounded window of history (the runner's parity contract), unlike a state
# machine whose state can depend on the whole history.


@njit(cache=True)
def event_position_nb(long_entry, long_exit, short_entry, short_exit, max_hold):
    """Position level from entry/exit events with a time stop (see :func:`event_position`)."""
    size = len(long_entry)
    out = np.zeros(size)
    last_long = -1
    last_short = -1
    last_long_exit = -1
    last_short_exit = -1
    for t in range(size):
        if long_entry[t]:
            last_long = t
        elif long_exit[t]:
            last_long_exit = t
        if short_entry[t]:
            last_short = t
        elif short_exit[t]:
            last_short_exit = t
        oldest = t - max_hold + 1
        if last_long >= last_short:
            if last_long >= oldest and last_long_exit < last_long and last_long >= 0:
                out[t] = 1.0
        else:
            if last_short >= oldest and last_short_exit < last_short:
                out[t] = -1.0
    return out


def event_position(long_entry, long_exit, short_entry=None, short_exit=None,
                   max_hold: int = 100) -> np.ndarray:
    """Turn entry/exit event flags into a position level per bar (``+1``, ``-1`` or ``0``).

    Rule at bar ``t``: take the most recent entry event (long or short) among bars
    ``t - max_hold + 1 .. t``. The position is that side if no exit event of the same side
    occurred after it (up to and including ``t``), else flat; flat if there is no entry event
    in the window. So each new entry event re-arms a time stop of ``max_hold`` bars, an
    opposite entry reverses the position, and an exit event on the entry bar itself is ignored.
    If both sides enter on the same bar, long wins. The result at ``t`` depends only on the
    events at bars ``t - max_hold + 1 .. t``.
    """
    long_entry = np.ascontiguousarray(long_entry, dtype=np.bool_)
    long_exit = np.ascontiguousarray(long_exit, dtype=np.bool_)
    none = np.zeros(len(long_entry), dtype=np.bool_)
    short_entry = none if short_entry is None else np.ascontiguousarray(short_entry, dtype=np.bool_)
    short_exit = none if short_exit is None else np.ascontiguousarray(short_exit, dtype=np.bool_)
    _same_length(long_entry=long_entry, long_exit=long_exit, short_entry=short_entry,
                 short_exit=short_exit)
    return event_position_nb(long_entry, long_exit, short_entry, short_exit,
                             _as_window("max_hold", max_hold))


@njit(cache=True)
def trailing_exit_position_nb(entry, close, stop_distance, max_hold):
    """Long-only position with a trailing exit on closes (see :func:`trailing_exit_position`).

    Returns ``(position, stop_level)``; ``stop_level`` is ``nan`` when flat.
    """
    size = len(entry)
    position = np.zeros(size)
    stop_level = np.full(size, np.nan)
    last_entry = -1
    highest = np.nan
    exited = True
    for t in range(size):
        if entry[t]:
            last_entry = t
            highest = close[t]
            exited = False
        elif last_entry >= 0 and not exited:
            if close[t] > highest:
                highest = close[t]
            level = highest - stop_distance[t]
            if close[t] < level or level != level:
                exited = True
        if last_entry >= 0 and not exited and last_entry >= t - max_hold + 1:
            position[t] = 1.0
            stop_level[t] = highest - stop_distance[t]
    return position, stop_level


def trailing_exit_position(entry, close, stop_distance, max_hold: int = 100):
    """Long position from entry events with a trailing exit on closes and a time stop.

    Rule at bar ``t``: let ``s`` be the most recent bar with ``entry[s]`` among
    ``t - max_hold + 1 .. t``; flat if none. Long iff for every ``u`` in ``s+1 .. t``:
    ``close[u] >= max(close[s..u]) - stop_distance[u]`` (a ``nan`` distance counts as an exit).
    Each entry event re-arms the trailing high and the ``max_hold``-bar time stop. Returns
    ``(position, stop_level)`` with ``stop_level[t] = max(close[s..t]) - stop_distance[t]``
    while long, ``nan`` otherwise. The result at ``t`` depends only on bars
    ``t - max_hold + 1 .. t``.
    """
    entry = np.ascontiguousarray(entry, dtype=np.bool_)
    close = _as_series("close", close)
    stop_distance = _as_series("stop_distance", stop_distance)
    _same_length(entry=entry, close=close, stop_distance=stop_distance)
    return trailing_exit_position_nb(entry, close, stop_distance, _as_window("max_hold", max_hold))
