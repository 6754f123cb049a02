"""Benchmark: one SMA-cross backtest (10/50, fee 0.1 %) on 1,000,000 synthetic 1m bars.

Candela vs vectorbt vs backtesting.py, all configured to the same convention (decide at bar
t's close, fill at bar t+1's open, all-in long only, fee on notional). Every engine runs once
to compile / warm up (the first-call time is printed separately), then the best of a few
repeats is reported (backtesting.py: one warm run, it takes seconds).

What is timed:

* **Candela** ``research.backtest``: target (the strategy's own indicators), the execution
  kernel (which records the equity curve), the statistics read from that curve; the
  pandas tables (fills, trades, cash/position Series) are built on first access and timed
  separately. Also shown: the stats-only path the sweeps use (``research.sweeps.run_stats``)
  and the parts.
* **vectorbt**: both moving averages (``vbt.MA``), the signals, ``Portfolio.from_signals`` and
  total return, Sharpe ratio and maximum drawdown.
* **backtesting.py**: ``Backtest(...).run()`` with the strategy's SMAs via ``self.I``, on the
  whole series (it runs an event loop in Python: several seconds); its ``run()`` returns the
  stats with the trade list and equity curve already built.

Run with ``python -m bench.backtest_speed``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from bench.synthetic import synthetic_bars
from bench.timing import best_of, first_call

FAST, SLOW = 10, 50
FEE = 0.001
CASH = 10_000.0
CHECK_BARS = 50_000
REPEATS = 7  # best of 7 (as timeit): this VM's speed swings from one second to the next


def candela(bars) -> dict[str, float]:
    # each engine is imported where it runs: ``python -m bench`` imports every benchmark
    # module to list them, which should not load three backtesting libraries
    from research.backtesting import backtest
    from research.kernels import records
    from research.kernels.backtest import run_equity
    from research.kernels.stats import equity_stats_nb
    from research.sweeps import run_stats
    from research.types import Costs, RiskLimits
    from strategies.registry import get_strategy

    spec = get_strategy("sma_cross")
    params = spec.make_params(fast=FAST, slow=SLOW)
    costs = Costs(fee_rate=FEE, slippage_bps=0.0)
    run = lambda: backtest(spec, bars, params, costs, initial_cash=CASH)  # noqa: E731
    compile_seconds, _ = first_call(run)
    seconds, result = best_of(run, REPEATS)
    target_seconds, target = best_of(lambda: spec.target(bars, params), REPEATS)
    config = records.make_config(costs, spec.stops, RiskLimits())
    equity = np.empty(len(bars))

    def kernel():
        run_equity(
            records.new_state(CASH),
            config,
            bars.ts,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            target,
            equity,
        )

    kernel_seconds, _ = best_of(kernel, REPEATS)
    metrics_seconds, _ = best_of(
        lambda: equity_stats_nb(equity, bars.ts, bars.timeframe_ms, CASH), REPEATS
    )
    stats_seconds, _ = best_of(
        lambda: run_stats(spec, bars, params, costs, None, RiskLimits(), CASH), REPEATS
    )
    tables_seconds, _ = first_call(
        lambda: (result.fills, result.trades, result.equity, result.cash, result.position)
    )
    return {
        "first": compile_seconds,
        "warm": seconds,
        "target": target_seconds,
        "kernel": kernel_seconds,
        "metrics": metrics_seconds,
        "stats_only": stats_seconds,
        "tables": tables_seconds,
        "trades": float(result.stats["trade_count"]),
        "final_equity": float(result.stats["final_equity"]),
    }


def vectorbt(bars) -> dict[str, float]:
    import vectorbt as vbt  # imported where it runs (see candela())

    # tz-naive UTC index: vectorbt converts a tz-aware index to an object array of Timestamps
    # on every call (seconds per million bars), which would not be a fair comparison
    close = pd.Series(bars.close, index=pd.to_datetime(bars.ts, unit="ms"))
    open_ = pd.Series(bars.open, index=close.index)

    def run():
        fast = vbt.MA.run(close, FAST).ma
        slow = vbt.MA.run(close, SLOW).ma
        level = fast > slow  # nan (warm-up) compares False: flat, as in Candela
        entries = level.shift(1, fill_value=False)  # decided at t's close, filled at t+1's open
        exits = (~level).shift(1, fill_value=False)
        portfolio = vbt.Portfolio.from_signals(
            close, entries, exits, price=open_, fees=FEE, size=np.inf, init_cash=CASH, freq="1min"
        )
        return (
            portfolio,
            portfolio.total_return(),
            portfolio.sharpe_ratio(),
            portfolio.max_drawdown(),
        )

    compile_seconds, _ = first_call(run)
    seconds, (portfolio, *_rest) = best_of(run, REPEATS)
    return {
        "first": compile_seconds,
        "warm": seconds,
        "trades": float(portfolio.trades.count()),
        "final_equity": float(portfolio.final_value()),
    }


def same_result_check(bars) -> dict[str, float]:
    """Run both engines on ``bars`` and return their trade counts and final equities."""
    import vectorbt as vbt  # engines imported where they run (see candela())

    from research.backtesting import backtest
    from research.types import Costs
    from strategies.registry import get_strategy

    ours = backtest(
        get_strategy("sma_cross"),
        bars,
        {"fast": FAST, "slow": SLOW},
        Costs(fee_rate=FEE),
        initial_cash=CASH,
    )
    close = pd.Series(bars.close, index=pd.to_datetime(bars.ts, unit="ms"))
    level = vbt.MA.run(close, FAST).ma > vbt.MA.run(close, SLOW).ma
    portfolio = vbt.Portfolio.from_signals(
        close,
        level.shift(1, fill_value=False),
        (~level).shift(1, fill_value=False),
        price=pd.Series(bars.open, index=close.index),
        fees=FEE,
        size=np.inf,
        init_cash=CASH,
        freq="1min",
    )
    return {
        "candela_trades": len(ours.trades),
        "vectorbt_trades": int(portfolio.trades.count()),
        "candela_equity": float(ours.stats["final_equity"]),
        "vectorbt_equity": float(portfolio.final_value()),
    }


def backtesting_py(bars, n_bars: int) -> dict[str, float]:
    from backtesting import Backtest, Strategy  # imported where it runs (see candela())

    frame = pd.DataFrame(
        {
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        },
        index=pd.to_datetime(bars.ts, unit="ms", utc=True).tz_localize(None),
    )
    frame = frame.iloc[:n_bars]

    def sma(values, n):
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(sma, self.data.Close, FAST)
            self.slow = self.I(sma, self.data.Close, SLOW)

        def next(self):
            if self.fast[-1] > self.slow[-1]:
                if not self.position:
                    self.buy(size=0.9999)
            elif self.position:
                self.position.close()

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # large cash: backtesting.py trades whole units (timing only)
            return Backtest(
                frame, SmaCross, cash=CASH * 1_000, commission=FEE, finalize_trades=True
            ).run()

    compile_seconds, _ = first_call(run)
    seconds, stats = best_of(run, 1)
    return {"first": compile_seconds, "warm": seconds, "trades": float(stats["# Trades"])}


def main() -> None:
    started = time.perf_counter()
    bars = synthetic_bars()
    print(
        f"synthetic series: {len(bars):,} 1m bars (seed 42) in {time.perf_counter() - started:.2f} s"
    )
    print(f"strategy: SMA cross {FAST}/{SLOW}, long only, fee {FEE:.1%}, fill at next open\n")

    ours = candela(bars)
    print("Candela research.backtest (target + kernel + tables + stats)")
    print(f"  first call (JIT compile or cache load) {ours['first']:8.3f} s")
    print(f"  warm, best of {REPEATS}                    {ours['warm'] * 1e3:8.1f} ms")
    print(f"    strategy target (2 exact SMAs)       {ours['target'] * 1e3:8.1f} ms")
    print(
        f"    execution kernel (run_equity)        {ours['kernel'] * 1e3:8.1f} ms "
        f"({ours['kernel'] / len(bars) * 1e9:.1f} ns per bar)"
    )
    print(f"    equity statistics (equity_stats_nb)  {ours['metrics'] * 1e3:8.1f} ms")
    print(f"    stats-only path (sweeps.run_stats)   {ours['stats_only'] * 1e3:8.1f} ms")
    print(f"  closed trades {ours['trades']:.0f}")
    print(
        f"  tables on first access (fills, trades, equity/cash/position Series) "
        f"{ours['tables'] * 1e3:.1f} ms (not in the warm time)"
    )

    theirs = vectorbt(bars)
    print("vectorbt (MA x2 + signals + from_signals + return/Sharpe/drawdown)")
    print(f"  first call (JIT compile)               {theirs['first']:8.3f} s")
    print(f"  warm, best of {REPEATS}                    {theirs['warm']:8.3f} s")
    print(
        f"  trades {theirs['trades']:.0f} (fees drain this random walk's equity to ~0 well before "
        "the end; vectorbt then stops trading, Candela keeps trading a dust balance)"
    )
    agreement = same_result_check(bars[:CHECK_BARS])
    print(
        f"  same convention check on the first {CHECK_BARS:,} bars: trades "
        f"{agreement['candela_trades']} vs {agreement['vectorbt_trades']}, final equity "
        f"{agreement['candela_equity']:.6f} vs {agreement['vectorbt_equity']:.6f}"
    )

    slow = backtesting_py(bars, len(bars))
    print(f"backtesting.py on all {len(bars):,} bars")
    print(
        f"  first run {slow['first']:.3f} s, second run {slow['warm']:.3f} s "
        f"({slow['trades']:.0f} trades)"
    )

    print("\nratios (other engine's warm time / Candela's warm time; > 1 means Candela is faster)")
    print(
        f"  vs vectorbt                     {theirs['warm'] / ours['warm']:8.2f}x  (target >= 10x)"
    )
    print(
        f"  vs backtesting.py               {slow['warm'] / ours['warm']:8.1f}x  (target >= 500x)"
    )
    print(f"  stats-only path vs vectorbt     {theirs['warm'] / ours['stats_only']:8.2f}x")


if __name__ == "__main__":
    main()
