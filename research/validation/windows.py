"""Walk-forward windows: where each training window and each test window begins and ends.

Rolling windows keep the training length fixed and slide it; anchored windows all start at the
first bar and grow. Test windows follow one another without gap or overlap, each right after
its training window, so the test windows together cover every bar from the end of the first
training window to the last bar (the last test window may be shorter than the others).

Lengths are given in bars (an ``int``) or as calendar time (a pandas offset string such as
``"90D"``, ``"12h"``, ``"4W"``, or a ``Timedelta``). In time, a window holds the bars whose
close time falls in ``[t, t + length)``; on gappy data it then holds fewer bars than the
nominal count, but the same span of the calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Length = int | str | Any  # bars, an offset string or a Timedelta


@dataclass(frozen=True)
class Window:
    """One walk-forward step: bars ``[train_start, train_stop)`` to choose the parameters,
    ``[test_start, test_stop)`` to trade them (``test_start == train_stop``)."""

    index: int
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


def walk_forward_windows(
    ts: np.ndarray,
    train: Length,
    test: Length | None = None,
    *,
    n_windows: int | None = None,
    anchored: bool = False,
) -> list[Window]:
    """The windows of a walk-forward analysis over bars closing at ``ts``.

    Parameters
    ----------
    ts : ndarray of int64
        Bar close times, ms UTC, increasing.
    train : int or str or Timedelta
        Training length (for anchored windows: the first training window's length).
    test : int or str or Timedelta, optional
        Test length; or give ``n_windows`` instead to split what follows the first training
        window into that many test windows of equal length (in the unit of ``train``).
    n_windows : int, optional
    anchored : bool
        Training windows all start at the first bar (default: rolling).

    Raises
    ------
    ValueError
        If a length is not positive, both or neither of ``test`` and ``n_windows`` are given,
        or the first training window leaves no bar to test on (the message gives the bars
        and the span of the data).
    """
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    if (test is None) == (n_windows is None):
        raise ValueError(
            "give the test window's length (test=...) or the number of windows "
            "(n_windows=...), not both"
        )
    in_time = not _is_bars(train)
    if test is not None and _is_bars(test) == in_time:
        raise ValueError(
            "train and test must both be numbers of bars or both durations "
            f"(got train={train!r}, test={test!r})"
        )
    if in_time:
        train_ms = _duration_ms(train, "train")
        first_test = int(np.searchsorted(ts, ts[0] + train_ms, side="left"))
    else:
        train_ms = 0
        first_test = _positive_bars(train, "train")
    if first_test >= n:
        span = _describe_span(ts)
        raise ValueError(
            f"the training window ({train!r}) covers all {n} bars ({span}): no "
            "bar is left to test on; use a shorter train window or more bars"
        )
    if n_windows is not None:
        if not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
            raise ValueError(f"n_windows must be a positive number, got {n_windows!r}")
        if in_time:
            width = (int(ts[-1]) + 1 - int(ts[first_test])) / n_windows
            starts = [
                int(np.searchsorted(ts, ts[first_test] + round(k * width), side="left"))
                for k in range(n_windows)
            ]
        else:
            if n - first_test < n_windows:
                raise ValueError(
                    f"{n - first_test} bars after the training window cannot make "
                    f"{n_windows} test windows: use fewer windows or more bars"
                )
            starts = [first_test + (k * (n - first_test)) // n_windows for k in range(n_windows)]
    elif in_time:
        test_ms = _duration_ms(test, "test")
        starts = []
        t = int(ts[first_test])
        while True:
            start = int(np.searchsorted(ts, t, side="left"))
            if start >= n:
                break
            starts.append(start)
            t += test_ms
    else:
        step = _positive_bars(test, "test")
        starts = list(range(first_test, n, step))
    stops = starts[1:] + [n]
    windows = []
    for start, stop in zip(starts, stops, strict=True):
        if stop <= start:
            continue  # a span of the calendar without any bar
        if anchored:
            train_start = 0
        elif in_time:
            train_start = int(np.searchsorted(ts, ts[start] - train_ms, side="left"))
        else:
            train_start = start - first_test
        windows.append(Window(len(windows), train_start, start, start, stop))
    return windows


def _is_bars(length: Any) -> bool:
    return isinstance(length, (int, np.integer)) and not isinstance(length, bool)


def _positive_bars(length: Any, name: str) -> int:
    if int(length) < 1:
        raise ValueError(f"{name} must be a positive number of bars, got {length}")
    return int(length)


def _duration_ms(length: Any, name: str) -> int:
    import pandas as pd

    try:
        value = pd.Timedelta(length)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name}={length!r} is neither a number of bars nor a duration such "
            "as '90D', '12h' or '4W'"
        ) from None
    ms = int(value / pd.Timedelta(milliseconds=1))
    if ms <= 0:
        raise ValueError(f"{name} must be a positive duration, got {length!r}")
    return ms


def _describe_span(ts: np.ndarray) -> str:
    import pandas as pd

    first, last = (pd.Timestamp(int(v), unit="ms", tz="UTC") for v in (ts[0], ts[-1]))
    return f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
