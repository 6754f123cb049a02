"""The exact window sums behind ``sma``: each accumulator's speed and first compilation.

Run with ``.venv/bin/python -m bench.window_sums``. On 1,000,000 bars of four series (1-minute
BTC-like closes at cent ticks, satoshi-priced ADA/BTC-like closes at 1e-8 ticks, the shared
synthetic closes, and their log returns, which change sign around zero), prints the median
(and min-max) time of ``window_means`` per window length with the accumulator the blocks took,
and, on the BTC-like closes, the time of the limb kernel forced over every block (what each
window would cost without the fixed point). Then the first compilation in fresh processes with
an empty Numba cache: ``sma`` on prices (the fixed-point kernel only), and afterwards, in the
same process, a series that needs the limbs (the limb kernel alone).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.synthetic import synthetic_bars
from research.kernels import window_sums as ws

WINDOWS = (10, 50, 216, 1440)
REPEATS = 7
FRESH_PROCESSES = 3
NAMES = {ws._ONE_WORD: "one word", ws._TWO_WORDS: "two words", ws._LIMBS: "limbs"}

CHILD = r"""
import json, time
import numpy as np
started = time.perf_counter()
import research.indicators as ind
imported = time.perf_counter()
prices = np.round(30_000.0 + np.cumsum(np.full(5_000, 0.37)), 2)
ind.sma(prices, 20)
fixed = time.perf_counter()
ind.sma((prices - 30_000.0) * 10.0 ** (np.arange(5_000) % 40 - 20), 20)
limbs = time.perf_counter()
print(json.dumps({"import": imported - started, "fixed": fixed - imported,
                  "limbs": limbs - fixed}))
"""


def walk(start: float, tick: float, seed: int, size: int = 1_000_000) -> np.ndarray:
    """A geometric random walk (0.1 % per bar) rounded to ``tick``."""
    rng = np.random.default_rng(seed)
    path = start * np.exp(np.cumsum(rng.normal(0.0, 0.001, size)))
    return np.round(np.round(path / tick) * tick, 10)


def accumulators(x: np.ndarray, n: int) -> str:
    """The accumulators the blocks of ``x`` take."""
    return " + ".join(sorted({NAMES[code] for code in ws.block_accumulators(x, n).tolist()}))


def timed(function) -> list[float]:
    function()
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def forced_limbs(x: np.ndarray, n: int) -> np.ndarray:
    """``window_means`` with every block given to the limb kernel."""
    out = np.full(len(x), np.nan)
    block = max(1024, 4 * n)
    blocks = ws._window_sums(x, n, float(n), True)[1]  # each block's exponents
    blocks[:, 0] = ws._LIMBS
    ws.limb_sums_nb(
        x,
        x.view(np.int64),
        n,
        float(n),
        True,
        out,
        blocks,
        block,
        np.empty(ws.MAX_LIMBS, np.int64),
        np.empty(ws.MAX_LIMBS, np.int64),
    )
    return out


def spread(times: list[float]) -> str:
    return (
        f"{statistics.median(times) * 1e3:7.2f} ms ({min(times) * 1e3:.2f}-{max(times) * 1e3:.2f})"
    )


def fresh_compilations() -> list[dict]:
    runs = []
    for _ in range(FRESH_PROCESSES):
        with tempfile.TemporaryDirectory() as cache:
            output = subprocess.run(
                [sys.executable, "-c", CHILD],
                check=True,
                text=True,
                capture_output=True,
                env={**os.environ, "NUMBA_CACHE_DIR": cache},
            ).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    return runs


def main() -> None:
    close = synthetic_bars().close
    series = {
        "BTC-like, cents": walk(30_000.0, 0.01, 1),
        "ADA/BTC-like, 1e-8": walk(2e-5, 1e-8, 2),
        "synthetic closes": close,
        "log returns": np.diff(np.log(close), prepend=math.log(close[0])),
    }
    print(f"1,000,000 bars; median (min-max) of {REPEATS} runs after a warm-up\n")
    print(f"{'series':<22}{'n':>6}  {'window_means':<28}accumulator")
    for name, x in series.items():
        for n in WINDOWS:
            times = timed(lambda: ws.window_means(x, n))
            print(f"{name:<22}{n:>6}  {spread(times):<28}{accumulators(x, n)}")
    x = series["BTC-like, cents"]
    assert np.array_equal(forced_limbs(x, 50), ws.window_means(x, 50), equal_nan=True)
    print(f"{'BTC-like, limbs forced':<22}{50:>6}  {spread(timed(lambda: forced_limbs(x, 50)))}")

    runs = fresh_compilations()
    print(
        f"\nfirst compilation, {FRESH_PROCESSES} fresh processes with an empty Numba cache "
        "(median; min-max):"
    )
    for key, label in (
        ("import", "import research.indicators"),
        ("fixed", "first sma on prices"),
        ("limbs", "then a series needing limbs"),
    ):
        values = [run[key] for run in runs]
        print(
            f"  {label:<30} {statistics.median(values):6.2f} s  "
            f"({min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    main()
