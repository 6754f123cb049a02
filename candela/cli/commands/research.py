"""``candela backtest``, ``candela sweep`` and ``candela report``: research from the shell.

Strategy names are resolved here, at the roof (:mod:`candela.cli.commands.parsing`), because
research's upper layers receive strategies as arguments and never import them. A portfolio
backtest (``--symbols`` or a portfolio bot's ``--bot``) is :mod:`candela.cli.commands.book_backtest`;
the files it writes are :mod:`candela.cli.commands.exports`.

Examples::

    candela backtest --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --param fast=10 --param slow=50 --fee 0.001 --html out/backtest.html
    candela sweep --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --grid fast=5:50:5 --grid slow=20:200:20 --n-jobs 2
    candela report --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError, user_errors
from candela.cli.commands.exports import write_exports
from candela.cli.commands.parsing import (
    format_params,
    make_params,
    parse_assignments,
    resolve_strategy,
    time_text,
    to_ms,
)
from candela.cli.commands.run_inputs import (
    command_line_bars,
    load_market_bars,
    market_arguments,
    market_checks,
    market_text,
    parallel_arguments,
    run_arguments,
    run_settings,
)
from candela.cli.commands.sweep_command import run_sweep


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backtest``, ``sweep`` and ``report`` to the top-level commands."""
    backtest = commands.add_parser(
        "backtest",
        help="backtest one strategy (or a bot's config) on stored bars; print stats "
        "and the last trades",
    )
    backtest.add_argument(
        "--bot",
        default=None,
        metavar="FILE",
        help="backtest exactly what this bot config trades: its strategy, "
        "parameters, market, costs, stops, risk limits, cash and start",
    )
    market_arguments(backtest, required=False)
    backtest.add_argument(
        "--symbols",
        default=None,
        metavar="A,B,...",
        help="backtest a portfolio strategy over these markets as one book (instead of "
        "--symbol), e.g. --strategy momentum_rotation --symbols BTC/USDT,ETH/USDT",
    )
    run_arguments(backtest)
    backtest.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter (repeatable), e.g. --param fast=10",
    )
    backtest.add_argument(
        "--trades",
        type=int,
        default=10,
        metavar="N",
        help="how many of the last trades to print (default: 10)",
    )
    backtest.add_argument(
        "--html",
        default=None,
        metavar="PATH",
        help="also write the chart as a standalone offline HTML file",
    )
    backtest.add_argument(
        "--csv",
        default=None,
        metavar="DIR",
        help="also write stats.csv, trades.csv, fills.csv and equity.csv "
        "into DIR (fractions, ISO times in UTC, durations in ms)",
    )
    backtest.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the run, its stats and its trades as JSON",
    )
    backtest.set_defaults(handler=_backtest)

    sweep = commands.add_parser(
        "sweep", help="backtest a strategy over a parameter grid; print the best parameter sets"
    )
    market_arguments(sweep)
    run_arguments(sweep)
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fixed strategy parameter (repeatable)",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="swept parameter (repeatable): NAME=START:STOP:STEP (STOP included) "
        "or NAME=V1,V2,...; default: the strategy's own sweep ranges",
    )
    sweep.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="evaluate a random subset of N valid combinations",
    )
    sweep.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    sweep.add_argument("--metric", default="sharpe", help="stat to rank by (default: sharpe)")
    sweep.add_argument("--top", type=int, default=10, help="rows to print (default: 10)")
    sweep.add_argument(
        "--min-trades",
        type=int,
        default=None,
        metavar="N",
        help="rank only parameter sets with at least N closed trades (default: 10; 0 ranks all)",
    )
    sweep.add_argument(
        "--oos-fraction",
        type=float,
        default=None,
        metavar="F",
        help="hold out the last F of the bars (e.g. 0.3): rank on the rest, report oos_ stats too",
    )
    sweep.add_argument("--csv", default=None, metavar="PATH", help="also write every row as CSV")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.add_argument(
        "--no-store",
        action="store_true",
        help="do not keep the rows in the database (by default they are stored "
        "as they finish: a killed sweep run again computes only what is "
        "missing)",
    )
    parallel_arguments(sweep)
    sweep.set_defaults(handler=run_sweep)

    report = commands.add_parser(
        "report", help="execute the report notebook with papermill into out/ (HTML if possible)"
    )
    market_arguments(report, required=False)
    report.add_argument(
        "--sweep",
        default=None,
        metavar="ID",
        help="report a stored sweep instead (candela sweeps list): parameter "
        "surface, deflated Sharpe ratio and PBO, walk-forward, CPCV",
    )
    report.add_argument(
        "--windows",
        type=int,
        default=5,
        metavar="N",
        help="with --sweep: walk-forward test windows (default: 5)",
    )
    report.add_argument(
        "--cv-folds",
        type=int,
        default=6,
        metavar="N",
        help="with --sweep: CPCV groups (default: 6)",
    )
    report.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="with --sweep: workers (threads for rows without stops or limits, else processes; -1: all cores)",
    )
    report.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter (repeatable)",
    )
    report.add_argument("--fee", type=float, default=0.001, help="fee rate (default: 0.001)")
    report.add_argument("--slippage-bps", type=float, default=0.0, help="slippage in bps")
    report.add_argument("--out", default="out", help="output folder (default: out/)")
    report.add_argument(
        "--notebook",
        default=None,
        metavar="PATH",
        help="report notebook (default: notebooks/02_report.ipynb)",
    )
    report.set_defaults(handler=_report)


