"""Benchmark: a stop-based workload on 1,000,000 synthetic 1m bars, Candela vs vectorbt (vs
raptorbt when installed).

The workload (:class:`bench.engines.BollingerTrail`): long from a close above the upper
Bollinger band (20 closes, 2 standard deviations) until a close below the middle band, with
a 0.5 % trailing stop, fee 1 bp, decided at bar ``t``'s close and filled at bar ``t+1``'s
open. The stop is checked against every bar's high and low and fills at its level, or at the
open when the open gapped through it.

* **Candela**: ``research.backtest(spec, bars, params, costs, stops=Stops(trailing_stop=...))``
  with the stats.
* **vectorbt**: ``vbt.BBANDS``, the cleaned crossings shifted one bar,
  ``Portfolio.from_signals(..., sl_stop, sl_trail=True, stop_entry_price="price",
  stop_exit_price="stopmarket", adjust_sl_func_nb=...)``, the closed trades and final value.
* **raptorbt**: its ``bollinger_bands`` and ``run_single_backtest`` with
  ``fill_timing="next_bar_open"`` and ``set_trailing_stop``.

Each convention difference, and how it is matched, is in :mod:`bench.engines` and
docs/benchmarks.md. The engines must agree (closed trades, final equity to 1e-9) before any
timing is printed (:mod:`bench.gate`); then each is called ``--repeats`` times, interleaved.

Run with ``python -m bench.stop_speed [--bars N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import sys

from bench.engines import ENGINES, BollingerTrail, available, prepare
from bench.gate import gated_report
from bench.synthetic import N_BARS, synthetic_bars

REPEATS = 7


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stop_speed")
    parser.add_argument("--bars", type=int, default=N_BARS, help="synthetic 1m bars")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per engine")
    arguments = parser.parse_args([] if argv is None else argv)
    workload = BollingerTrail()
    bars = synthetic_bars(arguments.bars)
    print(f"synthetic series: {len(bars):,} 1m bars (seed 42); {workload.describe()}")
    print("backtesting.py left out: its stop orders fill by other same-bar rules")
    candidates = [engine for engine in ENGINES if engine != "backtesting"]
    engines = [engine for engine in candidates if available(engine)]
    for engine in candidates:
        if engine not in engines:
            print(f"{engine} is not installed (pip install -e '.[bench]'): left out")
    gated_report({engine: prepare(engine, workload, bars) for engine in engines}, arguments.repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
