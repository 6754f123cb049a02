"""Indicator and strategy-target speed on the shared synthetic 1,000,000-bar series.

Run with ``.venv/bin/python -m bench.indicators``. Prints the best of five runs (after a JIT
warm-up) of each Numba indicator next to its pandas formulation, and of every shipped
strategy's ``target`` with default parameters. The SMA keeps an exact (fixed-point) moving sum,
so its cost does not grow with the window and its value is the correctly rounded window mean
(see :mod:`research.indicators`); pandas' floating-point running sum drifts with the history,
which would break the runner's warm-up parity.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.synthetic import synthetic_bars
from research import indicators as ind


def best_ms(function, repeats: int = 5) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    from strategies.registry import all_specs

    bars = synthetic_bars()
    close = bars.close
    series = pd.Series(close)
    print(f"{len(bars):,} bars; best of 5 after JIT warm-up\n")
    print(f"{'indicator':<22}{'candela ms':>12}{'pandas ms':>12}{'ratio':>8}")
    rows = [
        ("sma 10", lambda: ind.sma(close, 10), lambda: series.rolling(10).mean()),
        ("sma 50", lambda: ind.sma(close, 50), lambda: series.rolling(50).mean()),
        ("sma 216", lambda: ind.sma(close, 216), lambda: series.rolling(216).mean()),
        ("ema 26", lambda: ind.ema(close, 26), lambda: series.ewm(span=26, adjust=False).mean()),
        (
            "rolling std 20",
            lambda: ind.rolling_std(close, 20),
            lambda: series.rolling(20).std(ddof=0),
        ),
        (
            "donchian upper 20",
            lambda: ind.donchian(bars.high, bars.low, 20),
            lambda: pd.Series(bars.high).rolling(20).max(),
        ),
        ("rsi 14", lambda: ind.rsi(close, 14), None),
        ("atr 14", lambda: ind.atr(bars.high, bars.low, close, 14), None),
    ]
    for name, ours, theirs in rows:
        a = best_ms(ours)
        b = best_ms(theirs) if theirs is not None else float("nan")
        print(f"{name:<22}{a:>12.1f}{b:>12.1f}{b / a:>8.2f}")
    print(f"\n{'strategy target':<22}{'ms':>12}")
    for name, spec in all_specs().items():
        params = spec.make_params()
        print(f"{name:<22}{best_ms(lambda: spec.target(bars, params)):>12.1f}")
    # the runner's live path: one decision from the last history_window bars
    print(f"\n{'one live decision':<22}{'ms':>12}")
    for name, spec in all_specs().items():
        params = spec.make_params()
        window = bars[len(bars) - spec.history_window(params) :]
        print(f"{name:<22}{best_ms(lambda: spec.target(window, params)):>12.3f}")
    assert np.isfinite(ind.sma(close, 10)[-1])


if __name__ == "__main__":
    main()
