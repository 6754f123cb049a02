"""Benchmark: the first backtest in a fresh Python process, with a cold and a warm Numba cache.

A notebook user restarts the kernel and runs one backtest: how long until the result is there?
This script starts fresh interpreters that import Candela, build the synthetic 1,000,000-bar
series and run one SMA-cross backtest (10/50, fee 0.1 %), without stops and with them (a
stop-loss and a trailing stop compile another variant of the loop).

Three situations, each in several fresh processes (min / median / max):

* **cold**: every process gets an empty ``NUMBA_CACHE_DIR``, as a fresh install without
  ``candela warmup`` would: the first backtest compiles its kernels;
* **warmup**: ``candela warmup`` in an empty cache (what ``make install`` and ``make demo`` run,
  with a progress line per step);
* **warm**: fresh processes sharing the cache that warmup filled: the first backtest loads the
  kernels (the targets: at most 10 s for the first backtest after install, under 0.5 s warm).

The warm situation is measured twice:

* as a **script** (``python -c``): imports, then the bars, then the backtest, straight through;
* as a **notebook**: the same three steps as three cells of an IPython shell (what a Jupyter
  kernel runs), with ``PAUSE`` seconds between cells (the user reading the output) and without
  a pause (run all). There :mod:`research.notebook_start` prepares the first backtest in a
  background thread once the importing cell is done; each notebook row is measured with that
  switched off (``CANDELA_PREPARE=0``) and on, the two interleaved.

Reported per row: the imports (the first cell), the first ``research.backtest`` call (the
backtest cell), the whole (imports, bars and backtest, pauses excluded) and the child's CPU time
(all threads), which the machine's load disturbs less than wall time. Run with
``python -m bench.cold_start`` (several minutes: each cold process compiles for 15 to 30 s);
``python -m bench.cold_start --warm`` skips the cold processes.
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
WARM_RUNS = 5
PAUSE = 2.0

STEPS = (
    "import research\n"
    "from research.types import Costs, Stops\n"
    "from strategies.registry import get_strategy\n"
    "from bench.synthetic import synthetic_bars\n"
    "spec = get_strategy('sma_cross')",
    "bars = synthetic_bars()",
    "stops = Stops(stop_loss=0.02, trailing_stop=0.03) if VARIANT == 'stops' else Stops()\n"
    "result = research.backtest(spec, bars, {'fast': 10, 'slow': 50}, Costs(fee_rate=0.001),\n"
    "                           stops=stops)",
)

# argv: variant ("plain" or "stops"), pause in seconds (notebook only), the steps as JSON
SCRIPT = r"""
import json, os, sys, time
namespace = {"VARIANT": sys.argv[1]}
times = []
for step in json.loads(sys.argv[3]):
    started = time.perf_counter()
    exec(step, namespace)
    times.append(time.perf_counter() - started)
cpu = os.times()
print(json.dumps({"steps": times, "cpu": cpu.user + cpu.system,
                  "trades": len(namespace["result"].trades)}))
"""

NOTEBOOK = r"""
import json, os, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.user_ns["VARIANT"] = sys.argv[1]
times = []
for number, cell in enumerate(json.loads(sys.argv[3])):
    if number:
        time.sleep(float(sys.argv[2]))
    started = time.perf_counter()
    outcome = shell.run_cell(cell)
    times.append(time.perf_counter() - started)
    outcome.raise_error()
cpu = os.times()
print(json.dumps({"steps": times, "cpu": cpu.user + cpu.system,
                  "trades": len(shell.user_ns["result"].trades)}))
"""


def run_child(
    cache_dir: str, variant: str, notebook: bool = False, pause: float = 0.0, prepare: bool = True
) -> dict:
    """One fresh process running :data:`STEPS`; its step times, whole and CPU time."""
    environment = dict(
        os.environ, NUMBA_CACHE_DIR=cache_dir, CANDELA_PREPARE="1" if prepare else "0"
    )
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            NOTEBOOK if notebook else SCRIPT,
            variant.replace("no stops", "plain"),
            str(pause),
            json.dumps(STEPS),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    ).stdout
    report = json.loads(output.strip().splitlines()[-1])
    report["imports"], report["bars"], report["backtest"] = report["steps"]
    report["whole"] = sum(report["steps"])
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
    return f"{min(values):5.2f} / {statistics.median(values):5.2f} / {max(values):5.2f} s"


def describe(label: str, rows: list[dict]) -> str:
    return (
        f"  {label:<46} first call {spread([row['backtest'] for row in rows])}   imports "
        f"{spread([row['imports'] for row in rows])}   whole "
        f"{spread([row['whole'] for row in rows])}   cpu {spread([row['cpu'] for row in rows])}"
    )


def main(argv: list[str] | None = None) -> None:
    warm_only = "--warm" in (sys.argv[1:] if argv is None else argv)
    print(
        "fresh processes, 1,000,000 synthetic 1m bars, SMA cross 10/50, fee 0.1 %; "
        f"min / median / max; load average {os.getloadavg()[0]:.1f} at the start"
    )
    worst_first: dict[str, float] = {}
    if not warm_only:
        for variant in ("no stops", "stops"):
            cold = []
            for _ in range(RUNS):
                with tempfile.TemporaryDirectory(prefix="candela-numba-") as cache:
                    cold.append(run_child(cache, variant)["backtest"])
            print(f"  first backtest, empty cache, {variant:<9} {spread(cold)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="candela-numba-") as cache:
        warmup = run_warmup(cache)
        print(f"  candela warmup, empty cache            {warmup:6.2f} s (once)", flush=True)
        print("\nafter warmup:")
        for variant in ("no stops", "stops"):
            rows = [run_child(cache, variant) for _ in range(WARM_RUNS)]
            print(describe(f"script, {variant}", rows), flush=True)
            worst_first[f"script, {variant}"] = max(row["backtest"] for row in rows)
            for pause in (PAUSE, 0.0):
                runs: dict[bool, list[dict]] = {False: [], True: []}
                for _ in range(WARM_RUNS):
                    for prepare in (False, True):  # interleaved
                        runs[prepare].append(run_child(cache, variant, True, pause, prepare))
                for prepare in (False, True):
                    label = (
                        f"notebook, {variant}, {f'pause {pause:.0f} s' if pause else 'run all'}, "
                        f"prepare {'on' if prepare else 'off'}"
                    )
                    print(describe(label, runs[prepare]), flush=True)
                    worst_first[label] = max(row["backtest"] for row in runs[prepare])
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; the 0.5 s warm target:")
    for label, worst in worst_first.items():
        if "prepare off" not in label:
            print(f"  {label:<46} at most {worst:5.2f} s: {'meets' if worst < 0.5 else 'misses'}")


if __name__ == "__main__":
    main()
