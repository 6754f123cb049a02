"""``candela data import FILE``: load a candle CSV/CSV.gz into the database (issue 2)."""

from __future__ import annotations

import argparse
import sys

from candela.cli.commands import CommandError, user_errors


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``import`` to the ``data`` group."""
    parser = commands.add_parser(
        "import",
        help="import candles from a CSV or CSV.gz file (header open_time_ms,open,high,low,close,volume)",
        description=(
            "Import OHLCV candles whose time column is the bar's OPEN time in ms UTC. Rows are "
            "validated; bad rows are rejected and reported; the import is one transaction and "
            "importing the same file again inserts nothing. Without --exchange/--symbol/--timeframe "
            "the market is taken from a file name like binance_BTC-USDT_1m.csv.gz."
        ),
    )
    parser.add_argument("file", help="CSV or CSV.gz file")
    parser.add_argument("--exchange", help="ccxt exchange id, e.g. binance")
    parser.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT")
    parser.add_argument("--timeframe", help="bar timeframe, e.g. 1m, 1h, 1d")
    parser.add_argument(
        "--revise",
        action="store_true",
        help="replace stored bars whose values differ (corrections); the replaced "
        "versions are kept in the database for 'candela bots reconcile'",
    )
    parser.set_defaults(handler=_import)


def _import(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from candela.core.markets import validate_exchange, validate_symbol
    from candela.core.timeframes import timeframe_to_ms
    from data_pipeline.importer import ImportFailedError, SpacingError, import_candles, infer_market

    guess = infer_market(arguments.file) or (None, None, None)
    exchange = arguments.exchange or guess[0]
    symbol = arguments.symbol or guess[1]
    timeframe = arguments.timeframe or guess[2]
    absent = [
        f"--{name}"
        for name, value in (("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe))
        if not value
    ]
    if absent:
        raise CommandError(
            f"cannot tell the market of {arguments.file} from its name: pass {' '.join(absent)} "
            "(e.g. --exchange binance --symbol BTC/USDT --timeframe 1m)"
        )
    with user_errors(ValueError):
        validate_exchange(exchange)
        validate_symbol(symbol)
        timeframe_to_ms(timeframe)

    engine = connect(arguments.database_url)
    try:
        report = import_candles(
            engine, arguments.file, exchange, symbol, timeframe, revise=arguments.revise
        )
    except ImportFailedError as exc:
        raise CommandError(str(exc)) from exc
    except SpacingError as exc:
        given = (
            f"--timeframe {timeframe}"
            if arguments.timeframe
            else f"the timeframe {timeframe} in the file's name"
        )
        raise CommandError(exc.describe(given, option="--timeframe")) from exc
    except (FileNotFoundError, ValueError) as exc:  # a missing, unreadable or malformed file
        raise CommandError(str(exc)) from exc
    finally:
        engine.dispose()
    print(report.summary())
    if report.rejected:
        print(format_rejections(report))
    if report.conflicting > report.revised:
        examples = ", ".join(str(ts) for ts in report.conflict_examples)
        print(
            f"warning: {report.conflicting} bars differ from the stored ones and were NOT "
            f"overwritten (close ts e.g. {examples}); import again with --revise to replace "
            "them (the stored versions are kept as revisions)",
            file=sys.stderr,
        )
    return 0


def format_rejections(report) -> str:
    """A short table of rejected rows per reason, then the first examples with line numbers."""
    width = max(len(reason) for reason in report.rejected)
    lines = [f"rejected rows ({report.rejected_total}):", f"  {'reason':<{width}}  rows"]
    lines += [f"  {reason:<{width}}  {count}" for reason, count in report.rejected.items()]
    lines.append(
        "  first examples: "
        + ", ".join(f"line {line} ({reason})" for line, reason in report.rejected_examples)
    )
    return "\n".join(lines)
