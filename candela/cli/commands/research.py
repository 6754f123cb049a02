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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError, user_errors
from candela.cli.commands.exports import write_atomically, write_exports
from candela.cli.commands.parsing import (
    format_params,
    make_params,
    parse_assignments,
    parse_grid,
    resolve_strategy,
    time_text,
    to_ms,
)

SUMMARY_STATS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trade_count",
    "win_rate",
    "profit_factor",
    "exposure",
    "excess_return",
)


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
    _market_arguments(backtest, required=False)
    backtest.add_argument(
        "--symbols",
        default=None,
        metavar="A,B,...",
        help="backtest a portfolio strategy over these markets as one book (instead of "
        "--symbol), e.g. --strategy momentum_rotation --symbols BTC/USDT,ETH/USDT",
    )
    _run_arguments(backtest)
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
    _market_arguments(sweep)
    _run_arguments(sweep)
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
    sweep.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores)")
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
    sweep.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster of this scheduler (tcp://HOST:8786; needs "
        "the distributed extra)",
    )
    sweep.set_defaults(handler=_sweep)

    report = commands.add_parser(
        "report", help="execute the report notebook with papermill into out/ (HTML if possible)"
    )
    _market_arguments(report, required=False)
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
        "--n-jobs", type=int, default=1, help="with --sweep: worker processes (-1: all cores)"
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


def _market_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--strategy",
        required=required,
        default=None,
        help="strategy: a name (see 'candela strategies list') or module:ATTRIBUTE",
    )
    parser.add_argument(
        "--exchange", required=required, default=None, help="exchange id, e.g. binance"
    )
    parser.add_argument(
        "--symbol", required=required, default=None, help="unified symbol, e.g. BTC/USDT"
    )
    parser.add_argument(
        "--timeframe", required=required, default=None, help="bar timeframe, e.g. 1h"
    )
    parser.add_argument("--start", default=None, help="first bar close time (ISO date/time, UTC)")
    parser.add_argument("--end", default=None, help="last bar close time (ISO date/time, UTC)")
    parser.add_argument(
        "--resample",
        default=None,
        metavar="TIMEFRAME",
        help="aggregate the bars to a coarser timeframe first, e.g. 4h",
    )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    # None marks "not given" (``backtest --bot`` takes them from the file); see _run_settings
    parser.add_argument(
        "--fee",
        type=float,
        default=None,
        help=f"fee as a fraction of notional (default: {DEFAULT_FEE} = 0.1 %%)",
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=None,
        help="slippage in basis points against the trader (default: 0)",
    )
    parser.add_argument(
        "--cash",
        type=float,
        default=None,
        help=f"initial cash in the quote currency (default: {DEFAULT_CASH:.0f})",
    )


