"""Demo step: backtest a strategy on the sample, chart it to offline HTML, run a small sweep.

The previous step imported the bundled sample into ``context.engine``. This step picks the
sample's Binance BTC/USDT 1h bars (or, failing that, the longest hourly-or-slower market),
backtests the SMA cross, prints its stats and last trades, writes the chart to
``<out>/backtest.html`` (plotly.js embedded, so it opens offline), then sweeps the two SMA
windows over a small grid and prints the best rows.
"""

from __future__ import annotations

import time

from candela.cli.commands import CommandError
from candela.cli.commands.run_inputs import SUMMARY_STATS, format_stats
from candela.core.timeframes import timeframe_to_ms
from research.backtesting import backtest
from research.data import inventory, load_bars
from research.formatting import format_frame, trades_table
from research.sweeps import sweep
from research.types import Costs
from strategies.registry import get_strategy

TITLE = "research: backtest, offline chart, parameter sweep"

PREFERRED_MARKET = ("binance", "BTC/USDT", "1h")
STRATEGY = "sma_cross"
PARAMS = {"fast": 10, "slow": 50}
SWEEP_GRID = {"fast": range(5, 40, 5), "slow": range(20, 140, 20)}


def run(context) -> None:
    """Run the step on ``context.engine``; files go to ``context.out_dir``."""

    exchange, symbol, timeframe = choose_market(inventory(context.engine))
    bars = load_bars(context.engine, exchange, symbol, timeframe)
    spec = get_strategy(STRATEGY)
    params = spec.make_params(PARAMS)
    costs = Costs(fee_rate=0.001, slippage_bps=1.0)

    started = time.perf_counter()
    result = backtest(spec, bars, params, costs)
    elapsed = time.perf_counter() - started
    print(
        f"{spec.name} {dict(params._asdict())} on {exchange} {symbol} {timeframe}: "
        f"{len(bars)} bars, fee 0.1 %, slippage 1 bp ({elapsed:.2f} s incl. compile)"
    )
    print(format_stats(result.stats))
    columns = [
        c
        for c in (
            "entry_time",
            "exit_time",
            "side",
            "entry_price",
            "exit_price",
            "pnl",
            "return",
            "exit_reason",
        )
        if c in result.trades.columns
    ]
    print(f"\nlast 3 of {len(result.trades)} trades:")
    print(
        trades_table(result.trades[columns].tail(3), scale=result.initial_cash).to_string(
            index=False
        )
    )

    path = context.out_dir / "backtest.html"
    result.plot().write_html(path, include_plotlyjs=True)
    print(f"\nchart (opens offline): {path}")

    started = time.perf_counter()
    table = sweep(spec, bars, SWEEP_GRID, costs, n_jobs=1, keep_best=3, progress=False)
    elapsed = time.perf_counter() - started
    print(
        f"\nsweep fast x slow: {table.n_evaluated} parameter sets "
        f"({table.n_invalid} invalid) in {elapsed:.2f} s; best 5 by sharpe among "
        f"those with at least {table.min_trades} trades:"
    )
    best = table.best(5)
    columns = list(table.param_names) + [name for name in SUMMARY_STATS if name in best.columns]
    print(format_frame(best[columns], scale=result.initial_cash).to_string(index=False))


def choose_market(markets) -> tuple[str, str, str]:
    """Return the preferred market if stored, else the one with most bars at 1h or slower.

    Raises
    ------
    CommandError
        If the database holds no bars (run the foundation step or ``candela data import``).
    """
    if markets is None or len(markets) == 0:
        raise CommandError(
            "the database holds no bars: import the sample first "
            "('candela demo' does it in its first step)"
        )
    rows = list(markets[["exchange", "symbol", "timeframe", "bars"]].itertuples(index=False))
    for exchange, symbol, timeframe, _ in rows:
        if (exchange, symbol, timeframe) == PREFERRED_MARKET:
            return PREFERRED_MARKET
    hourly = [row for row in rows if timeframe_to_ms(row[2]) >= 3_600_000] or rows
    exchange, symbol, timeframe, _ = max(hourly, key=lambda row: row[3])
    return exchange, symbol, timeframe
