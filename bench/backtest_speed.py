"""Benchmark: one SMA-cross backtest (10/50, fee 1 bp) on 1,000,000 synthetic 1m bars.

Candela vs vectorbt vs raptorbt (when installed) vs backtesting.py, all configured to the
same convention (decide at bar t's close, fill at bar t+1's open, all-in long only, fee on
notional; see :mod:`bench.engines` and docs/benchmarks.md). Every comparison goes through
the agreement gate (:mod:`bench.gate`): each engine runs once (its first call, compilation or
cache load, shown apart), the closed trades and final equity must equal Candela's (1e-9
relative) or nothing is timed and the benchmark exits with status 1; then the engines are
called interleaved, ``--repeats`` times each (backtesting.py, an event loop in Python taking
tens of seconds, ``--slow-repeats`` times), and the min/median/max are printed.

What is timed (each engine from the prices to its closed trades and final equity):

* **Candela** ``research.backtest``: the strategy's target (its own indicators), the
  execution kernel (which records the equity curve) and the statistics read from that curve.
  The pandas tables (fills, trades, cash/position Series) are built on first access and are
  not in it; they are timed apart below, with the parts and the stats-only path the sweeps
  use (``research.sweeps.run_stats``).
* **vectorbt**: both moving averages (``vbt.MA``), the signals, ``Portfolio.from_signals``,
  closed trade count and final value.
* **raptorbt**: both moving averages (``raptorbt.sma``), the crossings,
  ``run_single_backtest`` (which computes its whole metric set).
* **backtesting.py**: ``FractionalBacktest(...).run()`` on the whole series; its ``run()``
  returns the stats with the trade list and equity curve already built.

Run with ``python -m bench.backtest_speed [--bars N] [--repeats N] [--slow-repeats N]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench.engines import SmaCross, available, prepare
from bench.gate import gated_report
from bench.synthetic import N_BARS, synthetic_bars
from bench.timing import first_call, spread_of

REPEATS = 7
SLOW_REPEATS = 2


def candela_parts(bars, workload: SmaCross, repeats: int) -> dict:
    """Candela's parts, min/median/max wall seconds over ``repeats`` calls each."""
    from research.backtesting import backtest
    from research.kernels import records
    from research.kernels.backtest import run_equity
    from research.kernels.stats import equity_stats_nb
    from research.sweeps import run_stats
    from research.types import Costs, RiskLimits
    from strategies.registry import get_strategy

    spec = get_strategy("sma_cross")
    params = spec.make_params(fast=workload.fast, slow=workload.slow)
    costs = Costs(fee_rate=workload.fee, slippage_bps=0.0)
    target_spread, target = spread_of(lambda: spec.target(bars, params), repeats)
    config = records.make_config(costs, spec.stops, RiskLimits())
    equity = np.empty(len(bars))

    def kernel():
        run_equity(
            records.new_state(workload.cash),
            config,
            bars.ts,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            target,
            equity,
        )

    kernel_spread, _ = spread_of(kernel, repeats)
    metrics_spread, _ = spread_of(
        lambda: equity_stats_nb(equity, bars.ts, bars.timeframe_ms, workload.cash), repeats
    )
    stats_spread, _ = spread_of(
        lambda: run_stats(spec, bars, params, costs, None, RiskLimits(), workload.cash), repeats
    )
    result = backtest(spec, bars, params, costs, initial_cash=workload.cash)
    tables_seconds, _ = first_call(
        lambda: (result.fills, result.trades, result.equity, result.cash, result.position)
    )
    return {
        "strategy target (2 exact SMAs)": target_spread,
        "execution kernel (run_equity)": kernel_spread,
        "equity statistics (equity_stats_nb)": metrics_spread,
        "stats-only path (sweeps.run_stats)": stats_spread,
        "tables on first access (fills, trades, Series)": (tables_seconds,) * 3,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_speed")
    parser.add_argument("--bars", type=int, default=N_BARS, help="synthetic 1m bars")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per engine")
    parser.add_argument(
        "--slow-repeats",
        type=int,
        default=SLOW_REPEATS,
        help="timed calls for backtesting.py (0 leaves it out)",
    )
    arguments = parser.parse_args([] if argv is None else argv)
    started = time.perf_counter()
    bars = synthetic_bars(arguments.bars)
    workload = SmaCross()
    print(
        f"synthetic series: {len(bars):,} 1m bars (seed 42) in "
        f"{time.perf_counter() - started:.2f} s; {workload.describe()}, fill at next open\n"
    )
    engines = ["candela", "vectorbt"] + (["raptorbt"] if available("raptorbt") else [])
    if "raptorbt" not in engines:
        print("raptorbt is not installed (pip install -e '.[bench]'): left out")
    print("Candela research.backtest (target + kernel + stats) against the vectorised engines")
    gated_report({engine: prepare(engine, workload, bars) for engine in engines}, arguments.repeats)

    print(f"\nCandela's parts, min / median / max of {arguments.repeats} calls")
    for label, (low, middle, high) in candela_parts(bars, workload, arguments.repeats).items():
        print(
            f"  {label:<48} {low * 1e3:8.1f} {middle * 1e3:8.1f} {high * 1e3:8.1f} ms"
            + (f" ({middle / len(bars) * 1e9:.1f} ns per bar)" if "kernel" in label else "")
        )

    if arguments.slow_repeats > 0:
        print(f"\nbacktesting.py on all {len(bars):,} bars (an event loop in Python)")
        gated_report(
            {engine: prepare(engine, workload, bars) for engine in ("candela", "backtesting")},
            arguments.slow_repeats,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
