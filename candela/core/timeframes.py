"""Time frames: names such as ``"5m"`` and their length in milliseconds.

All timestamps inside Candela are int64 milliseconds UTC, and a bar's timestamp is its
**close** time (docs/architecture.md §2).
"""

from __future__ import annotations

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

SUPPORTED_TIMEFRAMES: tuple[str, ...] = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
)
"""Time frames Candela stores and resamples to (the fixed-length ones ccxt exchanges share)."""


def timeframe_to_ms(timeframe: str) -> int:
    """Return the length of ``timeframe`` in milliseconds.

    Parameters
    ----------
    timeframe : str
        One of :data:`SUPPORTED_TIMEFRAMES`, e.g. ``"1m"``, ``"4h"``, ``"1d"``.

    Raises
    ------
    ValueError
        If the time frame is unknown; the message lists the supported ones.
    """
    if not isinstance(timeframe, str) or timeframe not in SUPPORTED_TIMEFRAMES:
        raise ValueError(
            f"unknown timeframe {timeframe!r}: use one of {', '.join(SUPPORTED_TIMEFRAMES)}"
        )
    return int(timeframe[:-1]) * _UNIT_MS[timeframe[-1]]


def ms_to_timeframe(milliseconds: int) -> str:
    """Return the name of the supported time frame lasting ``milliseconds``.

    Raises
    ------
    ValueError
        If no supported time frame has that length.
    """
    for name in SUPPORTED_TIMEFRAMES:
        if timeframe_to_ms(name) == milliseconds:
            return name
    raise ValueError(f"no supported timeframe lasts {milliseconds} ms")
