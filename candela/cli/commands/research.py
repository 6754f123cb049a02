"""``candela backtest``, ``candela sweep`` and ``candela report``: research from the shell.

This is the one place that resolves strategy names (via :mod:`strategies.registry`), because
research's upper layers receive strategies as arguments and never import them.

Examples::

    candela backtest --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --param fast=10 --param slow=50 --fee 0.001 --html out/backtest.html
    candela sweep --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --grid fast=5:50:5 --grid slow=20:200:20 --n-jobs 2
    candela report --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError

SUMMARY_STATS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trade_count",
                 "win_rate", "profit_factor", "exposure")
PERCENT_STATS = frozenset({"total_return", "cagr", "annual_volatility", "max_drawdown",
                           "win_rate", "exposure"})


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backtest``, ``sweep`` and ``report`` to the top-level commands."""
    backtest = commands.add_parser(
        "backtest", help="backtest one strategy on stored bars; print stats and the last trades")
    _market_arguments(backtest)
    _run_arguments(backtest)
    backtest.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="strategy parameter (repeatable), e.g. --param fast=10")
    backtest.add_argument("--trades", type=int, default=10, metavar="N",
                          help="how many of the last trades to print (default: 10)")
    backtest.add_argument("--html", default=None, metavar="PATH",
                          help="also write the chart as a standalone offline HTML file")
    backtest.set_defaults(handler=_backtest)

    sweep = commands.add_parser(
        "sweep", help="backtest a strategy over a parameter grid; print the best parameter sets")
    _market_arguments(sweep)
    _run_arguments(sweep)
    sweep.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="fixed strategy parameter (repeatable)")
    sweep.add_argument("--grid", action="append", default=[], metavar="NAME=SPEC",
                       help="swept parameter (repeatable): NAME=START:STOP:STEP (STOP included) "
                            "or NAME=V1,V2,...; default: the strategy's own sweep ranges")
    sweep.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores)")
    sweep.add_argument("--sample", type=int, default=None, metavar="N",
                       help="evaluate a random subset of N valid combinations")
    sweep.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    sweep.add_argument("--metric", default="sharpe", help="stat to rank by (default: sharpe)")
    sweep.add_argument("--top", type=int, default=10, help="rows to print (default: 10)")
    sweep.add_argument("--oos-fraction", type=float, default=None, metavar="F",
                       help="hold out the last F of the bars (e.g. 0.3): rank on the rest, "
                            "report oos_ stats too")
    sweep.add_argument("--csv", default=None, metavar="PATH", help="also write every row as CSV")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.set_defaults(handler=_sweep)

    report = commands.add_parser(
        "report", help="execute the report notebook with papermill into out/ (HTML if possible)")
    _market_arguments(report)
    report.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="strategy parameter (repeatable)")
    report.add_argument("--fee", type=float, default=0.001, help="fee rate (default: 0.001)")
    report.add_argument("--slippage-bps", type=float, default=0.0, help="slippage in bps")
    report.add_argument("--out", default="out", help="output folder (default: out/)")
    report.add_argument("--notebook", default=None, metavar="PATH",
                        help="report notebook (default: notebooks/02_report.ipynb)")
    report.set_defaults(handler=_report)


def _market_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="strategy name, e.g. sma_cross")
    parser.add_argument("--exchange", required=True, help="exchange id, e.g. binance")
    parser.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDT")
    parser.add_argument("--timeframe", required=True, help="bar timeframe, e.g. 1h")
    parser.add_argument("--start", default=None, help="first bar close time (ISO date/time, UTC)")
    parser.add_argument("--end", default=None, help="last bar close time (ISO date/time, UTC)")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fee", type=float, default=0.001,
                        help="fee as a fraction of notional (default: 0.001 = 0.1 %%)")
    parser.add_argument("--slippage-bps", type=float, default=0.0,
                        help="slippage in basis points against the trader (default: 0)")
    parser.add_argument("--cash", type=float, default=10_000.0,
                        help="initial cash in the quote currency (default: 10000)")


# --------------------------------------------------------------------------- handlers


