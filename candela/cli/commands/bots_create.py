"""``candela bots create ID --strategy REF --exchange E --symbol S --timeframe T ...``: promote a
strategy to a paper-trading bot (``--portfolio REF --symbols A,B,...`` instead: a portfolio bot,
:mod:`candela.cli.commands.bots_create_book`).

Nothing is written unless every step passes:

1. the options make a bot config, validated exactly like a bot file (:mod:`runner.config`);
2. the id is new: no file of the bots folder uses it and the database holds no decision under
   it (a bot's config never changes once it has traded);
3. the market has enough stored bars for the checks; the most recent ``--check-bars`` of them
   are used;
4. the look-ahead check and the history-window check pass on those bars with the bot's
   parameters (a failure prints the checks' report and refuses);
5. the config is written to ``config/bots/ID.json`` (or ``--bots DIR``) in one step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError, user_errors

CHECK_BARS = 20_000
"""Default number of the most recent stored bars the checks run on."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``create`` to the ``bots`` subcommands."""
    create = sub.add_parser(
        "create",
        help="check a strategy on a market's stored bars and write a bot config",
        description="Build a bot config from the options, run the look-ahead and history-window "
        "checks of its strategy on the market's stored bars, and write the config "
        "to config/bots/ID.json only if everything passes.",
    )
    create.add_argument(
        "bot_id", metavar="ID", help="the new bot's id (letters, digits, '_', '.', '-')"
    )
    create.add_argument(
        "--strategy",
        default=None,
        help="a strategy name (see 'candela strategies list') or module:ATTRIBUTE",
    )
    create.add_argument(
        "--portfolio",
        default=None,
        metavar="REF",
        help="a portfolio strategy instead (e.g. momentum_rotation), traded as one book over "
        "--symbols",
    )
    create.add_argument("--exchange", required=True, help="exchange id, e.g. binance")
    create.add_argument("--symbol", default=None, help="unified symbol, e.g. BTC/USDT")
    create.add_argument(
        "--symbols",
        default=None,
        metavar="A,B,...",
        help="with --portfolio: the universe's markets, e.g. BTC/USDT,ETH/USDT",
    )
    create.add_argument("--timeframe", required=True, help="bar timeframe, e.g. 1h")
    create.add_argument(
        "--param",
        "--params",
        dest="param",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameters, e.g. --params fast=10 slow=50",
    )
    create.add_argument("--fee", type=float, default=0.001, help="fee rate (default: 0.001)")
    create.add_argument(
        "--slippage-bps", type=float, default=0.0, help="slippage in bps (default: 0)"
    )
    create.add_argument(
        "--cash", type=float, default=10_000.0, help="initial cash (default: 10000)"
    )
    for name, text in (
        ("stop-loss", "exit this fraction against the entry price"),
        ("take-profit", "exit this fraction in favour of the entry price"),
        ("trailing-stop", "exit this fraction below the best price since entry"),
    ):
        create.add_argument(
            f"--{name}",
            type=_fraction_or_none,
            default=argparse.SUPPRESS,
            metavar="F|none",
            help=f"{text} (default: the strategy's own stops)",
        )
    create.add_argument(
        "--max-position",
        type=float,
        default=None,
        help="largest absolute target level (default: 1.0; one market only)",
    )
    create.add_argument(
        "--max-weight",
        type=float,
        default=None,
        help="with --portfolio: largest absolute weight of one market (default: 1.0)",
    )
    create.add_argument(
        "--max-gross",
        type=float,
        default=None,
        help="with --portfolio: largest sum of absolute weights (default: 1.0)",
    )
    create.add_argument(
        "--min-notional",
        type=float,
        default=None,
        help="with --portfolio: smallest order value in the quote currency (default: 0)",
    )
    create.add_argument(
        "--daily-loss-limit",
        type=_fraction_or_none,
        default=None,
        metavar="F|none",
        help="flat for the rest of the UTC day after losing this fraction (default: none)",
    )
    create.add_argument(
        "--max-drawdown",
        type=_fraction_or_none,
        default=None,
        metavar="F|none",
        help="stop trading for good after this drawdown (default: none)",
    )
    create.add_argument(
        "--start",
        default=None,
        metavar="TIME",
        help="first bar to trade (ISO 8601 UTC or ms); default: the bars that "
        "close after the bot is first run",
    )
    create.add_argument("--description", default="", help="free text stored in the config")
    create.add_argument(
        "--bots", default=None, metavar="DIR", help="bot config folder (default: config/bots/)"
    )
    create.add_argument(
        "--check-bars",
        type=int,
        default=CHECK_BARS,
        metavar="N",
        help=f"run the checks on the last N stored bars (default: {CHECK_BARS})",
    )
    create.set_defaults(handler=_create)