DEFAULT_FEE, DEFAULT_SLIPPAGE_BPS, DEFAULT_CASH = 0.001, 0.0, 10_000.0


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
    bars = _load_bars(
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
        f"{run.title} on {_market(run.market, arguments.resample)}: {len(result.ts):,} bars"
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
    costs, cash = _run_settings(arguments, spec)
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
    from runner.ledger import bot_row, changed_fields, stored_config

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


def _run_settings(arguments: argparse.Namespace, spec) -> tuple[Any, float]:
    """Costs and initial cash of the command line, validated (defaults for those not given)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.kernels.records import make_config
    from research.types import Costs, RiskLimits

    fee = DEFAULT_FEE if arguments.fee is None else arguments.fee
    slippage = DEFAULT_SLIPPAGE_BPS if arguments.slippage_bps is None else arguments.slippage_bps
    cash = DEFAULT_CASH if arguments.cash is None else arguments.cash
    costs = Costs(fee_rate=fee, slippage_bps=slippage)
    with user_errors(ValueError):
        make_config(costs, spec.stops, RiskLimits())
    if not (math.isfinite(cash) and cash > 0):
        raise CommandError(f"--cash must be a positive amount of quote currency, got {cash:g}")
    return costs, cash


def _sweep(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import format_frame
    from research.metrics import DEFAULT_MIN_TRADES
    from research.sweeps import sweep

    spec = resolve_strategy(arguments.strategy)
    fixed = parse_assignments(arguments.param)
    grid: dict[str, list[Any]] = {name: [value] for name, value in fixed.items()}
    grid.update(parse_grid(arguments.grid) if arguments.grid else dict(spec.sweep))
    if not grid:
        raise CommandError(
            f"strategy {spec.name!r} declares no sweep ranges: pass --grid NAME=SPEC"
        )
    costs, cash = _run_settings(arguments, spec)
    min_trades = DEFAULT_MIN_TRADES if arguments.min_trades is None else arguments.min_trades
    if min_trades < 0:
        raise CommandError(f"--min-trades must be 0 or more, got {min_trades}")
    market = (arguments.exchange, arguments.symbol, arguments.timeframe)
    bars = _load_bars(
        arguments.database_url,
        market,
        to_ms(arguments.start),
        to_ms(arguments.end),
        arguments.resample,
    )
    _check_sweep(spec, bars, grid, arguments)
    from candela.cli.commands.validation import _engine_options
    from research.validation.reading import read_overfitting

    stored = None if arguments.no_store else (arguments.database_url or True)
    result = sweep(
        spec,
        bars,
        grid,
        costs,
        initial_cash=cash,
        sample=arguments.sample,
        seed=arguments.seed,
        metric=arguments.metric,
        keep_best=0,
        progress=not arguments.no_progress,
        oos_fraction=arguments.oos_fraction,
        min_trades=min_trades,
        store=stored,
        market=None
        if arguments.resample
        else dict(zip(("exchange", "symbol", "timeframe"), market, strict=True)),
        **_engine_options(arguments),
    )
    if result.n_evaluated == 0:
        raise CommandError(
            _none_valid(spec, result.n_combinations, result.invalid_reasons, len(bars))
        )
    print(
        f"{spec.name} on {_market(market, arguments.resample)} ({len(bars):,} bars): "
        f"{result.n_evaluated} parameter sets evaluated of {result.n_combinations} "
        f"combinations ({result.n_invalid} invalid)"
    )
    best = result.best(arguments.top)
    print(
        f"best {len(best)} by {result.metric}, among the parameter sets with at least "
        f"{min_trades} closed trades ({result.n_too_few_trades} had fewer; --min-trades):"
    )
    columns = list(result.param_names) + [c for c in SUMMARY_STATS if c in best.columns]
    columns += [
        f"oos_{c}" for c in ("total_return", "sharpe", "max_drawdown") if f"oos_{c}" in best.columns
    ]
    if len(best):
        print(format_frame(best[columns], scale=cash).to_string(index=False))
    if result.overfitting is not None:
        print("\n" + read_overfitting(result.overfitting))
    if result.sweep_id is not None:
        print(
            f"\nstored as sweep {result.sweep_id[:8]} (candela sweeps list; candela report "
            f"--sweep {result.sweep_id[:8]})"
        )
    if arguments.csv:
        path = Path(arguments.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temporary: result.frame.to_csv(temporary, index=False))
        print(f"\nall rows written to {path}")
    return 0


def _check_sweep(spec, bars, grid: dict[str, list[Any]], arguments: argparse.Namespace) -> None:
    """Refuse, before any backtest, what the sweep would refuse: the options, the grid's names,
    a grid without a valid combination, a metric that is not a stat."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.metrics import STAT_NAMES
    from research.sweeps import normalize_grid, valid_combinations

    if arguments.n_jobs == 0:
        raise CommandError("--n-jobs must be a positive number of workers or -1 (all cores), got 0")
    if arguments.sample is not None and arguments.sample < 1:
        raise CommandError(
            f"--sample must be a positive number of combinations, got {arguments.sample}"
        )
    shortest = len(bars)
    if arguments.oos_fraction is not None:
        held_out = round(len(bars) * arguments.oos_fraction)
        if not 0 < arguments.oos_fraction < 1 or not 1 <= held_out < len(bars):
            raise CommandError(
                f"--oos-fraction must leave bars on both sides, e.g. 0.3; got "
                f"{arguments.oos_fraction:g} of {len(bars)} bars"
            )
        shortest = min(held_out, len(bars) - held_out)
    metrics = set(STAT_NAMES) | {f"oos_{name}" for name in STAT_NAMES}
    if arguments.metric not in metrics:
        raise CommandError(
            f"--metric {arguments.metric!r} is not a stat; choose one of {', '.join(STAT_NAMES)}"
        )
    with user_errors(ValueError):
        candidates, total, reasons = valid_combinations(spec, normalize_grid(spec, grid))
    if not candidates:
        raise CommandError(_none_valid(spec, total, reasons, shortest))


def _none_valid(spec, total: int, reasons: dict[str, int], n_bars: int) -> str:
    listed = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
    return (
        f"none of the {total} combinations of the grid is valid for strategy {spec.name!r} "
        f"on {n_bars} bars ({listed}); widen the grid or load more bars"
    )


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
        _market_checks(arguments.exchange, arguments.symbol, arguments.timeframe)
    if arguments.notebook is not None and not Path(arguments.notebook).is_file():
        raise CommandError(f"--notebook {arguments.notebook}: no such notebook file")
    # the user's mistakes (market, dates, resampling, too few bars) end here, in one line,
    # before the notebook runs
    market = (arguments.exchange, arguments.symbol, arguments.timeframe)
    bars = _load_bars(
        arguments.database_url,
        market,
        to_ms(arguments.start),
        to_ms(arguments.end),
        arguments.resample,
    )
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


def _market_checks(exchange: str, symbol: str, timeframe: str) -> None:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.markets import validate_exchange, validate_symbol
    from candela.core.timeframes import timeframe_to_ms

    validate_exchange(exchange)
    validate_symbol(symbol)
    timeframe_to_ms(timeframe)


def format_stats(stats) -> str:
    """The stats as aligned ``name  value  basis`` lines (:func:`research.formatting.stats_text`)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import stats_text

    return stats_text(stats)


# --------------------------------------------------------------------------- loading


def _load_bars(
    database_url: str | None,
    market: tuple[str, str, str],
    start_ms: int | None,
    end_ms: int | None,
    resample: str | None = None,
    *,
    history: int = 0,
):
    """The stored bars of ``market`` in the period, aggregated to ``resample`` if given, with
    up to ``history`` bars (of the final timeframe) before ``start_ms``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from candela.core.timeframes import timeframe_to_ms
    from research.data import load_bars
    from research.data import resample as resample_bars

    if history and resample:
        with user_errors(ValueError):  # an unknown timeframe
            ratio = -(-timeframe_to_ms(resample) // timeframe_to_ms(market[2]))
        history = (history + 1) * ratio  # whole coarse bars, the first one possibly partial
    engine = connect(database_url)
    try:
        with user_errors(ValueError):  # a malformed market, or no bars stored in that period
            bars = load_bars(engine, *market, start_ms, end_ms, history=history)
    finally:
        engine.dispose()
    if resample:
        with user_errors(ValueError):  # an unknown or finer timeframe
            coarse = resample_bars(bars, resample)
        if len(coarse) == 0:
            raise CommandError(
                f"no whole {resample} bar in the {len(bars)} {market[2]} bars of "
                "that period: widen --start/--end"
            )
        return coarse
    return bars


def _market(market: tuple[str, str, str], resample: str | None) -> str:
    """``exchange symbol timeframe``, with the resampling if any."""
    text = " ".join(market)
    return text + (f" resampled to {resample}" if resample else "")
