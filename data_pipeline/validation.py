"""Candle validation at the edge (docs/architecture.md §2): bad candles never reach a strategy.

One vectorized pass (numpy, no Python loop over rows) decides for every candle whether it is
accepted and, if not, why. The reasons are stable strings that importers, the pipeline and tests
rely on; they are checked in this order and the **first** one that applies is the row's reason:

========================  ==================================================================
reason                    rejected when
========================  ==================================================================
``nan``                   any of open, high, low, close, volume is NaN or infinite
``non_positive_price``    any of open, high, low, close is ``<= 0``
``high_below_open_close`` ``high < max(open, close)``
``low_above_open_close``  ``low > min(open, close)``
``high_below_low``        ``high < low``
``negative_volume``       ``volume < 0`` (zero volume is valid: a minute without trades)
``misaligned_ts``         ``ts % timeframe_ms != 0`` (close times sit on the timeframe grid)
``duplicate_ts``          ``ts`` equals the ``ts`` of an earlier accepted row
``out_of_order_ts``       ``ts`` is below an earlier accepted row's ``ts``, or ``ts <= after_ts``
========================  ==================================================================

The ordering checks are relative to *accepted* rows only: a rejected row never blocks a later
one. The accepted rows therefore always have strictly increasing ``ts`` greater than
``after_ts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REASONS: tuple[str, ...] = (
    "nan",
    "non_positive_price",
    "high_below_open_close",
    "low_above_open_close",
    "high_below_low",
    "negative_volume",
    "misaligned_ts",
    "duplicate_ts",
    "out_of_order_ts",
)
"""Every rejection reason, in the order they are checked (first match wins)."""

_ACCEPTED = len(REASONS)  # code for "no reason": larger than every reason's index


@dataclass(frozen=True)
class CandleCheck:
    """The verdict of :func:`validate_candles` on a batch of candles.

    Attributes
    ----------
    valid : ndarray of bool
        One entry per input row; ``True`` means the row is accepted.
    rejected : list of (int, str)
        ``(row index, reason)`` for every rejected row, in row order.
    counts : dict of str to int
        Number of rejected rows per reason; only reasons that occurred are present.
    """

    valid: np.ndarray
    rejected: list[tuple[int, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        """Number of accepted rows."""
        return int(np.count_nonzero(self.valid))

    @property
    def rejected_total(self) -> int:
        """Number of rejected rows."""
        return len(self.rejected)


def _as_float_column(name: str, values, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of numbers, got {array.ndim} dimensions")
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} values but ts has {n}: all columns must align")
    if array.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} must hold numbers, got dtype {array.dtype}; parse the column first"
        )
    return array.astype(np.float64, copy=False)


def validate_candles(
    ts,
    open,  # noqa: A002 - the column's name
    high,
    low,
    close,
    volume,
    timeframe_ms: int,
    *,
    after_ts: int | None = None,
) -> CandleCheck:
    """Decide for every candle whether it is accepted, and why not if it is rejected.

    Parameters
    ----------
    ts : array_like of int
        Bar **close** times, int64 milliseconds UTC, in the order received.
    open, high, low, close, volume : array_like of float
        Prices and base-asset volume, aligned with ``ts``.
    timeframe_ms : int
        Bar length in milliseconds; close times must be multiples of it.
    after_ts : int, optional
        Close time of the newest bar already stored: rows with ``ts <= after_ts`` are rejected
        as ``out_of_order_ts``. ``None`` means no lower bound.

    Returns
    -------
    CandleCheck
        The accepted mask, every rejected row with its reason (see the module table; the first
        applicable reason wins) and the count per reason.

    Raises
    ------
    TypeError
        If ``ts`` is not integer or a price column is not numeric.
    ValueError
        If the columns do not align or ``timeframe_ms`` is not positive.
    """
    ts_array = np.asarray(ts)
    if ts_array.ndim != 1:
        raise ValueError(f"ts must be a 1-D array of close times, got {ts_array.ndim} dimensions")
    if len(ts_array) and ts_array.dtype.kind not in "iu":
        raise TypeError(
            f"ts must be integer milliseconds UTC (close times), got dtype {ts_array.dtype}; "
            "convert with np.asarray(ts, dtype=np.int64)"
        )
    ts_array = ts_array.astype(np.int64, copy=False)
    if (
        isinstance(timeframe_ms, bool)
        or not isinstance(timeframe_ms, (int, np.integer))
        or timeframe_ms <= 0
    ):
        raise ValueError(
            f"timeframe_ms must be a positive integer of milliseconds, got {timeframe_ms!r}"
        )
    n = len(ts_array)
    o = _as_float_column("open", open, n)
    h = _as_float_column("high", high, n)
    lo = _as_float_column("low", low, n)
    c = _as_float_column("close", close, n)
    v = _as_float_column("volume", volume, n)

    # Row-local checks, evaluated in reverse so the first applicable reason is written last.
    code = np.full(n, _ACCEPTED, dtype=np.int16)
    with np.errstate(invalid="ignore"):
        local_checks = (
            ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)),
            (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
            h < np.maximum(o, c),
            lo > np.minimum(o, c),
            h < lo,
            v < 0,
            ts_array % np.int64(timeframe_ms) != 0,
        )
    for index in range(len(local_checks) - 1, -1, -1):
        code[local_checks[index]] = index

    # Ordering checks against accepted rows. The running maximum of the ts of rows that passed
    # the local checks equals the running maximum of the *accepted* ts (a candidate rejected
    # for ordering never exceeds that maximum), so one accumulate decides every row.
    candidate = code == _ACCEPTED
    floor = np.iinfo(np.int64).min if after_ts is None else int(after_ts)
    candidate_ts = np.where(candidate, ts_array, np.int64(floor))
    previous_max = np.empty(n, dtype=np.int64)
    if n:
        previous_max[0] = floor
        np.maximum.accumulate(candidate_ts[:-1], out=previous_max[1:])
        np.maximum(previous_max, floor, out=previous_max)
    out_of_place = candidate & (ts_array <= previous_max)
    accepted = candidate & ~out_of_place
    accepted_ts = ts_array[accepted]  # strictly increasing by construction
    position = np.searchsorted(accepted_ts, ts_array[out_of_place])
    found = position < len(accepted_ts)
    is_duplicate = np.zeros(len(position), dtype=bool)
    is_duplicate[found] = accepted_ts[position[found]] == ts_array[out_of_place][found]
    out_rows = np.flatnonzero(out_of_place)
    code[out_rows[is_duplicate]] = REASONS.index("duplicate_ts")
    code[out_rows[~is_duplicate]] = REASONS.index("out_of_order_ts")

    rejected_rows = np.flatnonzero(code != _ACCEPTED)
    rejected_codes = code[rejected_rows]
    rejected = [(int(row), REASONS[reason]) for row, reason in zip(rejected_rows, rejected_codes)]
    tally = np.bincount(rejected_codes, minlength=len(REASONS)) if len(rejected_codes) else ()
    counts = {REASONS[i]: int(count) for i, count in enumerate(tally) if count}
    return CandleCheck(valid=code == _ACCEPTED, rejected=rejected, counts=counts)
