"""``candela data backfill | collect | status | gaps``: the ccxt data pipeline (issue 4)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from candela.cli.commands import CommandError, user_errors


def register(commands: argparse._SubParsersAction) -> None:
    """Add the pipeline's subcommands to the ``data`` group."""
    backfill = commands.add_parser(
        "backfill",
        help="download historical candles from an exchange (ccxt) into the database",
        description=(
            "Fetch closed candles page by page, validate every row, store new ones idempotently and "
            "record every gap in the ledger (see 'candela data gaps'). Runs resume after the last "
            "stored bar; a second run over the same window fetches and writes nothing."
        ),
    )
    _market_arguments(backfill)
    backfill.add_argument(
        "--since",
        required=True,
        help="first bar open time: 2024-01-01, 2024-01-01T12:00 (UTC) or epoch milliseconds",
    )
    backfill.add_argument(
        "--until", help="last bar close time (default: now, by the exchange's clock)"
    )
    backfill.add_argument("--retries", type=int, default=5, help="retries per request (default 5)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bars")
    _endpoint_arguments(backfill)
    backfill.set_defaults(handler=_backfill)

    collect = commands.add_parser(
        "collect",
        help="collect live trades (ccxt.pro) into closed candles; publish them on Redis",
        description=(
            "Follow the exchange's trade stream, build closed candles for every timeframe, store "
            "them and publish each on market:{exchange}:{symbol}:{timeframe} after the commit "
            "(Redis via CANDELA_REDIS_URL). Missed trades after a reconnect are fetched over REST. "
            "With --poll (or an exchange without WebSockets) it polls REST candles instead."
        ),
    )
    _market_arguments(collect)
    collect.add_argument(
        "--store-trades", action="store_true", help="also store every trade in raw_trades"
    )
    collect.add_argument(
        "--poll", action="store_true", help="poll REST candles instead of streaming trades"
    )
    collect.add_argument(
        "--poll-interval", type=float, default=10.0, help="seconds between polls (default 10)"
    )
    collect.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds"
    )
    collect.add_argument(
        "--redis-url", default=None, help="Redis URL (default: $CANDELA_REDIS_URL)"
    )
    collect.add_argument(
        "--retries", type=int, default=5, help="retries per REST request (default 5)"
    )
    _endpoint_arguments(collect)
    collect.set_defaults(handler=_collect)

    status = commands.add_parser(
        "status", help="stored markets: spans, bar counts, last update, open gaps"
    )
    status.add_argument("--exchange", default=None, help="only this exchange")
    status.set_defaults(handler=_status)

    gaps = commands.add_parser("gaps", help="the gap ledger: every gap found and what became of it")
    gaps.add_argument("--exchange", default=None)
    gaps.add_argument("--symbol", default=None)
    gaps.add_argument("--timeframe", default=None)
    gaps.add_argument(
        "--status",
        default=None,
        choices=("open", "refetched", "partially_refetched", "confirmed_empty"),
    )
    gaps.set_defaults(handler=_gaps)


def _market_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", required=True, help="ccxt exchange id (tested: binance, okx)")
    parser.add_argument(
        "--symbols", required=True, help="comma-separated unified symbols, e.g. BTC/USDT,ETH/USDT"
    )
    parser.add_argument(
        "--timeframes", required=True, help="comma-separated timeframes, e.g. 1m,1h"
    )


def _endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate-limit-ms",
        type=float,
        default=None,
        help="ms per request-cost unit (default: the exchange's own)",
    )
    parser.add_argument(
        "--rest-url", default=None, help="replace the exchange's REST host (a local mock)"
    )
    parser.add_argument(
        "--ws-url", default=None, help="replace the exchange's WebSocket host (a local mock)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each answer from the exchange (default 10)",
    )