def _fraction_or_none(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'none'") from None


def _create(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.parsing import parse_assignments, resolve_strategy

    if arguments.check_bars < 1:
        raise CommandError(f"--check-bars must be at least 1, got {arguments.check_bars}")
    if arguments.portfolio is not None or arguments.symbols is not None:
        from candela.cli.commands.bots_create_book import create_book

        return create_book(arguments)
    misplaced = [
        f"--{name.replace('_', '-')}"
        for name in ("max_weight", "max_gross", "min_notional")
        if getattr(arguments, name) is not None
    ]
    if misplaced:
        raise CommandError(
            f"{', '.join(misplaced)} are for a portfolio bot (--portfolio): drop them"
        )
    missing = [f"--{name}" for name in ("strategy", "symbol") if getattr(arguments, name) is None]
    if missing:
        raise CommandError(
            f"give {' and '.join(missing)} (or --portfolio REF --symbols A,B,... for a "
            "portfolio bot)"
        )
    spec = resolve_strategy(arguments.strategy)
    data = _config_data(arguments, spec, parse_assignments(arguments.param))
    return promote(
        arguments, data, lambda config: _run_checks(config, _checked_bars(arguments, config))
    )


def promote(arguments: argparse.Namespace, data: dict[str, Any], check) -> int:
    """Validate ``data`` as a bot config (one market's or a portfolio's), refuse an id in use,
    run ``check(config)`` (it raises :class:`CommandError` to refuse), then write the config
    file in one step and say how to run the bot. Returns the exit status."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.paths import BOT_CONFIG_DIR
    from runner.config import BotConfigError, parse_bot_config

    with user_errors(BotConfigError):
        config = parse_bot_config(data, source=f"bot {arguments.bot_id!r}")
    folder = Path(arguments.bots) if arguments.bots else BOT_CONFIG_DIR
    path = folder / f"{config.bot_id}.json"
    check_new_id(config.bot_id, folder, path, arguments.database_url)
    check(config)
    data = config.to_dict()
    if config.start is not None:  # readable in the file; it reads back as the same ms
        data["start"] = datetime.fromtimestamp(config.start / 1000, tz=UTC).isoformat()
    write_config(path, data)
    print_next_steps(arguments, config.bot_id, path)
    return 0


def print_next_steps(arguments: argparse.Namespace, bot_id: str, path: Path) -> None:
    """Say where the config went and the commands that run, replay and backtest the bot."""
    where = "" if arguments.bots is None else f" --bots {arguments.bots}"
    print(f"bot {bot_id!r} written to {path}")
    print(f"  run it (live bars):     candela run{where} --bot {bot_id}")
    print(f"  replay stored bars:     candela run{where} --replay --bot {bot_id}")
    print(f"  its backtest:           candela backtest --bot {path}")


def _config_data(arguments: argparse.Namespace, spec, params: dict[str, Any]) -> dict[str, Any]:
    """The bot config (as in a file) of the options; stops start from the strategy's own."""
    none = lambda value: None if isinstance(value, float) and math.isnan(value) else value  # noqa: E731
    data: dict[str, Any] = {
        "id": arguments.bot_id,
        "strategy": arguments.strategy,
        "params": params,
        "exchange": arguments.exchange,
        "symbol": arguments.symbol,
        "timeframe": arguments.timeframe,
        "initial_cash": arguments.cash,
        "costs": {"fee_rate": arguments.fee, "slippage_bps": arguments.slippage_bps},
        "risk": {
            "max_position": 1.0 if arguments.max_position is None else arguments.max_position,
            "daily_loss_limit": arguments.daily_loss_limit,
            "max_drawdown": arguments.max_drawdown,
        },
        "description": arguments.description,
    }
    given = {
        name: getattr(arguments, name) for name in spec.stops._fields if hasattr(arguments, name)
    }
    if given:
        data["stops"] = {
            **{name: none(value) for name, value in spec.stops._asdict().items()},
            **given,
        }
    if arguments.start is not None:
        data["start"] = start_value(arguments.start)
    return data


def start_value(text: str) -> int | str:
    """``--start`` as a config value: ms as an int, else the text (parsed by the config)."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def check_new_id(bot_id: str, folder: Path, path: Path, database_url: str | None) -> None:
    """Refuse an id that a config file of ``folder`` or the database's records already use."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from runner.registry import decision_count

    if path.exists():
        raise CommandError(
            f"{path} exists already: a bot's config is not overwritten; choose "
            "another id (or delete the file of a bot that never ran)"
        )
    for other in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            declared = json.loads(other.read_text(encoding="utf-8")).get("id")
        except (ValueError, AttributeError, OSError):
            continue
        if declared == bot_id:
            raise CommandError(f"bot id {bot_id!r} is already used by {other}: choose another id")
    engine = connect(database_url)
    try:
        with engine.connect() as connection:
            decisions = decision_count(connection, bot_id)
    finally:
        engine.dispose()
    if decisions:
        raise CommandError(
            f"bot {bot_id!r} has {decisions} decision(s) recorded in the database: "
            "the id belongs to the config that made them; choose another id (see "
            f"'candela bots status {bot_id}')"
        )


def _checked_bars(arguments: argparse.Namespace, config):
    """The most recent stored bars of the bot's market for the checks; refuse too few."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli import strategy_model as model
    from candela.cli.commands.parsing import format_params
    from candela.core.db import connect
    from research.data import load_bars

    params = config.spec.make_params(config.params)
    engine = connect(arguments.database_url)
    try:
        with user_errors(ValueError):  # no bars stored for the market
            bars = load_bars(engine, *config.market)
    finally:
        engine.dispose()
    needed = model.bars_for_checks(config.spec, params)
    if len(bars) < needed:
        raise CommandError(
            f"{' '.join(config.market)} has {len(bars)} stored bars, but checking "
            f"{config.spec.name} with {format_params(params)} needs at least {needed} (look-back "
            f"{model.lookback(config.spec, params)} + 2): import or backfill more bars "
            "('candela data backfill') or use shorter parameters; nothing written"
        )
    # enough bars for full history windows too, when the market has them
    return bars[-max(arguments.check_bars, model.history_window(config.spec, params) + needed) :]


def _run_checks(config, bars) -> None:
    """Run both checks, print their reports; refuse (nothing written) if one fails."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli import strategy_model as model
    from candela.cli.commands.parsing import format_params

    spec, params = config.spec, config.spec.make_params(config.params)
    report_checks(
        config.bot_id,
        f"checking {spec.name} {format_params(params)} on the last {len(bars)} stored bars of "
        f"{' '.join(config.market)}:",
        (check(spec, bars, params) for check in (model.lookahead_check, model.history_check)),
    )


def report_checks(bot_id: str, heading: str, reports: Iterable[Any]) -> None:
    """Print ``heading``, then each report as it is made (``reports`` may be lazy); refuse with
    one line naming the failed checks (nothing written) if one is not ``ok``."""
    print(heading)
    failed = []
    for report in reports:
        print("  " + str(report).replace("\n", "\n  "))
        if not report.ok:
            failed.append(str(report).splitlines()[0])
    if failed:
        raise CommandError(
            f"bot {bot_id!r} not created, nothing written: "
            + "; ".join(failed)
            + "; fix the strategy and create the bot again"
        )


def write_config(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` in one step (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
