"""``candela bots create ID --portfolio REF --exchange E --timeframe T --symbols A,B,...``: promote
a portfolio strategy to a portfolio bot.

The steps of :mod:`candela.cli.commands.bots_create`, on the universe: the options make a
portfolio bot config validated like a file (:mod:`runner.portfolio_config`); the id is new; the
universe's panel of stored bars is long enough; the portfolio look-ahead and history-window
checks (:mod:`research.portfolio.checks`) pass on its last ``--check-bars`` grid bars; then the
config is written in one step. Nothing is written if a step fails.
"""

from __future__ import annotations

import argparse
from typing import Any

from candela.cli.commands import CommandError, user_errors

SINGLE_MARKET_OPTIONS = ("strategy", "symbol", "max_position")
STOP_NAMES = ("stop_loss", "take_profit", "trailing_stop")


def create_book(arguments: argparse.Namespace) -> int:
    """Check and write the portfolio bot of the options; returns the exit status."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.bots_create import promote, start_value
    from candela.cli.commands.parsing import parse_assignments

    given = [
        f"--{name.replace('_', '-')}"
        for name in SINGLE_MARKET_OPTIONS
        if getattr(arguments, name) is not None
    ]
    if given:
        raise CommandError(
            f"{', '.join(given)} are for a one-market bot; a portfolio bot takes --portfolio "
            "and --symbols: drop them"
        )
    if arguments.portfolio is None or arguments.symbols is None:
        raise CommandError("a portfolio bot needs --portfolio REF and --symbols A,B,...")
    data = _config_data(arguments, parse_assignments(arguments.param))
    if arguments.start is not None:
        data["start"] = start_value(arguments.start)
    return promote(
        arguments, data, lambda config: _run_checks(config, _checked_panel(arguments, config))
    )


def _config_data(arguments: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """The portfolio bot config (as in a file) of the options; unset limits keep defaults."""
    symbols = [symbol.strip() for symbol in arguments.symbols.split(",") if symbol.strip()]
    limits = {
        "max_weight": arguments.max_weight,
        "max_gross": arguments.max_gross,
        "min_notional": arguments.min_notional,
    }
    data: dict[str, Any] = {
        "id": arguments.bot_id,
        "portfolio": arguments.portfolio,
        "params": params,
        "universe": {
            "exchange": arguments.exchange,
            "timeframe": arguments.timeframe,
            "symbols": symbols,
        },
        "initial_cash": arguments.cash,
        "costs": {"fee_rate": arguments.fee, "slippage_bps": arguments.slippage_bps},
        "limits": {
            **{name: value for name, value in limits.items() if value is not None},
            "daily_loss_limit": arguments.daily_loss_limit,
            "max_drawdown": arguments.max_drawdown,
        },
        "description": arguments.description,
    }
    stops = {name: getattr(arguments, name) for name in STOP_NAMES if hasattr(arguments, name)}
    if stops:
        data["stops"] = stops
    return data


def _checked_panel(arguments: argparse.Namespace, config):
    """The universe's last stored grid bars for the checks; refuse too few."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.parsing import format_params
    from candela.core.db import connect
    from research.portfolio.universe import load_universe

    params = config.spec.make_params(config.params)
    engine = connect(arguments.database_url)
    try:
        with user_errors(ValueError):  # a market not stored, markets without a common span
            panel = load_universe(engine, config.exchange, config.timeframe, list(config.symbols))
    finally:
        engine.dispose()
    needed = config.spec.lookback(params) + 2
    if len(panel) < needed:
        raise CommandError(
            f"the universe {config.exchange} {config.timeframe} ({', '.join(config.symbols)}) "
            f"has {len(panel)} grid bars, but checking {config.spec.name} with "
            f"{format_params(params)} needs at least {needed} (look-back + 2): import or "
            "backfill more bars or use shorter parameters; nothing written"
        )
    history = config.spec.history_window(params, config.timeframe_ms)
    return panel[-max(arguments.check_bars, history + needed) :]


def _run_checks(config, panel) -> None:
    """Run the portfolio checks, print their reports; refuse (nothing written) if one fails."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.bots_create import report_checks
    from candela.cli.commands.parsing import format_params
    from research.portfolio.checks import portfolio_history_check, portfolio_lookahead

    spec, params = config.spec, config.spec.make_params(config.params)
    report_checks(
        config.bot_id,
        f"checking {spec.name} {format_params(params)} on the last {len(panel)} grid bars of "
        f"{config.exchange} {config.timeframe} ({', '.join(config.symbols)}):",
        (check(spec, panel, params) for check in (portfolio_lookahead, portfolio_history_check)),
    )
