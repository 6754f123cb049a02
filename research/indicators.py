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
  bit: moving sums are kept **exactly** (in fixed point, see :func:`window_sum_nb`) and
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


_MASK32 = 0xFFFFFFFF


@njit(cache=True)
def _float_parts_nb(bits):
    """``(mantissa, exponent)`` of the float64 whose IEEE-754 bits are ``bits`` (an int64):
    ``value == mantissa * 2**exponent`` exactly, ``mantissa`` a signed integer below ``2**53``."""
    biased = (bits >> 52) & 0x7FF
    mantissa = bits & 0xFFFFFFFFFFFFF
    if biased != 0:
        mantissa |= 0x10000000000000
    else:
        biased = 1  # subnormal
    if bits < 0:
        mantissa = -mantissa
    return mantissa, biased - 1075


@njit(cache=True)
def _accumulate_nb(limbs, bits, lowest, sign):
    """Add ``sign *`` the float64 with IEEE-754 ``bits`` exactly to ``limbs`` (base 2**32, bit 0
    worth ``2**lowest``).

    Carries are left lazy: each call moves a limb by less than ``2**34``.
    """
    mantissa, e = _float_parts_nb(bits)
    if mantissa < 0:
        mantissa = -mantissa
        sign = -sign
    shift = e - lowest
    p = shift >> 5
    r = shift & 31
    low = (mantissa & _MASK32) << r
    high = (mantissa >> 32) << r
    limbs[p] += sign * (low & _MASK32)
    limbs[p + 1] += sign * ((low >> 32) + (high & _MASK32))
    limbs[p + 2] += sign * (high >> 32)


@njit(cache=True)
def _normalize_nb(limbs):
    """Propagate carries in place so every limb but the top one is in ``[0, 2**32)``."""
    carry = np.int64(0)
    for k in range(len(limbs) - 1):
        v = limbs[k] + carry
        limbs[k] = v & _MASK32
        carry = v >> 32
    limbs[len(limbs) - 1] += carry


@njit(cache=True)
def _bit_length_nb(v):
    """Number of bits of ``0 < v < 2**32``."""
    n = 0
    if v >= 0x10000:
        v >>= 16
        n += 16
    if v >= 0x100:
        v >>= 8
        n += 8
    if v >= 0x10:
        v >>= 4
        n += 4
    if v >= 0x4:
        v >>= 2
        n += 2
    if v >= 0x2:
        v >>= 1
        n += 1
    return n + 1


@njit(cache=True)
def _rounded_value_nb(limbs, work, lowest, scales):
    """The exact number held in ``limbs``, rounded once to the nearest float64 (ties to even).

    Normalises ``limbs`` in place (the value is unchanged); ``work`` is scratch space;
    ``scales`` comes from :func:`_scales_nb`.
    """
    _normalize_nb(limbs)
    size = len(limbs)
    digits = limbs
    negative = limbs[size - 1] < 0
    if negative:  # the magnitude, normalised the same way
        for k in range(size):
            work[k] = -limbs[k]
        _normalize_nb(work)
        digits = work
    h = size - 1
    while h >= 0 and digits[h] == 0:
        h -= 1
    if h < 0:
        return 0.0
    top = digits[h]  # below 2**32: the limbs have 40 bits of headroom over any window sum
    bits = _bit_length_nb(top)
    second = digits[h - 1] if h >= 1 else np.int64(0)
    third = digits[h - 2] if h >= 2 else np.int64(0)
    # the 62 leading bits; every lower bit is folded into a sticky bit 0 (below the rounding
    # position), so the int -> float conversion rounds exactly once, correctly
    if bits <= 30:
        acc = (top << (62 - bits)) | (second << (30 - bits)) | (third >> (bits + 2))
        sticky = (third & ((np.int64(1) << (bits + 2)) - 1)) != 0
    else:
        acc = (top << (62 - bits)) | (second >> (bits - 30))
        sticky = (second & ((np.int64(1) << (bits - 30)) - 1)) != 0 or third != 0
    k = h - 3
    while k >= 0 and not sticky:
        sticky = digits[k] != 0
        k -= 1
    if sticky:
        acc |= 1
    j = 32 * h + bits
    scale = scales[j]
    if scale != 0.0:
        magnitude = float(acc) * scale  # exact: a power of two, the result is a normal float
    else:
        magnitude = math.ldexp(float(acc), j - 62 + lowest)
    return -magnitude if negative else magnitude


