"""Exact moving sums: each window's sum computed exactly and rounded once (pure core).

The value of a window is a function of that window's values alone, bit for bit, whatever
history precedes it: the paper-trading runner computes a strategy on a short window of recent
bars and must get the bits that the backtest got on the full history. A floating-point running
sum cannot give that (its rounding errors depend on every earlier bar), so the sums are kept in
integers, without any rounding, and each window's total is rounded to float64 once: the result
is the correctly rounded sum of the window, what :func:`math.fsum` returns.

The windows go by blocks of ``max(1024, 4 * n)``; each block takes one of three exact
accumulators, chosen from its own values' binary exponents. The choice never changes a result,
only its speed (``python -m bench.window_sums``; a million 1-minute bars on the development
machine):

* **one word**, for prices: when the block's finite nonzero values span at most 11 binary
  exponents (a factor of 2,048 between the smallest and the largest), each value is an integer
  multiple of ``2**lowest`` below ``2**63``; if a window's sum fits an int64 too, the window
  sums are running int64 sums. About 3.5 ms.
* **two words**, for prices in long windows (from ``2**(10 - spread)`` values, ``spread`` the
  number of exponents beyond the first; fewer than ``2**21``): two running sums, of the values'
  low 32 bits and of the rest, each an exact float64, so that adding them rounds once. About
  4.5 ms; one word is kept beside it because it is some 25 % faster where both apply, and the
  two share their functions, so one word costs no measurable compilation.
* **limbs**, for anything else (values of both signs near zero such as returns, subnormals,
  windows of ``2**21`` values or more): the running sum is kept in base-``2**32`` limbs wide
  enough for any float64 values and rounded once per window. About 40 ms (some 10 times the
  fixed point on prices). Its kernel is compiled the first time a block needs it (about 1.3 s),
  so that prices never pay for it.

A fourth accumulator, two int64 words sliding with the window for values up to some 60 binary
exponents apart, was dropped: twice as fast as the limbs on returns, three times slower than
the fixed point on prices, and 1.7 s of first compilation for data that no shipped strategy
gives a moving average.

Entry points: :func:`window_sums` and :func:`window_means` (plain Python: they allocate the
output and the scratch space, run :func:`fixed_point_sums_nb` over all the blocks, then
:func:`limb_sums_nb` over those it left). The code is arranged for a short first compilation
(``sma`` about 2.6 s, against 10.6 s for the former single kernel with four accumulators): the
passes that the compiler vectorises only as loops of their own are separate functions, the rest
is written out in the kernel itself (Numba's own inlining costs compilation time too).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# the accumulators, as recorded per block (see fixed_point_sums_nb)
_LIMBS = 0
_ONE_WORD = 1
_TWO_WORDS = 2

_MASK32 = 0xFFFFFFFF
_MAGNITUDE_BITS = 0x7FFFFFFFFFFFFFFF
_INFINITY_BITS = 0x7FF0000000000000  # magnitudes from here on are inf or nan
_TWO32 = float(1 << 32)
_HEADROOM = 40  # bits above the values' highest bit: a window sum of n < 2**40 values fits
#: Limbs for any finite float64 values (exponents -1074 .. 971, 53 bits each, plus headroom).
MAX_LIMBS = (971 + 1074 + 53 + _HEADROOM) // 32 + 2

_KERNEL = {"cache": True, "error_model": "numpy", "_nrt": False, "nogil": True}
_INNER = {**_KERNEL, "no_cpython_wrapper": True, "no_cfunc_wrapper": True}
_INLINED = {**_INNER, "inline": "always"}


def window_sums(x: np.ndarray, n: int) -> np.ndarray:
    """The correctly rounded sum of ``x[t-n+1 : t+1]`` at each ``t`` (``math.fsum`` of it).

    ``x`` is a contiguous float64 array. ``nan`` for ``t < n - 1`` (everywhere if ``n < 1``)
    and for a window holding an inf or a nan; a zero sum is ``+0.0``; a sum beyond the float64
    range rounds to ``inf``. The value at ``t`` depends on the window's values only.
    """
    return _window_sums(x, n, 1.0, False)[0]


def window_means(x: np.ndarray, n: int) -> np.ndarray:
    """The mean of ``x[t-n+1 : t+1]`` at each ``t``: its :func:`window_sums` value over ``n``,
    except that a window of ``n`` equal values (``==``: ``0.0`` and ``-0.0`` too) gives its last
    value, exactly (``0.1 * 3 / 3`` is not ``0.1``), an inf included."""
    return _window_sums(x, n, float(n), True)[0]


def block_accumulators(x: np.ndarray, n: int) -> np.ndarray:
    """The accumulator (``_ONE_WORD``, ``_TWO_WORDS`` or ``_LIMBS``) that each block of the
    windows of ``x`` took in :func:`window_sums`."""
    return _window_sums(x, n, 1.0, False)[1][:, 0]


def _window_sums(
    x: np.ndarray, n: int, divisor: float, keep_constant: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(out, blocks)``: see :func:`fixed_point_sums_nb`."""
    # the output is allocated by numpy (which asks for transparent huge pages on large arrays):
    # a bars-long array allocated inside Numba pays a page fault per 4 KiB on first touch,
    # which on a virtual machine costs more than computing the sums
    out = np.empty(len(x))
    if n < 1:
        out[:] = np.nan
        return out, np.empty((0, 3), np.int64)
    out[: n - 1] = np.nan
    block = max(1024, 4 * n)
    blocks = np.empty((-(-max(len(x) - n + 1, 0) // block), 3), np.int64)
    bits = x.view(np.int64)  # the values' IEEE-754 bits
    candidates = np.empty(block, np.bool_)
    fixed_point_sums_nb(
        x,
        bits,
        n,
        divisor,
        keep_constant,
        out,
        np.empty(block, np.int64),
        np.empty(block, np.int64),
        candidates,
        blocks,
    )
    if (blocks[:, 0] == _LIMBS).any():
        limb_sums_nb(
            x,
            bits,
            n,
            divisor,
            keep_constant,
            out,
            blocks,
            block,
            np.empty(MAX_LIMBS, np.int64),
            np.empty(MAX_LIMBS, np.int64),
        )
    return out, blocks


# --------------------------------------------------------------------------- fixed point


@njit(**_KERNEL)
def fixed_point_sums_nb(x, bits, n, divisor, keep_constant, out, lows, highs, candidates, blocks):
    """``out[t]``: the sum of the window ``x[t-n+1 : t+1]`` over ``divisor``, ``nan`` if it holds
    an inf or a nan; but if ``keep_constant``, a window of ``n`` equal values gives its last
    value. For the blocks that fixed point can take (``n >= 1``).

    ``bits`` is ``x`` viewed as int64. Block ``b`` is the ``len(lows)`` windows ending at
    ``n - 1 + b * len(lows)`` on (fewer at the end), ``len(blocks)`` of them; it gets
    ``blocks[b] = (accumulator, lowest, highest)``, the exponents of :func:`_survey_nb`, and its
    ``out[t]`` unless the accumulator is ``_LIMBS``. ``lows``, ``highs`` (int64) and
    ``candidates`` (bool) are scratch space as long as a block.
    """
    block = len(lows)
    n_bits = math.frexp(float(n))[1]  # n < 2**n_bits
    for b in range(len(blocks)):
        start = n - 1 + b * block
        first, stop = start - n + 1, min(start + block, len(x))
        windows = stop - start
        values, results = x[first:stop], out[first:stop]
        lowest, highest, nonfinite = _survey_nb(bits[first:stop])
        # each value is v * 2**lowest with an integer v below 2**(spread + 53)
        spread = highest - lowest
        if lowest < -1022 or spread > 10:  # v is no int64, or 2**-lowest no normal float
            accumulator = _LIMBS
        elif spread + 53 + n_bits <= 63:  # and so is a window's sum
            accumulator = _ONE_WORD
        elif n_bits <= 21:  # the sums of v's low 32 bits and of the rest stay below 2**53
            accumulator = _TWO_WORDS
        else:
            accumulator = _LIMBS
        blocks[b, 0], blocks[b, 1], blocks[b, 2] = accumulator, lowest, highest
        if accumulator == _LIMBS:
            continue
        split = accumulator == _TWO_WORDS
        _steps_nb(values, n, math.ldexp(1.0, -lowest), split, lows, highs)
        # the running totals: the serial part, one integer add per window (two if split)
        low = np.int64(0)
        high = np.int64(0)
        for i in range(windows):
            low += lows[i]
            lows[i] = low
            if split:
                high += highs[i]
                highs[i] = high
        found = _results_nb(
            values[n - 1 :],
            results[n - 1 :],
            math.ldexp(1.0, lowest),
            divisor,
            keep_constant,
            split,
            lows,
            highs,
            candidates,
        )
        if not (nonfinite or found):
            continue
        # windows holding an inf or a nan (all of them are looked at if there is one), and
        # candidate windows of equal values; each value is examined once at most, so that a
        # long run of equal values costs one pass. values[k] has been examined for every
        # k <= scanned; last_change is the highest examined k > 0 with values[k] !=
        # values[k - 1] (nan != nan), or 0; last_bad the highest with an inf or a nan, or -1
        scanned = 0
        last_change = 0
        last_bad = -1 if math.isfinite(values[0]) else 0
        for i in range(windows):
            if nonfinite or candidates[i]:
                end = i + n - 1
                for k in range(max(scanned + 1, i), end + 1):
                    if values[k] != values[k - 1]:
                        last_change = k
                    if nonfinite and not math.isfinite(values[k]):
                        last_bad = k
                scanned = end
                if keep_constant and last_change <= i:
                    results[end] = values[end]
                elif last_bad >= i:
                    results[end] = np.nan


@njit(**_INLINED)
def _survey_nb(bits):
    """``(lowest, highest, nonfinite)`` of the float64 values with IEEE-754 ``bits`` (not
    empty): the lowest and highest exponent ``e`` of the finite nonzero values, each
    ``m * 2**e`` with an integer ``m`` below ``2**53`` (``(0, 0)`` if there are none), and
    whether there is an inf or a nan."""
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


@njit(**_INLINED)
def _word_nb(v, up):
    """``v * up`` as an int64 (exact in a fixed-point block), 0 for an inf or a nan."""
    return np.int64(v * up) if math.isfinite(v) else np.int64(0)


@njit(**_INNER)
def _steps_nb(x, n, up, split, lows, highs):
    """The first window's total (entry 0), then each window's total minus the previous
    window's (entry ``i`` for ``x[i : i + n]``), of the values' :func:`_word_nb` in ``lows``;
    if ``split``, of their low 32 bits in ``lows`` and of the rest (``word >> 32``) in
    ``highs``. A loop the compiler vectorises."""
    windows = len(x) - n + 1
    low = np.int64(0)
    high = np.int64(0)
    for k in range(n):
        word = _word_nb(x[k], up)
        low += (word & _MASK32) if split else word
        high += word >> 32
    lows[0] = low
    highs[0] = high
    entering, leaving = x[n:], x[: windows - 1]
    step_lows, step_highs = lows[1:windows], highs[1:windows]
    for i in range(windows - 1):
        new = _word_nb(entering[i], up)
        old = _word_nb(leaving[i], up)
        if split:
            step_lows[i] = (new & _MASK32) - (old & _MASK32)
            step_highs[i] = (new >> 32) - (old >> 32)
        else:
            step_lows[i] = new - old


@njit(**_INNER)
def _results_nb(last, out, down, divisor, keep_constant, split, lows, highs, candidates):
    """Set ``out[i]`` to window ``i``'s sum over ``divisor``; return whether any window is a
    candidate window of equal values, marked in ``candidates``: ``keep_constant`` and a sum
    equal to ``divisor * last[i]`` (``last[i]`` the window's last value), as it is for ``n``
    equal values, whose exact sum ``n * v`` rounds like the product. A loop the compiler
    vectorises.

    The sum is ``lows[i]``, or ``highs[i] * 2**32 + lows[i]`` if ``split``, times
    ``down = 2**lowest`` (exact: the result is a normal float, or overflows exactly when the
    true sum rounds to infinity).
    """
    found = False
    for i in range(len(out)):
        if split:
            total = (float(highs[i]) * _TWO32 + float(lows[i])) * down
        else:
            total = float(lows[i]) * down
        out[i] = total / divisor
        candidate = keep_constant and total == divisor * last[i]
        candidates[i] = candidate
        found |= candidate
    return found


# --------------------------------------------------------------------------- limbs


@njit(**_KERNEL)
def limb_sums_nb(x, bits, n, divisor, keep_constant, out, blocks, block, limbs, work):
    """:func:`fixed_point_sums_nb`'s ``out[t]`` for the blocks it left (``_LIMBS`` in
    ``blocks``, each of ``block`` windows), kept exactly in base-``2**32`` limbs while the
    window slides (windows of equal values and windows holding an inf or a nan are told by the
    same rules, tracked as the window slides). ``bits`` is ``x`` viewed as int64; ``limbs`` and
    ``work`` are scratch space of ``MAX_LIMBS`` int64."""
    for b in range(len(blocks)):
        if blocks[b, 0] != _LIMBS:
            continue
        lowest, highest = blocks[b, 1], blocks[b, 2]
        start = n - 1 + b * block
        first, stop = start - n + 1, min(start + block, len(x))
        # the values' bits, plus headroom for the sum of n < 2**40 values; a value touches
        # limbs p..p+2, p <= spread // 32
        size = (highest - lowest + 53 + _HEADROOM) // 32 + 2
        limbs[:size] = 0
        run = 0  # equal values ending at t
        last_bad = first - n  # the last inf or nan
        previous = np.nan
        for t in range(first, stop):
            v = x[t]
            if v != 0.0 and math.isfinite(v):
                _limb_add_nb(limbs, bits[t], lowest, 1)
            if t > start:
                old = x[t - n]
                if old != 0.0 and math.isfinite(old):
                    _limb_add_nb(limbs, bits[t - n], lowest, -1)
            if (t & 0xFFFF) == 0xFFFF:
                _normalize_nb(limbs, size)  # keeps lazy carries small in a long first window
            if not math.isfinite(v):
                last_bad = t
            if v == previous:
                run += 1
            else:
                run = 1 if v == v else 0
            previous = v
            if t < start:
                continue
            if keep_constant and run >= n:
                out[t] = v
            elif t - last_bad < n:
                out[t] = np.nan
            else:
                out[t] = _limbs_rounded_nb(limbs, work, size, lowest) / divisor


@njit(**_INLINED)
def _limb_add_nb(limbs, bits, lowest, sign):
    """Add ``sign *`` the float64 with IEEE-754 ``bits`` (finite, nonzero) exactly to ``limbs``
    (base ``2**32``, bit 0 worth ``2**lowest``). Carries are left lazy: each call moves a limb
    by less than ``2**34``."""
    biased = (bits >> 52) & 0x7FF
    mantissa = bits & 0xFFFFFFFFFFFFF
    if biased != 0:
        mantissa |= 0x10000000000000
    else:
        biased = 1  # subnormal
    if bits < 0:
        sign = -sign
    shift = biased - 1075 - lowest
    p = shift >> 5
    r = shift & 31
    low = (mantissa & _MASK32) << r
    high = (mantissa >> 32) << r
    limbs[p] += sign * (low & _MASK32)
    limbs[p + 1] += sign * ((low >> 32) + (high & _MASK32))
    limbs[p + 2] += sign * (high >> 32)


@njit(**_INLINED)
def _normalize_nb(limbs, size):
    """Propagate carries in place so that every limb below ``size - 1`` is in ``[0, 2**32)``."""
    carry = np.int64(0)
    for k in range(size - 1):
        v = limbs[k] + carry
        limbs[k] = v & _MASK32
        carry = v >> 32
    limbs[size - 1] += carry


@njit(**_INNER)
def _limbs_rounded_nb(limbs, work, size, lowest):
    """The exact number held in ``limbs[:size]``, rounded once to the nearest float64 (ties to
    even). Normalises ``limbs`` in place (the value is unchanged); ``work`` is scratch space."""
    _normalize_nb(limbs, size)
    digits = limbs
    negative = limbs[size - 1] < 0
    if negative:  # the magnitude, normalised the same way
        for k in range(size):
            work[k] = -limbs[k]
        _normalize_nb(work, size)
        digits = work
    h = size - 1
    while h >= 0 and digits[h] == 0:
        h -= 1
    if h < 0:
        return 0.0
    top = digits[h]  # below 2**32: the limbs have 40 bits of headroom over any window sum
    bits = math.frexp(float(top))[1]
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
    # exact: a power of two (and a result below 2**-1022 has at most 52 bits, all kept in acc)
    magnitude = math.ldexp(float(acc), 32 * h + bits - 62 + lowest)
    return -magnitude if negative else magnitude
