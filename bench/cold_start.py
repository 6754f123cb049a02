"""Benchmark: the first backtest in a fresh Python process, with a cold and a warm Numba cache.

A notebook user restarts the kernel and runs one backtest: how long until the result is there?
This script starts fresh interpreters (``python -c ...``) that import Candela, build the
synthetic 1,000,000-bar series and run one SMA-cross backtest (10/50, fee 0.1 %), without
stops and with them (a stop-loss and a trailing stop compile another variant of the loop).

Three situations, each in several fresh processes (min / median / max):

* **cold**: every process gets an empty ``NUMBA_CACHE_DIR``, as a fresh install without
  ``candela warmup`` would: the first backtest compiles its kernels;
* **warmup**: ``candela warmup`` in an empty cache (what ``make install`` and ``make demo`` run,
  with a progress line per step);
* **warm**: fresh processes sharing the cache that warmup filled: the first backtest loads the
  kernels (the targets: at most 10 s for the first backtest after install, under 2 s warm).

Reported per run: the imports, and the first ``research.backtest`` call. Run with
``python -m bench.cold_start`` (several minutes: each cold process compiles for 15 to 30 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 3

CHILD = r"""
import json, sys, time
started = time.perf_counter()
import research
from research.types import Costs, Stops
from strategies.registry import get_strategy
from bench.synthetic import synthetic_bars
spec = get_strategy("sma_cross")
imported = time.perf_counter()
bars = synthetic_bars()
built = time.perf_counter()
stops = Stops(stop_loss=0.02, trailing_stop=0.03) if sys.argv[1] == "stops" else Stops()
result = research.backtest(spec, bars, {"fast": 10, "slow": 50}, Costs(fee_rate=0.001),
                           stops=stops)
done = time.perf_counter()
print(json.dumps({"imports": imported - started, "bars": built - imported,
                  "backtest": done - built, "trades": len(result.trades)}))
"""


def run_child(cache_dir: str, variant: str) -> dict:
    environment = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", CHILD, variant],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    ).stdout
    report = json.loads(output.strip().splitlines()[-1])
    report["process"] = time.perf_counter() - started
    return report


def run_warmup(cache_dir: str) -> float:
    environment = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "candela.cli", "warmup", "--quiet"],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    )
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} / {statistics.median(values):6.2f} / {max(values):6.2f} s"


def main() -> None:
    print(
        "fresh processes, 1,000,000 synthetic 1m bars, SMA cross 10/50, fee 0.1 %; "
        "min / median / max"
    )
    results: dict[str, list[float]] = {}
    for variant in ("no stops", "stops"):
        cold = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory(prefix="candela-numba-") as cache:
                cold.append(run_child(cache, variant.replace("no stops", "plain"))["backtest"])
        results[f"cold, {variant}"] = cold
        print(f"  first backtest, empty cache, {variant:<9} {spread(cold)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="candela-numba-") as cache:
        warmup = run_warmup(cache)
        print(f"  candela warmup, empty cache            {warmup:6.2f} s (once)", flush=True)
        for variant in ("no stops", "stops"):
            runs = [run_child(cache, variant.replace("no stops", "plain")) for _ in range(RUNS)]
            warm = [run["backtest"] for run in runs]
            results[f"warm, {variant}"] = warm
            print(
                f"  first backtest after warmup, {variant:<9} {spread(warm)}   (imports "
                f"{spread([run['imports'] for run in runs])})",
                flush=True,
            )
    worst_warm = max(max(results["warm, no stops"]), max(results["warm, stops"]))
    print(
        f"\nfirst backtest after install (warmup done): at most {worst_warm:.2f} s "
        f"({'meets' if worst_warm <= 10 else 'misses'} the 10 s target; "
        f"{'meets' if worst_warm < 2 else 'misses'} the 2 s warm target)"
    )


if __name__ == "__main__":
    main()