@njit(cache=True)
def _scales_nb(size, lowest):
    """``scales[j] = 2**(j - 62 + lowest)`` where multiplying a 62-bit integer by it is exact
    and lands in the normal range, else 0 (then ``ldexp`` is used)."""
    scales = np.zeros(32 * size + 1)
    for j in range(len(scales)):
        e = j - 62 + lowest
        if e + 61 >= -1022 and e + 62 <= 1023:
            scales[j] = math.ldexp(1.0, e)
    return scales


_TWO62 = np.int64(1) << 62


@njit(cache=True)
def _bit_length64_nb(v):
    """Number of bits of ``0 < v < 2**63``."""
    n = 0
    if v >= np.int64(1) << 32:
        v >>= 32
        n += 32
    return n + _bit_length_nb(v)


@njit(cache=True)
def _two_word_add_nb(hi, lo, bits, lowest, sign):
    """``(hi, lo)`` after adding ``sign *`` the float64 with IEEE-754 ``bits``; the exact
    number is ``(hi * 2**62 + lo) * 2**lowest`` with ``0 <= lo < 2**62``."""
    mantissa, e = _float_parts_nb(bits)
    if mantissa < 0:
        mantissa = -mantissa
        sign = -sign
    shift = e - lowest
    if shift < 62:
        low = (mantissa & ((np.int64(1) << (62 - shift)) - 1)) << shift
        high = mantissa >> (62 - shift)
    else:
        low = np.int64(0)
        high = mantissa << (shift - 62)
    if sign > 0:
        lo += low
        if lo >= _TWO62:
            lo -= _TWO62
            hi += 1
        hi += high
    else:
        lo -= low
        if lo < 0:
            lo += _TWO62
            hi -= 1
        hi -= high
    return hi, lo


@njit(cache=True)
def _two_word_rounded_nb(hi, lo, lowest, scales):
    """``(hi * 2**62 + lo) * 2**lowest`` rounded once to the nearest float64; ``scales`` from
    :func:`_scales_nb`."""
    negative = hi < 0
    if negative:
        if lo == 0:
            hi = -hi
        else:
            hi = -hi - 1
            lo = _TWO62 - lo
    if hi == 0:
        acc = lo
        j = 0
    else:
        j = _bit_length64_nb(hi)
        acc = (hi << (62 - j)) | (lo >> j)  # the 62 leading bits, then a sticky bit 0
        if lo & ((np.int64(1) << j) - 1):
            acc |= 1
    scale = scales[j + 62]  # 2**(j + lowest), when exact
    if scale != 0.0:
        magnitude = float(acc) * scale
    else:
        magnitude = math.ldexp(float(acc), j + lowest)
    return -magnitude if negative else magnitude


@njit(cache=True)
def _window_sum_two_word_nb(x, n, lowest, out):
    scales = _scales_nb(4, lowest)
    hi = np.int64(0)
    lo = np.int64(0)
    last_bad = -1
    bits = x.view(np.int64)
    for t in range(len(x)):
        v = x[t]
        if not math.isfinite(v):
            last_bad = t
        elif v != 0.0:
            hi, lo = _two_word_add_nb(hi, lo, bits[t], lowest, 1)
        if t >= n:
            old = x[t - n]
            if old != 0.0 and math.isfinite(old):
                hi, lo = _two_word_add_nb(hi, lo, bits[t - n], lowest, -1)
        if t >= n - 1 and t - last_bad >= n:
            out[t] = _two_word_rounded_nb(hi, lo, lowest, scales)


