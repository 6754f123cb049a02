"""Bars that count, in each process, how many times they were unpickled (a process receives
the bars by unpickling them): how a test sees how often the bars reached a Dask worker."""

from __future__ import annotations

from research.types import Bars

LOADS = 0


def _rebuild(ts, open_, high, low, close, volume, timeframe_ms):
    global LOADS
    LOADS += 1
    return CountedBars(ts, open_, high, low, close, volume, timeframe_ms)


class CountedBars(Bars):
    def __reduce__(self):
        return (
            _rebuild,
            (self.ts, self.open, self.high, self.low, self.close, self.volume, self.timeframe_ms),
        )

    @classmethod
    def of(cls, bars: Bars) -> CountedBars:
        return cls(
            bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, bars.timeframe_ms
        )


def loads() -> int:
    return LOADS
