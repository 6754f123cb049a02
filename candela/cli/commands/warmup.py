"""``candela warmup``: compile Candela's kernels once, ahead of the first backtest.

Candela's kernels are compiled by Numba for this machine the first time they run and cached on
disk (next to their sources). Without the cache the first backtest of a fresh install spends
its first 15 to 30 seconds compiling, silently; ``make install`` and ``make demo`` therefore run
this command, which compiles them with a progress line per step, so that the first backtest
only loads them (well under a second). Running it again is quick: what is cached is loaded, not
compiled.

What is compiled is what a backtest, a sweep and the paper-trading runner call, for argument
types as :func:`research.load_bars` gives them: the execution loop in its four variants (with
and without stops, with and without risk limits), the statistics and trade tables, the
indicators of every registered strategy, a sweep's fused rows, and the runner's per-bar step and
replay span. The bars are a
synthetic random walk: they only give the kernels something to run on.

:func:`compile_notice` is the other half: a command that may compile (``backtest``, ``sweep``,
``report``) says so when its work takes unusually long, instead of staying silent.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Bars of the synthetic series: more than the longest warm-up of the shipped strategies.
WARMUP_BARS = 3_000


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``warmup`` to the top-level commands."""
    parser = commands.add_parser(
        "warmup", help="compile the backtest and runner kernels once (make install runs it)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.set_defaults(handler=_warmup)


def _warmup(arguments: argparse.Namespace) -> int:
    started = time.perf_counter()
    steps = warmup_steps()
    if not arguments.quiet:
        print(
            f"compiling Candela's kernels for this machine ({len(steps)} steps; once, then "
            "cached on disk)",
            flush=True,
        )
    for number, (label, work) in enumerate(steps, start=1):
        began = time.perf_counter()
        if not arguments.quiet:
            print(f"  [{number}/{len(steps)}] {label} ...", end=" ", flush=True)
        work()
        if not arguments.quiet:
            print(f"{time.perf_counter() - began:.1f} s", flush=True)
    print(f"kernels ready in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


def warmup_steps() -> list[tuple[str, Callable[[], None]]]:
    """The steps of :func:`_warmup`: ``(label, function)`` pairs, in order."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import math

    import numpy as np

    from research.backtesting import backtest
    from research.kernels.execution import step, step_span
    from research.kernels.records import MAX_FILLS_PER_BAR, State, make_config, new_fills, new_state
    from research.sweeps import sweep
    from research.types import Costs, RiskLimits, Stops
    from strategies.registry import all_specs, get_strategy

    bars = synthetic_bars(WARMUP_BARS)
    sma = get_strategy("sma_cross")
    stops = Stops(stop_loss=0.02, take_profit=0.05, trailing_stop=0.03)
    limits = RiskLimits(daily_loss_limit=0.05, max_drawdown=0.5)

    def run(spec, **settings) -> None:
        result = backtest(spec, bars, None, Costs(0.001, 1.0), **settings)
        result.trades, result.fills, result.cash  # noqa: B018 - reading the tables compiles their kernels

    def sweep_rows() -> None:
        grid = {"fast": [5, 10], "slow": [20]}
        sweep(sma, bars, grid, Costs(0.001, 1.0), n_jobs=1, progress=False, keep_best=0)

    def runner_step() -> None:
        config = make_config(Costs(0.001, 1.0), stops, limits)
        target = np.where(np.arange(8) % 3 == 0, 1.0, 0.0)
        span = slice(0, len(target))
        step_span(
            new_state(10_000.0),
            config,
            bars.ts[span],
            bars.open[span],
            bars.high[span],
            bars.low[span],
            bars.close[span],
            target,
            np.zeros((len(target), len(State._fields))),
            np.zeros(len(target), dtype=np.int64),
            new_fills(MAX_FILLS_PER_BAR * len(target)),
        )
        state, fills = new_state(10_000.0), new_fills(MAX_FILLS_PER_BAR)
        for i in range(3):
            _, state = step(
                state,
                config,
                int(bars.ts[i]),
                float(bars.open[i]),
                float(bars.high[i]),
                float(bars.low[i]),
                float(bars.close[i]),
                1.0 if i else math.nan,
                fills,
            )

    steps = [
        ("backtest loop, statistics and trade tables", lambda: run(sma, stops=Stops())),
        ("backtest loop with stops", lambda: run(sma, stops=stops)),
        ("backtest loop with risk limits", lambda: run(sma, stops=Stops(), risk=limits)),
        ("backtest loop with stops and risk limits", lambda: run(sma, stops=stops, risk=limits)),
    ]
    for spec in all_specs().values():
        steps.append((f"indicators of {spec.name}", lambda spec=spec: run(spec)))
    steps.append(("paper-trading runner step and replay span", runner_step))
    steps.append(("sweep rows (the fused loop of rows without stops or limits)", sweep_rows))
    steps.append(("portfolio book: backtest loop, tables and runner step", portfolio_book))
    return steps


def portfolio_book() -> None:
    """Compile the book kernel's loop, its tables and the portfolio bots' step."""
    import numpy as np

    from research.kernels.portfolio import step_book
    from research.kernels.portfolio_records import (
        MAX_FILLS_PER_MARKET,
        make_book_config,
        new_book,
        new_book_fills,
    )
    from research.panel import align
    from research.portfolio.backtest import backtest_portfolio
    from research.types import Costs, Stops
    from strategies.portfolio_registry import get_portfolio

    panel = align(
        {
            name: synthetic_bars(WARMUP_BARS // 4, seed)
            for seed, name in enumerate(("A/USDT", "B/USDT", "C/USDT"))
        }
    )
    result = backtest_portfolio(
        get_portfolio("momentum_rotation"), panel, {"window": 24}, Costs(0.001, 1.0)
    )
    result.trades, result.fills, result.markets  # noqa: B018 - reading the tables compiles their kernels
    config = make_book_config(Costs(0.001, 1.0), Stops(stop_loss=0.02))
    book, legs = new_book(10_000.0, 3)
    fills = new_book_fills(MAX_FILLS_PER_MARKET * 3)
    for i in range(3):
        prices = [
            np.ascontiguousarray(getattr(panel, name)[i])
            for name in ("open", "high", "low", "close")
        ]
        _, book = step_book(
            book, legs, config, int(panel.ts[i]), *prices, np.full(3, 1.0 / 3), fills
        )


def synthetic_bars(n: int, seed: int = 0):
    """``n`` hourly bars of a seeded random walk, as writable float64 arrays (the argument
    types :func:`research.load_bars` gives the kernels)."""
    import numpy as np

    from research.types import Bars

    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.005, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.uniform(1.0, 10.0, n)
    hour = 3_600_000
    ts = (1_600_000_000_000 // hour + np.arange(1, n + 1, dtype=np.int64)) * hour
    return Bars(ts, open_, high, low, close, volume, hour)


@contextmanager
def compile_notice(after: float = 3.0, stream=None) -> Iterator[None]:
    """Print one line to ``stream`` (stderr) if the block is still running after ``after``
    seconds (the kernels are being compiled: a fresh install without ``candela warmup``, or
    edited kernels), and how long it took once it is done."""
    stream = stream or sys.stderr
    started = time.perf_counter()
    shown = threading.Event()

    def notice() -> None:
        shown.set()
        print(
            "compiling Candela's kernels for this machine (first run only; 'candela warmup' "
            "does it ahead of time) ...",
            file=stream,
            flush=True,
        )

    timer = threading.Timer(after, notice)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if shown.is_set():
            print(f"... done in {time.perf_counter() - started:.1f} s", file=stream, flush=True)