@njit(cache=True)
def _window_sum_limbs_nb(x, n, lowest, highest, out):
    # value bits, plus 40 bits of headroom so that a window sum (n < 2**40 values) stays below
    # the top limb's 2**32 once normalised; a value touches limbs p..p+2, p <= spread // 32
    limbs = np.zeros((highest - lowest + 53 + 40) // 32 + 2, dtype=np.int64)
    work = np.zeros(len(limbs), dtype=np.int64)
    scales = _scales_nb(len(limbs), lowest)
    last_bad = -1
    bits = x.view(np.int64)
    for t in range(len(x)):
        v = x[t]
        if not math.isfinite(v):
            last_bad = t
        elif v != 0.0:
            _accumulate_nb(limbs, bits[t], lowest, 1)
        if t >= n:
            old = x[t - n]
            if old != 0.0 and math.isfinite(old):
                _accumulate_nb(limbs, bits[t - n], lowest, -1)
        if (t & 0xFFFF) == 0xFFFF:
            _normalize_nb(limbs)  # keeps lazy carries small during the warm-up bars
        if t >= n - 1 and t - last_bad >= n:
            out[t] = _rounded_value_nb(limbs, work, lowest, scales)


@njit(cache=True)
def window_sum_nb(x, n):
    """Exact sum of ``x[t-n+1 : t+1]`` rounded once to float64, for ``t >= n - 1``.

    Each window's sum is computed exactly in fixed point (no rounding anywhere) and rounded to
    the nearest float64 once, so the result is the correctly rounded sum of the window (what
    ``math.fsum`` returns) and depends on the window's values alone: the same window gives the
    same bits whatever history precedes it, in amortised O(1) per window. ``nan`` where the
    window holds a non-finite value, and for ``t < n - 1``.

    The windows go by blocks of at least ``4 * n`` (see :func:`_window_block_nb`); each block
    picks the cheapest exact accumulator its own values allow, so the choice never changes a
    result.
    """
    return _window_means_nb(x, n, 1.0, False)


@njit(cache=True)
def sma_nb(x, n):
    """Simple moving average of the last ``n`` values (see :func:`sma`)."""
    return _window_means_nb(x, n, float(n), True)


@njit(cache=True)
def sma_into_nb(x, n, out):
    """:func:`sma_nb` written into ``out`` (as long as ``x``); returns ``out``."""
    _window_means_into_nb(x, n, float(n), True, out)
    return out


@njit(cache=True)
def _window_means_nb(x, n, divisor, keep_constant):
    """``window_sum_nb(x, n) / divisor``; but if ``keep_constant``, a window whose ``n`` values
    are equal (``==``: ``0.0`` and ``-0.0`` too, not ``nan``) gives its last value. All ``nan``
    if ``n < 1``."""
    out = np.empty(len(x))
    _window_means_into_nb(x, n, divisor, keep_constant, out)
    return out


@njit(cache=True)
def _window_means_into_nb(x, n, divisor, keep_constant, out):
    """:func:`_window_means_nb` written into ``out``."""
    size = len(x)
    if n < 1:
        out[:] = np.nan
        return
    out[:min(n - 1, size)] = np.nan
    block = max(1024, 4 * n)
    lows = np.empty(block, dtype=np.int64)
    highs = np.empty(block, dtype=np.int64)
    candidates = np.empty(block, dtype=np.bool_)
    for start in range(n - 1, size, block):
        stop = min(start + block, size)
        _window_block_nb(x[start - n + 1:stop], n, out[start - n + 1:stop], divisor,
                         keep_constant, lows, highs, candidates)


# How a block keeps its window sums (see _sum_mode_nb): with the sliding two-word or limb
# kernels above, in one int64 per window, or in two (the sums of the values' low 32 bits and
# of the rest).
_WIDE = 0
_ONE_WORD = 1
_SPLIT_WORD = 2

_MAGNITUDE_BITS = 0x7FFFFFFFFFFFFFFF
_INFINITY_BITS = 0x7FF0000000000000  # magnitudes from here on are inf or nan
_TWO32 = float(1 << 32)


@njit(cache=True)
def _window_block_nb(x, n, out, divisor, keep_constant, lows, highs, candidates):
    """:func:`_window_means_nb` for the windows ``x[i : i + n]`` of ``x``, into ``out[i + n - 1]``
    (``out[:n - 1]`` is left alone); ``lows``, ``highs`` and ``candidates`` are scratch space
    for ``len(x) - n + 1`` values.

    Unless the values' exponents are too far apart (``_WIDE``: the sliding kernels above),
    every value becomes an exact int64 multiple of ``2**lowest`` and each window's total is
    the first window's plus the running sum of entering minus leaving values: converting and
    rounding are vectorised loops, only the running sum is serial. Windows holding an inf or
    a nan, and windows of equal values (for ``keep_constant``), are then fixed up.
    """
    lowest, highest, nonfinite = _survey_nb(x)
    mode = _sum_mode_nb(lowest, highest, n)
    windows = len(x) - n + 1
    if mode == _WIDE:
        if highest - lowest + 53 + _bit_length64_nb(np.int64(n)) + 2 <= 122:
            _window_sum_two_word_nb(x, n, lowest, out)
        else:
            _window_sum_limbs_nb(x, n, lowest, highest, out)
    else:
        split = mode == _SPLIT_WORD
        _word_steps_nb(x, n, math.ldexp(1.0, -lowest), split, lows, highs)
        _running_totals_nb(lows[:windows], highs[:windows], split)
    found = _block_results_nb(x[n - 1:], out[n - 1:], math.ldexp(1.0, lowest), divisor,
                              keep_constant, mode, lows, highs, candidates)
    if nonfinite:
        _windows_with_nonfinite_nb(x, n, out, keep_constant)
    elif found:
        _constant_windows_nb(x, n, out, candidates[:windows])


@njit(cache=True)
def _survey_nb(x):
    """``(lowest, highest, nonfinite)`` of ``x`` (not empty): the lowest and highest exponent of
    :func:`_float_parts_nb` over the finite nonzero values (``(0, 0)`` if there are none), and
    whether ``x`` holds an inf or a nan."""
    bits = x.view(np.int64)
    smallest = np.int64(_INFINITY_BITS)
    largest = np.int64(0)
    top = np.int64(0)
    for i in range(len(bits)):
        magnitude = bits[i] & _MAGNITUDE_BITS  # ordered like the absolute values
        smallest = min(smallest, magnitude if magnitude != 0 else _INFINITY_BITS)
        largest = max(largest, magnitude if magnitude < _INFINITY_BITS else 0)
        top = max(top, magnitude)
    nonfinite = top >= _INFINITY_BITS
    if largest == 0:
        return 0, 0, nonfinite
    return max(smallest >> 52, 1) - 1075, max(largest >> 52, 1) - 1075, nonfinite


@njit(cache=True)
def _sum_mode_nb(lowest, highest, n):
    """The accumulator for windows of ``n`` values whose finite nonzero values have exponents
    (:func:`_float_parts_nb`) in ``[lowest, highest]``.

    A value is then ``v * 2**-lowest``, an integer below ``2**(highest - lowest + 53)``: an
    int64 if the spread ``highest - lowest`` is at most 10 and ``2**-lowest`` a normal float
    (else ``_WIDE``). ``_ONE_WORD`` if a window sum fits an int64 too (it is below
    ``n * 2**(spread + 53)``). Else ``_SPLIT_WORD`` if ``n < 2**21``: a window's sums of low
    words (below ``n * 2**32``) and of high words (below ``n * 2**(spread + 21)``) are then
    exact float64s, so ``high * 2**32 + low`` is rounded once, correctly.
    """
    spread = highest - lowest
    if lowest < -1022 or spread > 10:
        return _WIDE
    bits = _bit_length64_nb(np.int64(n))
    if spread + 53 + bits <= 63:
        return _ONE_WORD
    if bits <= 21:
        return _SPLIT_WORD
    return _WIDE


@njit(cache=True)
def _fixed_point_nb(v, up):
    """``v * up`` as an int64 (``up = 2**-lowest``; exact for the values of a block that is not
    ``_WIDE``, see :func:`_sum_mode_nb`), 0 for a non-finite ``v``."""
    return np.int64(v * up) if math.isfinite(v) else np.int64(0)


@njit(cache=True)
def _word_steps_nb(x, n, up, split, lows, highs):
    """The first window's total (entry 0), then each window's total minus the previous
    window's (entry ``i`` for ``x[i : i + n]``), of the values' :func:`_fixed_point_nb` in
    ``lows``; if ``split``, of their low 32 bits in ``lows`` and of the rest (``value >> 32``)
    in ``highs``."""
    windows = len(x) - n + 1
    low = np.int64(0)
    high = np.int64(0)
    for k in range(n):
        value = _fixed_point_nb(x[k], up)
        if split:
            low += value & _MASK32
            high += value >> 32
        else:
            low += value
    lows[0] = low
    highs[0] = high
    entering, leaving = x[n:], x[:windows - 1]
    step_lows, step_highs = lows[1:windows], highs[1:windows]
    for i in range(windows - 1):
        new = _fixed_point_nb(entering[i], up)
        old = _fixed_point_nb(leaving[i], up)
        if split:
            step_lows[i] = (new & _MASK32) - (old & _MASK32)
            step_highs[i] = (new >> 32) - (old >> 32)
        else:
            step_lows[i] = new - old


@njit(cache=True)
def _running_totals_nb(lows, highs, split):
    """Turn :func:`_word_steps_nb`'s steps into each window's totals, in place (the serial
    part: one integer add per window, two if ``split``)."""
    low = np.int64(0)
    high = np.int64(0)
    for i in range(len(lows)):
        low += lows[i]
        lows[i] = low
        if split:
            high += highs[i]
            highs[i] = high


@njit(cache=True)
def _block_results_nb(last, out, down, divisor, keep_constant, mode, lows, highs, candidates):
    """Set ``out[i]`` to window ``i``'s sum over ``divisor``; return whether any window is a
    candidate for :func:`_constant_windows_nb`, marked in ``candidates``: ``keep_constant``
    and a sum equal to ``divisor * last[i]`` (``last[i]`` the window's last value), as it is
    for ``n`` equal values, whose exact sum ``n * v`` rounds like the product.

    The sum is ``lows[i]`` (``_ONE_WORD``) or ``highs[i] * 2**32 + lows[i]`` (``_SPLIT_WORD``)
    times ``down = 2**lowest`` (exact: the result is a normal float, or overflows exactly when
    the true sum rounds to infinity), or ``out[i]`` itself (``_WIDE``, from the sliding
    kernels; windows holding a non-finite value are left to the caller).
    """
    found = False
    for i in range(len(out)):
        if mode == _ONE_WORD:
            total = float(lows[i]) * down
        elif mode == _SPLIT_WORD:
            total = (float(highs[i]) * _TWO32 + float(lows[i])) * down
        else:
            total = out[i]
        out[i] = total / divisor
        candidate = keep_constant and total == divisor * last[i]
        candidates[i] = candidate
        found |= candidate
    return found


@njit(cache=True)
def _constant_windows_nb(x, n, out, candidates):
    """``out[i + n - 1] = x[i + n - 1]`` for each candidate window ``x[i : i + n]`` whose values
    are all equal; each value of ``x`` is compared with its predecessor at most once."""
    scanned = 0  # x[k] has been compared with x[k - 1] for every 0 < k <= scanned
    last_change = 0  # the highest such k with x[k] != x[k - 1], or 0
    for i in range(len(candidates)):
        if candidates[i]:
            end = i + n - 1
            for k in range(max(scanned, i) + 1, end + 1):
                if x[k] != x[k - 1]:
                    last_change = k
            scanned = max(scanned, end)
            if last_change <= i:
                out[end] = x[end]


@njit(cache=True)
def _windows_with_nonfinite_nb(x, n, out, keep_constant):
    """For the windows ``x[i : i + n]`` of a block holding an inf or a nan: ``out[i + n - 1]``
    is ``nan`` if the window holds one, except that, if ``keep_constant``, a window of equal
    values (an inf repeated, say) gives that value."""
    run = 0
    last_nonfinite = -n
    previous = np.nan
    for k in range(len(x)):
        v = x[k]
        if v == previous:
            run += 1
        else:
            run = 1 if v == v else 0
        previous = v
        if not math.isfinite(v):
            last_nonfinite = k
        if k >= n - 1:
            if keep_constant and run >= n:
                out[k] = v
            elif k - last_nonfinite < n:
                out[k] = np.nan


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
    kept exactly while the window slides), so the value at ``t`` depends only on
    ``values[t-n+1 : t+1]`` bit for bit; a constant window gives exactly its value.
    """
    x, n = _as_series("values", values), _as_window("n", n)
    # the output is allocated by numpy (which asks for transparent huge pages on large
    # arrays): a bars-long array allocated inside Numba pays a page fault per 4 KiB on first
    # touch, which on a virtual machine costs more than computing the averages
    return _memoized("sma", (values,), (x,), (n,), lambda: sma_into_nb(x, n, np.empty(len(x))))


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
        middle = sma_nb(x, n)
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
