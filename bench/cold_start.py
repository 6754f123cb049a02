"""Benchmark: the first backtest in a fresh Python process, with a warm Numba cache.

A notebook user restarts the kernel and runs one backtest: how long until the result is there?
This script starts fresh interpreters (``python -c ...``) that import Candela, build the
synthetic 1,000,000-bar series and run one SMA-cross backtest (10/50, fee 0.1 %). The first
child fills Numba's on-disk cache if needed (its time is reported as the cold-cache figure);
the next ones measure the warm-cache start. Reported per run: the whole process (interpreter
start to exit), the imports, and the first ``research.backtest`` call (which includes loading
the compiled kernels from the cache). Target: first backtest under 2 s.

Run with ``python -m bench.cold_start``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

WARM_RUNS = 3

CHILD = r"""
import json, time
started = time.perf_counter()
import research
from research.types import Costs
from strategies.registry import get_strategy
from bench.synthetic import synthetic_bars
spec = get_strategy("sma_cross")
imported = time.perf_counter()
bars = synthetic_bars()
built = time.perf_counter()
result = research.backtest(spec, bars, {"fast": 10, "slow": 50}, Costs(fee_rate=0.001))
done = time.perf_counter()
print(json.dumps({"imports": imported - started, "bars": built - imported,
                  "backtest": done - built, "trades": len(result.trades)}))
"""


def run_child() -> dict:
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True,
                            text=True).stdout
    report = json.loads(output.strip().splitlines()[-1])
    report["process"] = time.perf_counter() - started
    return report


def main() -> None:
    first = run_child()
    print("fresh process, 1,000,000 synthetic 1m bars, SMA cross 10/50, fee 0.1 %")
    print(f"first child (fills the Numba cache if it was empty): backtest {first['backtest']:.2f} s, "
          f"process {first['process']:.2f} s")
    runs = [run_child() for _ in range(WARM_RUNS)]
    print(f"\nwarm Numba cache, {WARM_RUNS} fresh processes (median; min-max):")
    for key, label in (("imports", "imports (research, strategies)"),
                       ("bars", "build the synthetic bars"),
                       ("backtest", "first research.backtest"),
                       ("process", "whole process")):
        values = [run[key] for run in runs]
        print(f"  {label:<32} {statistics.median(values):6.2f} s  "
              f"({min(values):.2f}-{max(values):.2f})")
    median = statistics.median(run["backtest"] for run in runs)
    verdict = "meets" if median < 2.0 else "misses"
    print(f"\nfirst backtest in a fresh process: {median:.2f} s ({verdict} the < 2 s target)")


if __name__ == "__main__":
    main()