def _backtest(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    from research.backtesting import backtest
    from research.types import Costs

    spec = resolve_strategy(arguments.strategy)
    params = spec.make_params(parse_assignments(arguments.param))
    bars = _load_bars(arguments)
    costs = Costs(fee_rate=arguments.fee, slippage_bps=arguments.slippage_bps)
    result = backtest(spec, bars, params, costs, initial_cash=arguments.cash)
    print(f"{spec.name} {_format_params(params)} on {arguments.exchange} {arguments.symbol} "
          f"{arguments.timeframe}: {len(bars)} bars")
    print(format_stats(result.stats))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        trades = result.trades
        print(f"\nlast {min(arguments.trades, len(trades))} of {len(trades)} trades:")
        if len(trades):
            print(trades.tail(arguments.trades).to_string(index=False))
    if arguments.html:
        path = Path(arguments.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.plot().write_html(path, include_plotlyjs=True)
        print(f"\nchart written to {path}")
    return 0


def _sweep(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    from research.sweeps import sweep
    from research.types import Costs

    spec = resolve_strategy(arguments.strategy)
    fixed = parse_assignments(arguments.param)
    grid: dict[str, list[Any]] = {name: [value] for name, value in fixed.items()}
    grid.update(parse_grid(arguments.grid) if arguments.grid else dict(spec.sweep))
    if not grid:
        raise CommandError(f"strategy {spec.name!r} declares no sweep ranges: pass --grid NAME=SPEC")
    bars = _load_bars(arguments)
    costs = Costs(fee_rate=arguments.fee, slippage_bps=arguments.slippage_bps)
    result = sweep(spec, bars, grid, costs, initial_cash=arguments.cash, n_jobs=arguments.n_jobs,
                   sample=arguments.sample, seed=arguments.seed, metric=arguments.metric,
                   keep_best=0, progress=not arguments.no_progress,
                   oos_fraction=arguments.oos_fraction)
    print(f"{spec.name} on {arguments.exchange} {arguments.symbol} {arguments.timeframe} "
          f"({len(bars)} bars): {result.n_evaluated} parameter sets evaluated of "
          f"{result.n_combinations} combinations ({result.n_invalid} invalid)")
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(f"best {arguments.top} by {result.metric}:")
        best = result.best(arguments.top)
        columns = list(result.param_names) + [c for c in SUMMARY_STATS if c in best.columns]
        columns += [f"oos_{c}" for c in ("total_return", "sharpe", "max_drawdown")
                    if f"oos_{c}" in best.columns]
        print(best[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if arguments.csv:
        path = Path(arguments.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.frame.to_csv(path, index=False)
        print(f"\nall rows written to {path}")
    return 0


def _report(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.report import run_report

    spec = resolve_strategy(arguments.strategy)
    params = spec.make_params(parse_assignments(arguments.param))
    files = run_report(spec.name, params._asdict(), arguments.exchange, arguments.symbol,
                       arguments.timeframe, start=arguments.start, end=arguments.end,
                       fee=arguments.fee, slippage_bps=arguments.slippage_bps,
                       database_url=arguments.database_url, out_dir=arguments.out,
                       notebook=arguments.notebook)
    print(f"report notebook written to {files.notebook}")
    if files.html is not None:
        print(f"report HTML written to {files.html}")
    return 0


def format_stats(stats) -> str:
    """Render a stats Series as aligned ``name  value`` lines: times as UTC dates, durations
    as days/hours, fractions as percentages."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    lines = []
    width = max((len(str(name)) for name in stats.index), default=0)
    for name, value in stats.items():
        if pd.isna(value):
            text = "nan"
        elif name in ("start_ts", "end_ts"):
            text = str(pd.Timestamp(int(value), unit="ms", tz="UTC"))
        elif str(name).endswith("_ms"):
            text = str(pd.Timedelta(milliseconds=float(value)).round("s"))
        elif name in PERCENT_STATS:
            text = f"{100 * float(value):.2f} %"
        elif name in ("n_bars", "trade_count"):
            text = f"{int(value)}"
        else:
            text = f"{float(value):,.4f}"
        lines.append(f"{str(name):<{width}}  {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- parsing


def resolve_strategy(name: str):
    """Return the :class:`~research.types.StrategySpec` registered as ``name``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from strategies.registry import get_strategy

    return get_strategy(name)


def parse_value(text: str) -> Any:
    """Parse ``text`` as int, float, bool (true/false) or, failing those, keep the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Parse ``["fast=10", "slow=50"]`` into ``{"fast": 10, "slow": 50}``."""
    values: dict[str, Any] = {}
    for item in items:
        name, separator, text = item.partition("=")
        if not separator or not name.strip() or not text.strip():
            raise CommandError(f"--param {item!r} is not NAME=VALUE, e.g. --param fast=10")
        values[name.strip()] = parse_value(text)
    return values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """Parse ``NAME=START:STOP:STEP`` (stop included) or ``NAME=V1,V2,...`` into value lists."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, separator, text = item.partition("=")
        name = name.strip()
        if not separator or not name or not text.strip():
            raise CommandError(f"--grid {item!r} is not NAME=START:STOP:STEP or NAME=V1,V2,...")
        if ":" in text:
            grid[name] = _parse_range(item, text)
        else:
            grid[name] = [parse_value(part) for part in text.split(",") if part.strip()]
    return grid


def _parse_range(item: str, text: str) -> list[Any]:
    parts = [parse_value(part) for part in text.split(":")]
    if len(parts) == 2:
        parts.append(1)
    if len(parts) != 3 or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                  for p in parts):
        raise CommandError(f"--grid {item!r}: the range must be START:STOP[:STEP] with numbers")
    start, stop, step = parts
    if step <= 0 or stop < start:
        raise CommandError(f"--grid {item!r}: need START <= STOP and a positive STEP")
    if all(isinstance(p, int) for p in parts):
        return list(range(start, stop + 1, step))
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 12) for i in range(count)]


def _load_bars(arguments: argparse.Namespace):
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from research.data import load_bars

    engine = connect(arguments.database_url)
    try:
        bars = load_bars(engine, arguments.exchange, arguments.symbol, arguments.timeframe,
                         _to_ms(arguments.start), _to_ms(arguments.end))
    finally:
        engine.dispose()
    if len(bars) == 0:
        raise CommandError(
            f"no {arguments.timeframe} bars of {arguments.exchange} {arguments.symbol} in the "
            "database for that period: import some with 'candela data import' or "
            "'candela data backfill' (see 'candela data inventory')")
    return bars


def _to_ms(text: str | None) -> int | None:
    if text is None:
        return None
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise CommandError(f"cannot read time {text!r}: use an ISO date such as 2024-01-31 "
                           "or 2024-01-31T12:00") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def _format_params(params: Any) -> str:
    return "(" + ", ".join(f"{key}={value}" for key, value in params._asdict().items()) + ")"
