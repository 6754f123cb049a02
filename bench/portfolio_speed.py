"""Benchmark: a rebalancing book of 50 markets x 100,000 bars, Candela vs vectorbt; and one
market through the book kernel vs the single-market kernel.

**The book.** 50 seeded, correlated synthetic 1m markets (``bench.synthetic``); target weights
inverse to each market's trailing volatility (1,440 bars), recomputed every 1,440 bars and
summing to 1; the whole book is rebalanced to them every 60 bars (50 orders per rebalance, sells
first), fee 0.1 %, no slippage, 10,000 of cash. The weights are computed once, outside the
clock, and both engines get the same arrays:

* **Candela**: :func:`research.kernels.portfolio_backtest.simulate_book` with
  ``Rebalance(every=60)``: the fills and the equity at every bar.
* **vectorbt**: ``Portfolio.from_orders(close, size=w / (1 + fee) on the rebalance bars (nan
  elsewhere), size_type='targetpercent', price=open, fees, cash_sharing=True, group_by=True,
  call_seq='auto', min_size=0)`` (the convention of ``tests/research/test_portfolio_oracles.py``)
  and ``value()``: the orders and the equity at every bar.

Each engine runs in its own child process: it builds the inputs, compiles on a small slice
(reported apart), then runs the full book ``--repeats`` times (min, median and max reported).
Its **peak memory** is the resident-set high-water mark over those runs above the resident set
just before them (the inputs are already resident and the same for both), read from
``/proc/self/status`` after resetting the mark (``/proc/self/clear_refs``). Agreement gate
(:mod:`bench.gate`): unless both placed the same number of orders and their final equities
agree within 1e-9, the disagreement is printed, no timing is, and the exit status is 1.

**One market.** 1,000,000 bars (``synthetic_bars``), a target of 0/1 levels changing every 500
bars on average: :func:`~research.kernels.portfolio_backtest.simulate_book` of one market
(which runs the single-market loop, see its module docstring), and the general book loop
(``general=True``), vs :func:`research.kernels.backtest.run_equity`; same process, alternating,
min/median/max of ``--repeats``; the fills must be equal in all three.

Run with ``python -m bench.portfolio_speed`` (``--repeats N``, default 5).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.engines import Outcome
from bench.gate import agree, refuse

N_BARS = 100_000
N_MARKETS = 50
WINDOW = 1_440  # trailing volatility, and how often the weights are recomputed
EVERY = 60  # rebalance the book every this many bars
FEE = 0.001
CASH = 10_000.0
SINGLE_BARS = 1_000_000


def book_inputs():
    """The panel arrays and the target weights (inverse trailing volatility, sum 1)."""
    from bench.synthetic import synthetic_panel_arrays

    ts, open_, high, low, close = synthetic_panel_arrays(N_BARS, N_MARKETS)
    returns = np.zeros_like(close)
    returns[1:] = close[1:] / close[:-1] - 1.0
    weights = np.zeros_like(close)
    for start in range(WINDOW, N_BARS, WINDOW):
        volatility = returns[start - WINDOW : start].std(axis=0)
        inverse = 1.0 / volatility
        weights[start : start + WINDOW] = inverse / inverse.sum()
    return ts, open_, high, low, close, weights


def _memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _timed_runs(run, repeats: int) -> tuple[list[float], int, object]:
    """Run ``run`` ``repeats`` times; return the wall times, the peak extra resident memory
    (bytes above the resident set before the first run) and the last result."""
    before = _memory_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident set
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
        del result
        result = None
    result = run()
    peak = _memory_kib("VmHWM")
    return times, (peak - before) * 1024, result


def run_candela(repeats: int) -> dict:
    from research.kernels.portfolio_backtest import simulate_book
    from research.kernels.portfolio_records import BookLimits, Rebalance, make_book_config, new_book
    from research.types import Costs, Stops

    ts, open_, high, low, close, weights = book_inputs()
    config = make_book_config(Costs(FEE, 0.0), Stops(), BookLimits(), Rebalance(every=EVERY))

    def run(rows=None):
        rows = slice(None) if rows is None else rows
        book, legs = new_book(CASH, N_MARKETS)
        equity = np.empty(len(ts[rows]))
        simulation = simulate_book(
            book,
            legs,
            config,
            ts[rows],
            open_[rows],
            high[rows],
            low[rows],
            close[rows],
            weights[rows],
            equity,
        )
        return simulation.fills, equity

    started = time.perf_counter()
    run(slice(0, 3 * WINDOW))
    warmup = time.perf_counter() - started
    times, peak, (fills, equity) = _timed_runs(run, repeats)
    return {
        "times": times,
        "warmup": warmup,
        "peak_extra": peak,
        "orders": len(fills),
        "final_equity": float(equity[-1]),
        "resident": _memory_kib("VmRSS") * 1024,
    }


def run_vectorbt(repeats: int) -> dict:
    import pandas as pd
    import vectorbt as vbt

    ts, open_, high, low, close, weights = book_inputs()
    del high, low  # vectorbt's from_orders does not read them
    size = np.full_like(weights, np.nan)
    size[1::EVERY] = weights[0:-1:EVERY] / (1.0 + FEE)  # decided at t's close, filled at t+1
    index = pd.to_datetime(ts, unit="ms")

    def run(rows=None):
        rows = slice(None) if rows is None else rows
        portfolio = vbt.Portfolio.from_orders(
            pd.DataFrame(close[rows], index=index[rows]),
            size=size[rows],
            size_type="targetpercent",
            price=open_[rows],
            fees=FEE,
            init_cash=CASH,
            cash_sharing=True,
            group_by=True,
            call_seq="auto",
            min_size=0.0,
            freq="1min",
        )
        return portfolio.orders.records, portfolio.value().to_numpy()

    started = time.perf_counter()
    run(slice(0, 3 * WINDOW))
    warmup = time.perf_counter() - started
    times, peak, (orders, equity) = _timed_runs(run, repeats)
    return {
        "times": times,
        "warmup": warmup,
        "peak_extra": peak,
        "orders": len(orders),
        "final_equity": float(equity[-1]),
        "resident": _memory_kib("VmRSS") * 1024,
    }


def run_single(repeats: int) -> dict:
    """One market: the book kernel vs the single-market kernel, alternating in one process."""
    from bench.synthetic import synthetic_bars
    from research.kernels.backtest import run_equity
    from research.kernels.portfolio_backtest import simulate_book
    from research.kernels.portfolio_records import BookLimits, make_book_config, new_book
    from research.kernels.records import FILL_DTYPE, make_config, new_state
    from research.types import Costs, RiskLimits, Stops

    bars = synthetic_bars(SINGLE_BARS)
    rng = np.random.default_rng(7)
    target = np.repeat(rng.integers(0, 2, SINGLE_BARS // 500 + 1).astype(float), 500)
    target = target[:SINGLE_BARS]
    costs = Costs(FEE, 0.0)
    config = make_config(costs, Stops(), RiskLimits())
    book_config = make_book_config(costs, Stops(), BookLimits())
    columns = [values[:, None] for values in (bars.open, bars.high, bars.low, bars.close, target)]
    equity = np.empty(SINGLE_BARS)

    def single():
        return run_equity(
            new_state(CASH),
            config,
            bars.ts,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            target,
            equity,
        ).fills

    def book(general=False):
        state, legs = new_book(CASH, 1)
        return simulate_book(
            state, legs, book_config, bars.ts, *columns, equity, general=general
        ).fills

    runs = {"single": single, "book": book, "general": lambda: book(general=True)}
    for run in runs.values():  # compile or load
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    theirs = single()
    same = all(
        len(ours) == len(theirs)
        and all(np.array_equal(ours[name], theirs[name]) for name in FILL_DTYPE.names)
        for ours in (book(), book(general=True))
    )
    return {"times": times, "same_fills": same, "fills": len(theirs)}


def child(engine: str, repeats: int) -> dict:
    """Run ``engine`` in a fresh interpreter; return its JSON report."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.portfolio_speed",
            "--engine",
            engine,
            "--repeats",
            str(repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _spread(times: list[float]) -> str:
    return (
        f"min {min(times) * 1e3:9.1f} ms   median {statistics.median(times) * 1e3:9.1f} ms"
        f"   max {max(times) * 1e3:9.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.portfolio_speed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--engine", choices=("candela", "vectorbt", "single"), help=argparse.SUPPRESS
    )
    arguments = parser.parse_args([] if argv is None else argv)
    engines = {"candela": run_candela, "vectorbt": run_vectorbt, "single": run_single}
    if arguments.engine:
        print(json.dumps(engines[arguments.engine](arguments.repeats)))
        return
    print(
        f"book: {N_MARKETS} correlated synthetic 1m markets x {N_BARS:,} bars; inverse-"
        f"volatility weights, rebalanced every {EVERY} bars; fee {FEE:.1%}; "
        f"{arguments.repeats} runs each, each engine in its own process"
    )
    reports = {name: child(name, arguments.repeats) for name in ("candela", "vectorbt")}
    ours, theirs = reports["candela"], reports["vectorbt"]
    # the agreement gate (bench.gate): no timing unless both placed the same orders and end
    # with the same equity
    why = agree(
        Outcome(ours["orders"], ours["final_equity"]),
        Outcome(theirs["orders"], theirs["final_equity"]),
    )
    if why is not None:
        refuse(f"vectorbt {why}")
    for name, report in reports.items():
        print(f"\n{name}")
        print(f"  compile on a slice   {report['warmup']:8.2f} s")
        print(f"  full book            {_spread(report['times'])}")
        print(f"  peak memory above the inputs {report['peak_extra'] / 2**20:8.1f} MiB")
        print(f"  orders {report['orders']:,}; final equity {report['final_equity']:.6f}")
    difference = abs(ours["final_equity"] / theirs["final_equity"] - 1.0)
    speed = [
        statistics.median(theirs["times"]) / statistics.median(ours["times"]),
        min(theirs["times"]) / max(ours["times"]),
        max(theirs["times"]) / min(ours["times"]),
    ]
    memory = theirs["peak_extra"] / max(ours["peak_extra"], 1)
    print(f"\nsame orders; final equities agree within {difference:.1e} (relative; gate 1e-9)")
    print(
        f"vectorbt time / Candela time: median {speed[0]:.1f}x (worst case {speed[1]:.1f}x, "
        f"best {speed[2]:.1f}x; target >= 10x)"
    )
    print(
        f"vectorbt peak memory / Candela peak memory (above the inputs): {memory:.1f}x (target > 1)"
    )

    single = child("single", arguments.repeats)
    times = single["times"]
    ratio = {
        name: statistics.median(times[name]) / statistics.median(times["single"])
        for name in ("book", "general")
    }
    print(
        f"\none market, {SINGLE_BARS:,} bars, {single['fills']:,} fills "
        f"(same fills in all three: {single['same_fills']})"
    )
    print(f"  single-market kernel (run_equity)        {_spread(times['single'])}")
    print(f"  simulate_book (runs the single loop)     {_spread(times['book'])}")
    print(f"  simulate_book(general=True), book loop   {_spread(times['general'])}")
    print(
        f"  simulate_book / single-market kernel: median {ratio['book']:.2f}x "
        "(target <= 1.0x: no slower)"
    )
    print(
        f"  book loop on one market / single-market kernel: median {ratio['general']:.2f}x "
        "(what the general loop costs per market-bar)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
