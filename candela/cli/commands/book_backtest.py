"""``candela backtest`` of a portfolio strategy: many markets, one book.

Two ways in, as for one market:

* ``--bot FILE`` of a portfolio bot (``"portfolio"`` and ``"universe"`` keys, see
  :mod:`runner.portfolio_config`): exactly what that bot trades, from the config's start, else
  its first recorded decision, else the first grid bar; the fills are the ones its replay
  records (the parity contract of docs/architecture.md §3);
* ``--strategy NAME --exchange E --timeframe T --symbols A,B,...``: a shipped portfolio strategy
  (``candela strategies list``) or ``module:ATTRIBUTE``, with ``--param``, ``--fee``,
  ``--slippage-bps``, ``--cash``, ``--start`` and ``--end``.

It prints the book's statistics (with the equal-weight buy-and-hold book as the benchmark), a
per-market table (contribution, trades, fees, exposure, coverage) and the last trades, and
writes ``--html``, ``--csv`` (stats, trades, fills, equity, markets) and ``--json`` as the
single-market backtest does.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from candela.cli.commands import CommandError, user_errors


@dataclass(frozen=True)
class BookRun:
    """Everything one portfolio backtest needs, from the command line or from a bot config."""

    title: str
    spec: Any
    params: Any
    exchange: str
    timeframe: str
    symbols: tuple[str, ...]
    costs: Any
    stops: Any
    limits: Any
    rebalance: Any  # None: the strategy's own rule
    initial_cash: float
    start_ms: int | None
    end_ms: int | None
    note: str = ""


def wants_book(arguments: argparse.Namespace, config: Any = None) -> bool:
    """Whether this ``candela backtest`` is a portfolio backtest: ``--symbols`` was given, or
    ``config`` (the loaded ``--bot`` file) is a portfolio bot."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from runner.portfolio_config import PortfolioBotConfig

    return arguments.symbols is not None or isinstance(config, PortfolioBotConfig)


def backtest_book(arguments: argparse.Namespace, config: Any = None) -> int:
    """Run, print and export the portfolio backtest of ``config`` (a portfolio bot) or, without
    it, of the command line. Returns the exit status."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    from candela.cli.commands.exports import write_exports
    from candela.cli.commands.warmup import compile_notice
    from research.formatting import format_frame, stats_text, trades_table
    from research.portfolio.backtest import backtest_portfolio
    from research.portfolio.result import MARKET_KINDS

    run = _bot_run(arguments, config) if config is not None else _command_line_run(arguments)
    panel = _load_panel(arguments.database_url, run)
    with compile_notice():
        result = backtest_portfolio(
            run.spec,
            panel,
            run.params,
            run.costs,
            stops=run.stops,
            limits=run.limits,
            rebalance=run.rebalance,
            initial_cash=run.initial_cash,
            # a Timestamp, not the int: an int start is a grid row
            start=None if run.start_ms is None else pd.Timestamp(run.start_ms, unit="ms", tz="UTC"),
        )
    earlier = len(panel) - len(result.panel)
    print(
        f"{run.title} on {run.exchange} {run.timeframe}, {len(run.symbols)} markets "
        f"({', '.join(run.symbols)}): {len(result.panel):,} grid bars"
        + (f" (and {earlier:,} before them as history)" if earlier else "")
        + f"; fee {100 * run.costs.fee_rate:g} %, slippage {run.costs.slippage_bps:g} bp"
        + run.note
    )
    print(
        "(returns and rates in %, amounts in the quote currency; the benchmark is the "
        "equal-weight buy-and-hold book; the basis of each figure follows it)\n"
    )
    print(stats_text(result.stats))
    print(
        "\nper market (contribution: its profit, fees included, final position at its last close):"
    )
    print(format_frame(result.markets, kinds=MARKET_KINDS, scale=run.initial_cash).to_string())
    trades = result.trades
    print(f"\nlast {min(arguments.trades, len(trades))} of {len(trades)} trades:")
    if len(trades) and arguments.trades > 0:
        table = trades_table(trades.tail(arguments.trades), scale=run.initial_cash)
        print(table.to_string(index=False))
    universe = {"exchange": run.exchange, "timeframe": run.timeframe, "symbols": run.symbols}
    markets = {"markets.csv": (result.markets.reset_index(), False)}
    write_exports(arguments, result, market=universe, costs=run.costs, extra=markets)
    return 0


def _command_line_run(arguments: argparse.Namespace) -> BookRun:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.parsing import format_params, make_params, parse_assignments, to_ms
    from runner.portfolio_config import resolve_portfolio

    missing = [
        f"--{name}"
        for name in ("strategy", "exchange", "timeframe")
        if getattr(arguments, name) is None
    ]
    if missing:
        raise CommandError(f"give {' '.join(missing)} with --symbols (or --bot FILE)")
    if arguments.symbol is not None:
        raise CommandError("give either --symbol (one market) or --symbols (a portfolio), not both")
    if arguments.resample is not None:
        raise CommandError(
            "--resample is for one market; a portfolio backtest uses the stored timeframe: "
            "pick --timeframe"
        )
    symbols = tuple(symbol.strip() for symbol in arguments.symbols.split(",") if symbol.strip())
    if not symbols:
        raise CommandError("--symbols needs at least one market, e.g. --symbols BTC/USDT,ETH/USDT")
    with user_errors(ValueError):
        spec = resolve_portfolio(arguments.strategy)
    params = make_params(spec, parse_assignments(arguments.param))
    costs, stops, limits, cash = _book_settings(arguments)
    return BookRun(
        f"{spec.name} {format_params(params)}",
        spec,
        params,
        arguments.exchange,
        arguments.timeframe,
        symbols,
        costs,
        stops,
        limits,
        None,
        cash,
        to_ms(arguments.start),
        to_ms(arguments.end),
    )


def _book_settings(arguments: argparse.Namespace):
    """Costs, stops, limits and cash of the command line, validated (defaults where not given)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import math

    from candela.cli.commands.run_inputs import DEFAULT_CASH, DEFAULT_FEE, DEFAULT_SLIPPAGE_BPS
    from research.kernels.portfolio_records import BookLimits, make_book_config
    from research.types import Costs, Stops

    fee = DEFAULT_FEE if arguments.fee is None else arguments.fee
    slippage = DEFAULT_SLIPPAGE_BPS if arguments.slippage_bps is None else arguments.slippage_bps
    cash = DEFAULT_CASH if arguments.cash is None else arguments.cash
    costs, stops, limits = Costs(fee_rate=fee, slippage_bps=slippage), Stops(), BookLimits()
    with user_errors(ValueError):
        make_book_config(costs, stops, limits)
    if not (math.isfinite(cash) and cash > 0):
        raise CommandError(f"--cash must be a positive amount of quote currency, got {cash:g}")
    return costs, stops, limits, cash


