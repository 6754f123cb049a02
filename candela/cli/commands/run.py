"""``candela run``: the paper-trading runner (live, or a replay of stored bars).

Examples::

    candela run                                   # every bot in config/bots/, follow live bars
    candela run --bots my_bots/ --bot sma_btc     # one bot of another folder
    candela run --replay --from 2018-01-10 --to 2018-01-20   # stored bars, as fast as possible

The runner is an asyncio process; Ctrl-C (or SIGTERM) lets every bot finish its current bar.
``CANDELA_REDIS_URL`` selects Redis for the bus, else an in-process bus is used.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from candela.cli.commands import CommandError, user_errors


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` to the top-level commands."""
    parser = commands.add_parser(
        "run", help="run the paper-trading bots of config/bots/ (live or --replay)"
    )
    parser.add_argument(
        "--bots",
        default=None,
        metavar="DIR",
        help="folder of bot JSON files (default: config/bots/)",
    )
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="ID",
        help="run only this bot (repeatable; default: every bot of the folder)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="feed stored bars through the bots as fast as possible, then exit",
    )
    parser.add_argument(
        "--from",
        dest="from_",
        default=None,
        metavar="TIME",
        help="replay: first bar close time (ISO 8601 UTC or ms) for bots without history",
    )
    parser.add_argument(
        "--to",
        default=None,
        metavar="TIME",
        help="replay: last bar close time (ISO 8601 UTC or ms; default: the last stored bar)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="database poll interval for new bars and bot status (default: 1)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="heartbeat interval (default: 5)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=10,
        metavar="N",
        help="worker threads: each runs one market's pass (all its bots on a "
        "bar) or a bot's recovery at a time, with one database connection "
        "(default: 10, at most 64)",
    )
    parser.add_argument(
        "--progress",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="replay, when stderr is not a terminal: a progress line every SECONDS "
        "(default: 10; on a terminal a progress bar)",
    )
    parser.add_argument(
        "--summary",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="live: print a one-line summary every SECONDS (default: 60; 0: never)",
    )
    parser.add_argument(
        "--batch-bars",
        type=int,
        default=None,
        metavar="N",
        help="replay and catch-up: most bars of each bot committed in one "
        "transaction (default: 500). A crash loses only the uncommitted "
        "batch, which the restarted runner processes again; live bars are "
        "committed at once",
    )
    parser.set_defaults(handler=_run)


def parse_time(value: str | None, option: str) -> int | None:
    """Parse ``--from``/``--to``: ISO 8601 (UTC when no zone is given) or integer ms."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"{option} {value!r} is not a time: use ISO 8601 such as 2018-01-10 or "
            "2018-01-10T12:00:00Z, or milliseconds since 1970"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _run(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import asyncio
    import dataclasses
    import gc
    import signal
    import time

    from candela.cli.commands.run_report import (
        ProgressReporter,
        describe,
        final_report,
        stored_bars,
    )
    from candela.core.bus import make_bus
    from candela.core.db import connect, database_url
    from candela.core.paths import BOT_CONFIG_DIR
    from runner.config import BotConfigError, load_bot_configs
    from runner.portfolio_config import bot_markets
    from runner.process import Replay, Runner, RunnerSettings
    from runner.registry import BotConfigChangedError

    if not arguments.replay and (arguments.from_ or arguments.to):
        raise CommandError("--from and --to only apply to a replay: add --replay")
    replay = None
    if arguments.replay:
        replay = Replay(parse_time(arguments.from_, "--from"), parse_time(arguments.to, "--to"))
        if (
            replay.from_ts is not None
            and replay.to_ts is not None
            and replay.from_ts > replay.to_ts
        ):
            raise CommandError("--from is after --to: swap them")
    with user_errors(BotConfigError, FileNotFoundError):
        configs = load_bot_configs(arguments.bots or BOT_CONFIG_DIR)
    if arguments.bot:
        known = {config.bot_id for config in configs}
        missing = [bot for bot in arguments.bot if bot not in known]
        if missing:
            raise CommandError(
                f"no bot {', '.join(map(repr, missing))} in the folder (bots: {', '.join(sorted(known))})"
            )
        configs = [config for config in configs if config.bot_id in arguments.bot]
    if not configs:
        raise CommandError(
            "no bot configs found: add JSON files to config/bots/ or pass --bots DIR"
        )
    if not 1 <= arguments.workers <= 64:
        raise CommandError(f"--workers must be between 1 and 64, got {arguments.workers}")
    if arguments.batch_bars is not None and arguments.batch_bars < 1:
        raise CommandError(f"--batch-bars must be at least 1, got {arguments.batch_bars}")
    if not arguments.progress > 0:
        raise CommandError(f"--progress must be more than 0 seconds, got {arguments.progress:g}")
    if arguments.summary < 0:
        raise CommandError(
            f"--summary must be 0 (never) or more seconds, got {arguments.summary:g}"
        )
    engine = connect(arguments.database_url, pool_size=arguments.workers + 5)
    markets = stored_bars(
        engine, sorted({market for config in configs for market in bot_markets(config)})
    )
    if replay is not None and not any(bars.count for bars in markets.values()):
        engine.dispose()
        raise CommandError(
            f"nothing to replay: no stored bar for {', '.join(' '.join(m) for m in markets)}; "
            "store some first with 'candela data backfill' or 'candela data import'"
        )
    bus = make_bus()
    settings = RunnerSettings(
        poll_interval=arguments.poll,
        heartbeat_interval=arguments.heartbeat,
        workers=arguments.workers,
    )
    if arguments.batch_bars is not None:
        settings = dataclasses.replace(settings, batch_bars=arguments.batch_bars)
    runner = Runner(engine, bus, configs, settings=settings, replay=replay)

    reporter = ProgressReporter(
        runner,
        replay=replay is not None,
        line_every=arguments.progress,
        summary_every=arguments.summary,
    )

    async def main():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, runner.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                pass
        reporting = asyncio.create_task(reporter.run())
        try:
            reports = await runner.run()
        finally:
            reporting.cancel()
            (outcome,) = await asyncio.gather(reporting, return_exceptions=True)
        if isinstance(outcome, Exception):
            raise outcome  # a bug of the reporter: keep its traceback
        return reports

    url = database_url(arguments.database_url)
    print("\n".join(describe(engine, bus, configs, replay, markets, url)), flush=True)
    started = time.monotonic()

    # Keep what exists by now (imported modules, numba and SQLAlchemy internals: over 100,000
    # objects) out of the garbage collector's full collections, which would otherwise stall
    # every bot for 30-100 ms now and then. The process ends with the run: nothing to unfreeze.
    gc.freeze()
    try:
        with user_errors(BotConfigChangedError):  # a changed config of a bot that has traded
            reports = asyncio.run(main())
        seconds = time.monotonic() - started
        bus.close()
        print("\n".join(final_report(engine, configs, reports, replay, markets, seconds)))
    finally:
        bus.close()
        engine.dispose()
    return 1 if any(report.status == "failed" for report in reports.values()) else 0