def parse_time(text: str, option: str) -> int:
    """``2024-01-01``, ``2024-01-01T12:30`` (UTC unless an offset is given) or epoch ms -> ms UTC."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(
            f"{option} {text!r} is not a date: use e.g. 2024-01-01, 2024-01-01T12:00 "
            "or epoch milliseconds"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _market(arguments):
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.markets import validate_exchange, validate_symbol
    from candela.core.timeframes import timeframe_to_ms

    with user_errors(ValueError):
        exchange = validate_exchange(arguments.exchange)
        symbols = [validate_symbol(s) for s in _split(arguments.symbols)]
        timeframes = _split(arguments.timeframes)
        for timeframe in timeframes:
            timeframe_to_ms(timeframe)
    if not symbols or not timeframes:
        raise CommandError(
            "give at least one symbol and one timeframe, e.g. --symbols BTC/USDT --timeframes 1m"
        )
    return exchange, symbols, timeframes


def _check_endpoint_arguments(arguments) -> None:
    if arguments.ws_url and not arguments.rest_url:
        raise CommandError("--ws-url needs --rest-url too (markets load over REST)")
    for option, url in (("--rest-url", arguments.rest_url), ("--ws-url", arguments.ws_url)):
        schemes = ("http://", "https://") if option == "--rest-url" else ("ws://", "wss://")
        if url and not url.startswith(schemes):
            raise CommandError(
                f"{option} {url!r} must start with {' or '.join(schemes)}, e.g. {schemes[0]}127.0.0.1:8080"
            )
    if not arguments.timeout > 0:
        raise CommandError(f"--timeout must be more than 0 seconds, got {arguments.timeout:g}")
    if arguments.rate_limit_ms is not None and not arguments.rate_limit_ms >= 0:
        raise CommandError(f"--rate-limit-ms must be 0 or more, got {arguments.rate_limit_ms:g}")
    if arguments.retries < 0:
        raise CommandError("--retries must be 0 or more")


def _create(arguments, exchange_id: str, streaming: bool):
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from data_pipeline.exchanges import Endpoints, create_exchange

    endpoints = Endpoints(arguments.rest_url, arguments.ws_url) if arguments.rest_url else None
    with user_errors(ValueError):  # an exchange ccxt does not know
        return create_exchange(
            exchange_id,
            streaming=streaming,
            endpoints=endpoints,
            rate_limit_ms=arguments.rate_limit_ms,
            timeout_ms=int(arguments.timeout * 1000),
        )


def _exchange_error(error: Exception, arguments) -> CommandError:
    """One line for a request that failed for good; says what to check when the exchange was unreachable."""
    message = str(error)
    if getattr(error, "unreachable", False):
        where = (
            f"--rest-url {arguments.rest_url}"
            if arguments.rest_url
            else f"{arguments.exchange}'s status"
        )
        message += f": check the network connection and {where}"
    return CommandError(message)


async def _check_markets(exchange, symbols, timeframes, policy) -> None:
    """The exchange's markets must list every symbol (and timeframe): else one line (exit 2)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from data_pipeline.backfill import check_markets

    with user_errors(ValueError):
        await check_markets(exchange, symbols, timeframes, policy)