def _bot_run(arguments: argparse.Namespace, config) -> BookRun:
    """The backtest of the portfolio bot ``config``: its start is the config's, else its first
    recorded decision, else the first grid bar (``--start`` overrides)."""
    from candela.cli.commands.parsing import format_params, make_params, to_ms
    from candela.cli.commands.research import bot_start

    params = make_params(config.spec, config.params)
    start, note = bot_start(arguments, config, "the first grid bar")
    return BookRun(
        f"portfolio bot {config.bot_id} (version {config.version}): {config.spec.name} "
        f"{format_params(params)}",
        config.spec,
        params,
        config.exchange,
        config.timeframe,
        tuple(config.symbols),
        config.costs,
        config.stops,
        config.limits,
        config.rebalance,
        config.initial_cash,
        start,
        to_ms(arguments.end),
        note,
    )


def _load_panel(database_url: str | None, run: BookRun):
    """The universe's panel in the period, with the strategy's history window before the
    start; refuses too few bars and a start after the last bar in one line."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from candela.core.timeframes import timeframe_to_ms
    from research.portfolio.universe import load_universe

    with user_errors(ValueError):
        timeframe_ms = timeframe_to_ms(run.timeframe)
    history = run.spec.history_window(run.params, timeframe_ms) if run.start_ms is not None else 0
    engine = connect(database_url)
    try:
        if run.start_ms is not None:
            _check_bars_after_start(engine, run)
        with user_errors(ValueError):  # a market not stored, no common span, a bad bound
            panel = load_universe(
                engine,
                run.exchange,
                run.timeframe,
                list(run.symbols),
                start=run.start_ms,
                end=run.end_ms,
                history=history,
            )
    finally:
        engine.dispose()
    with user_errors(ValueError):
        run.spec.check_enough_bars(len(panel), run.params)
    return panel


def _check_bars_after_start(engine, run: BookRun) -> None:
    """Refuse a start after the last stored bar of one of the markets, naming them."""
    from candela.cli.commands.parsing import time_text
    from research.portfolio.universe import universe_symbols

    try:
        stored = set(universe_symbols(engine, run.exchange, run.timeframe, start=run.start_ms))
    except ValueError:  # no market of the exchange and timeframe has a bar after the start
        stored = set()
    late = [symbol for symbol in run.symbols if symbol not in stored]
    if late:
        raise CommandError(
            f"no stored bar of {', '.join(late)} ({run.exchange} {run.timeframe}) closes at or "
            f"after the start {time_text(run.start_ms)}: import more bars or pick an earlier start"
        )