# --------------------------------------------------------------------------- handlers


@dataclass(frozen=True)
class _Backtest:
    """Everything one backtest needs, from the command line or from a bot config."""

    title: str
    spec: Any
    params: Any
    market: tuple[str, str, str]
    costs: Any
    stops: Any
    risk: Any
    initial_cash: float
    start_ms: int | None  # first bar to trade (the earlier ones are history only)
    end_ms: int | None
    note: str = ""


def _backtest(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli import strategy_model as model
    from candela.cli.commands.book_backtest import backtest_book, wants_book
    from candela.cli.commands.warmup import compile_notice
    from research.formatting import stats_text, trades_table

    config = _bot_config(arguments) if arguments.bot else None
    if wants_book(arguments, config):
        return backtest_book(arguments, config)
    run = _bot_backtest(arguments, config) if config else _command_line_backtest(arguments)
    # the strategy's history window before the start is loaded too: history only, not traded
    history = model.history_window(run.spec, run.params) if run.start_ms is not None else 0
    bars = load_market_bars(
        arguments.database_url,
        run.market,
        run.start_ms,
        run.end_ms,
        arguments.resample,
        history=history,
    )
    if run.start_ms is not None and bars.ts[-1] < run.start_ms:
        raise CommandError(
            f"no stored bar closes at or after the start {time_text(run.start_ms)}: "
            "import more bars or pick an earlier start"
        )
    model.lookback(run.spec, run.params)  # the strategy's code runs: its errors keep a traceback
    with user_errors(ValueError):
        run.spec.check_enough_bars(len(bars), run.params)
    with compile_notice():
        result = model.backtest_from(
            run.spec,
            bars,
            run.params,
            run.costs,
            stops=run.stops,
            risk=run.risk,
            initial_cash=run.initial_cash,
            start_ts=run.start_ms,
        )
    earlier = len(bars) - len(result.ts)
    print(
        f"{run.title} on {market_text(run.market, arguments.resample)}: {len(result.ts):,} bars"
        + (f" (and {earlier:,} before them as history)" if earlier else "")
        + f"; fee {100 * run.costs.fee_rate:g} %, slippage {run.costs.slippage_bps:g} bp"
        + run.note
    )
    print(
        "(returns and rates in %, amounts in the quote currency; the basis of each figure "
        "follows it)\n"
    )
    print(stats_text(result.stats))
    trades = result.trades
    print(f"\nlast {min(arguments.trades, len(trades))} of {len(trades)} trades:")
    if len(trades) and arguments.trades > 0:
        table = trades_table(trades.tail(arguments.trades), scale=result.initial_cash)
        print(table.to_string(index=False))
    exchange, symbol, timeframe = run.market
    market = {"exchange": exchange, "symbol": symbol, "timeframe": arguments.resample or timeframe}
    write_exports(arguments, result, market=market, costs=run.costs)
    return 0


def _command_line_backtest(arguments: argparse.Namespace) -> _Backtest:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.types import RiskLimits

    missing = [
        f"--{name}"
        for name in ("strategy", "exchange", "symbol", "timeframe")
        if getattr(arguments, name) is None
    ]
    if arguments.strategy in _portfolio_names():
        raise CommandError(
            f"{arguments.strategy} is a portfolio strategy: give its markets with "
            "--symbols A,B,... (and --exchange, --timeframe) instead of --symbol"
        )
    if missing:
        raise CommandError(f"give {' '.join(missing)} (or --bot FILE to backtest a bot's config)")
    spec = resolve_strategy(arguments.strategy)
    params = make_params(spec, parse_assignments(arguments.param))
    costs, cash = run_settings(arguments, spec)
    return _Backtest(
        f"{spec.name} {format_params(params)}",
        spec,
        params,
        (arguments.exchange, arguments.symbol, arguments.timeframe),
        costs,
        None,
        RiskLimits(),
        cash,
        to_ms(arguments.start),
        to_ms(arguments.end),
    )


def _portfolio_names() -> list[str]:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from strategies.portfolio_registry import portfolio_names

    return portfolio_names()


def _bot_config(arguments: argparse.Namespace):
    """The bot config of ``--bot`` (one market or a portfolio), refusing the options it sets."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from runner.config import BotConfigError, load_bot_config

    given = [
        option
        for option, value in (
            ("--strategy", arguments.strategy),
            ("--exchange", arguments.exchange),
            ("--symbol", arguments.symbol),
            ("--symbols", arguments.symbols),
            ("--timeframe", arguments.timeframe),
            ("--param", arguments.param or None),
            ("--fee", arguments.fee),
            ("--slippage-bps", arguments.slippage_bps),
            ("--cash", arguments.cash),
            ("--resample", arguments.resample),
        )
        if value is not None
    ]
    if given:
        raise CommandError(
            f"--bot takes the strategy, parameters, market, costs, stops, risk "
            f"limits and cash from {arguments.bot}: drop {', '.join(given)}"
        )
    with user_errors(BotConfigError, FileNotFoundError, IsADirectoryError):
        return load_bot_config(arguments.bot)


def _bot_backtest(arguments: argparse.Namespace, config) -> _Backtest:
    """The backtest of the single-market bot ``config`` (``--bot``): its strategy, parameters,
    market, costs, stops, risk limits, cash, and its start (the config's, else its first
    recorded decision, else the first stored bar; ``--start`` overrides)."""
    params = make_params(config.spec, config.params)
    start, note = bot_start(arguments, config, "the first stored bar")
    title = (
        f"bot {config.bot_id} (version {config.version}): {config.spec.name} "
        f"{format_params(params)}"
    )
    return _Backtest(
        title,
        config.spec,
        params,
        config.market,
        config.costs,
        config.stops,
        config.risk,
        config.initial_cash,
        start,
        to_ms(arguments.end),
        note,
    )


def bot_start(arguments: argparse.Namespace, config, first_bar: str) -> tuple[int | None, str]:
    """Where the backtest of a bot config starts, and a note saying why: ``--start``, else the
    config's start, else the bot's first recorded decision under this config, else the first
    bar (``first_bar`` names it)."""
    start, origin = to_ms(arguments.start), "--start"
    if start is None and config.start is not None:
        start, origin = config.start, "the config's start"
    if start is None:
        start = first_decision(arguments.database_url, config)
        origin = "the bot's first recorded decision"
    if start is None:
        origin = first_bar
    return (
        start,
        f"; trading from {time_text(start) if start is not None else 'the first bar'} ({origin})",
    )


def first_decision(database_url: str | None, config) -> int | None:
    """Close time of the first decision the bot recorded under this very config, if any."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from sqlalchemy import func, select

    from candela.core import schema
    from candela.core.db import connect
    from runner.registry import bot_row, changed_fields, stored_config

    engine = connect(database_url)
    try:
        with engine.connect() as connection:
            row = bot_row(connection, config.bot_id)
            if row is None or changed_fields(stored_config(row.config_json), config.to_dict()):
                return None  # never run, or its records belong to another config
            return connection.execute(
                select(func.min(schema.signals.c.ts)).where(
                    schema.signals.c.bot_id == config.bot_id
                )
            ).scalar()
    finally:
        engine.dispose()


def _report(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.report import run_report

    if arguments.sweep is not None:
        from candela.cli.commands.validation import report_sweep

        return report_sweep(arguments)
    missing = [
        f"--{name}"
        for name in ("strategy", "exchange", "symbol", "timeframe")
        if getattr(arguments, name) is None
    ]
    if missing:
        raise CommandError(f"give {' '.join(missing)} (or --sweep ID to report a stored sweep)")
    spec = resolve_strategy(arguments.strategy)
    params = make_params(spec, parse_assignments(arguments.param))
    with user_errors(ValueError):
        market_checks(arguments.exchange, arguments.symbol, arguments.timeframe)
    if arguments.notebook is not None and not Path(arguments.notebook).is_file():
        raise CommandError(f"--notebook {arguments.notebook}: no such notebook file")
    # the user's mistakes (market, dates, resampling, too few bars) end here, in one line,
    # before the notebook runs
    _, bars = command_line_bars(arguments)
    spec.lookback(params)  # the strategy's code runs: its errors keep their traceback
    with user_errors(ValueError):
        spec.check_enough_bars(len(bars), params)
    files = run_report(
        arguments.strategy,
        params._asdict(),
        arguments.exchange,
        arguments.symbol,
        arguments.timeframe,
        start=arguments.start,
        end=arguments.end,
        fee=arguments.fee,
        slippage_bps=arguments.slippage_bps,
        database_url=arguments.database_url,
        out_dir=arguments.out,
        notebook=arguments.notebook,
        resample=arguments.resample,
    )
    print(f"report notebook written to {files.notebook}")
    if files.html is not None:
        print(f"report HTML written to {files.html}")
    return 0