def _backfill(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import asyncio

    from candela.core.db import connect
    from data_pipeline.backfill import BackfillError, backfill, iso
    from data_pipeline.publish import default_publisher
    from data_pipeline.retry import FetchError, RetryPolicy

    exchange_id, symbols, timeframes = _market(arguments)
    since = parse_time(arguments.since, "--since")
    until = parse_time(arguments.until, "--until") if arguments.until else None
    if until is not None and until < since:
        raise CommandError(f"--until ({iso(until)}) is before --since ({iso(since)}): swap them")
    _check_endpoint_arguments(arguments)
    engine = connect(arguments.database_url)
    publisher = default_publisher()
    policy = RetryPolicy(attempts=arguments.retries + 1)

    async def run():
        exchange = _create(arguments, exchange_id, streaming=False)
        try:
            await _check_markets(exchange, symbols, timeframes, policy)
            return await backfill(
                exchange,
                engine,
                symbols,
                timeframes,
                since,
                until,
                publisher=publisher,
                policy=policy,
                progress=not arguments.no_progress,
            )
        finally:
            await exchange.close()

    try:
        report = asyncio.run(run())
    except BackfillError as error:
        _print_report(error.report, iso)
        raise CommandError(str(error)) from error
    except FetchError as error:  # before any market started: markets or the exchange's clock
        raise _exchange_error(error, arguments) from error
    finally:
        engine.dispose()
    _print_report(report, iso)
    return 0


def _print_report(report, iso) -> None:
    for m in report.markets:
        window = f"{iso(m.window[0])} .. {iso(m.window[1])}" if m.window else "-"
        rejected = (
            ", ".join(f"{reason} {count}" for reason, count in sorted(m.rejected.items())) or "none"
        )
        gaps = ", ".join(f"{iso(a)}..{iso(b)} {status}" for a, b, status in m.gaps) or "none"
        print(
            f"{m.exchange} {m.symbol} {m.timeframe} [{window}]: {m.requests:,} requests, "
            f"{m.inserted:,} new bars, {m.unchanged:,} already stored, {m.conflicting:,} conflicting; "
            f"rejected: {rejected}; gaps: {gaps}" + (f"; FAILED: {m.error}" if m.error else "")
        )


def _collect(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import asyncio
    import time

    from candela.core.db import connect
    from data_pipeline.backfill import BackfillError, exchange_now
    from data_pipeline.collect import TradeCollector, poll_candles
    from data_pipeline.publish import default_publisher
    from data_pipeline.retry import FetchError, RetryPolicy

    exchange_id, symbols, timeframes = _market(arguments)
    _check_endpoint_arguments(arguments)
    if not arguments.poll_interval > 0:
        raise CommandError(
            f"--poll-interval must be more than 0 seconds, got {arguments.poll_interval:g}"
        )
    if arguments.duration is not None and not arguments.duration > 0:
        raise CommandError(f"--duration must be more than 0 seconds, got {arguments.duration:g}")
    policy = RetryPolicy(attempts=arguments.retries + 1)
    engine = connect(arguments.database_url)
    publisher = default_publisher(arguments.redis_url)
    deadline = None if arguments.duration is None else time.monotonic() + arguments.duration

    def should_stop() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    async def run():
        # imported when the command runs, not at start-up: keeps `candela --help` light
        import ccxt.pro

        streaming = not arguments.poll and exchange_id in ccxt.pro.exchanges
        exchange = _create(arguments, exchange_id, streaming=streaming)
        try:
            from_trades = streaming and exchange.has.get("watchTrades")
            if not from_trades:  # polling starts from the exchange's clock: ask it first
                await exchange_now(exchange, policy)
            # candles built from trades may have any timeframe; polled ones must be the exchange's
            await _check_markets(exchange, symbols, [] if from_trades else timeframes, policy)
            if from_trades:
                collector = TradeCollector(
                    exchange,
                    engine,
                    symbols,
                    timeframes,
                    publisher=publisher,
                    store_trades=arguments.store_trades,
                    policy=policy,
                )
                await collector.run(should_stop)
                print(
                    f"collected {collector.stats['trades']} trades, stored {collector.stats['candles']} "
                    f"candles, fetched {collector.stats['refetched']} missed trades over REST"
                )
            else:
                rounds = await poll_candles(
                    exchange,
                    engine,
                    symbols,
                    timeframes,
                    publisher=publisher,
                    interval=arguments.poll_interval,
                    should_stop=should_stop,
                    policy=policy,
                )
                print(f"polled {rounds} round(s)")
        finally:
            await exchange.close()

    try:
        asyncio.run(run())
    except (FetchError, BackfillError) as error:
        raise _exchange_error(error, arguments) from error
    finally:
        engine.dispose()
    return 0


def _check_filters(arguments: argparse.Namespace) -> None:
    """Refuse a malformed --exchange/--symbol/--timeframe filter instead of listing nothing."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.markets import validate_exchange, validate_symbol
    from candela.core.timeframes import timeframe_to_ms

    with user_errors(ValueError):
        if arguments.exchange is not None:
            validate_exchange(arguments.exchange)
        if getattr(arguments, "symbol", None) is not None:
            validate_symbol(arguments.symbol)
        if getattr(arguments, "timeframe", None) is not None:
            timeframe_to_ms(arguments.timeframe)


def _status(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from data_pipeline.status import format_status, market_status

    _check_filters(arguments)
    engine = connect(arguments.database_url)
    try:
        with engine.connect() as connection:
            print(format_status(market_status(connection, arguments.exchange)))
    finally:
        engine.dispose()
    return 0


def _gaps(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from data_pipeline.gaps import list_gaps
    from data_pipeline.status import format_gaps

    _check_filters(arguments)
    engine = connect(arguments.database_url)
    try:
        with engine.connect() as connection:
            print(
                format_gaps(
                    list_gaps(
                        connection,
                        arguments.exchange,
                        arguments.symbol,
                        arguments.timeframe,
                        arguments.status,
                    )
                )
            )
    finally:
        engine.dispose()
    return 0
