"""Resampling kernel: right-aligned aggregation of bars into coarser buckets (pure core).

Bucket rule (docs/architecture.md §2, close-time labels): with target length ``T`` and grid offset ``D``,
the bucket labelled ``L`` (``L ≡ D mod T``) holds the source bars whose close time ``ts``
satisfies ``L - T < ts <= L``, i.e. the trades with ``L - T <= t < L``.

Zero-volume rule (the exchanges' own rule, see ``data/sample/PROVENANCE.md``): open, high, low and
close are taken from the bars **with** volume only; a bucket whose bars all have zero volume
becomes a flat zero-volume bar at the close of its last bar (on Binance a bar without trades is
flat at the previous close). Volume is the sum over all bars.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def bucket_label_nb(ts, target_ms, offset_ms):
    """Close-time label of the bucket holding the bar that closes at ``ts``."""
    shifted = ts - offset_ms
    quotient = shifted // target_ms
    if quotient * target_ms != shifted:
        quotient += 1
    return quotient * target_ms + offset_ms


@njit(cache=True)
def resample_nb(
    ts,
    open_,
    high,
    low,
    close,
    volume,
    target_ms,
    offset_ms,
    out_ts,
    out_open,
    out_high,
    out_low,
    out_close,
    out_volume,
    out_count,
):
    """Aggregate bars into buckets of ``target_ms``; return the number of buckets written.

    Parameters
    ----------
    ts : ndarray of int64
        Source close times, strictly increasing.
    open_, high, low, close, volume : ndarray of float64
        Source values.
    target_ms, offset_ms : int
        Bucket length and grid offset (labels are ``offset_ms`` modulo ``target_ms``).
    out_ts, out_open, out_high, out_low, out_close, out_volume : ndarray
        Output buffers with room for ``len(ts)`` buckets (int64 for ``out_ts``).
    out_count : ndarray of int64
        Per bucket, the number of source bars it holds.

    Returns
    -------
    int
        Number of buckets written (only buckets holding at least one bar exist).
    """
    n = len(ts)
    k = -1
    current = np.int64(0)
    traded = 0
    for i in range(n):
        label = bucket_label_nb(ts[i], target_ms, offset_ms)
        if k < 0 or label != current:
            k += 1
            current = label
            traded = 0
            out_ts[k] = label
            out_volume[k] = 0.0
            out_count[k] = 0
        out_count[k] += 1
        out_volume[k] += volume[i]
        if volume[i] > 0.0:
            if traded == 0:
                out_open[k] = open_[i]
                out_high[k] = high[i]
                out_low[k] = low[i]
            else:
                if high[i] > out_high[k]:
                    out_high[k] = high[i]
                if low[i] < out_low[k]:
                    out_low[k] = low[i]
            out_close[k] = close[i]
            traded += 1
        elif traded == 0:  # no trade in the bucket so far: flat at this bar's close
            out_open[k] = close[i]
            out_high[k] = close[i]
            out_low[k] = close[i]
            out_close[k] = close[i]
    return k + 1
