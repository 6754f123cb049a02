"""Numba kernels of the indicators (pure core: numpy and numba only).

Each kernel takes contiguous float64 (or bool) arrays and never raises; the validated wrappers,
with their exact definitions, look-back and history window, are in :mod:`research.indicators`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


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

    Both are ``nan`` before ``n`` values and for windows holding a ``nan``; a window of
    identical values has ``std == 0.0`` exactly and deviation ``nan`` (it is never divided by).
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
    ``nan`` is involved (leaving the look-back is not a cross)."""
    size = len(a)
    out = np.zeros(size, dtype=np.bool_)
    for t in range(1, size):
        out[t] = a[t] > b[t] and a[t - 1] <= b[t - 1]
    return out


# --------------------------------------------------------------------------- windowed signal rules


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
