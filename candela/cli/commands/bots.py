"""``candela bots create | list | start ID | stop ID | status [ID] | reconcile ID``: manage bots
from any terminal.

``create`` checks a strategy on a market's stored bars and writes a new bot config
(:mod:`candela.cli.commands.bots_create`); ``reconcile`` compares a bot's paper fills with its
backtest (:mod:`candela.cli.commands.bots_reconcile`). The state lives in the database (``bots.status``),
so the other commands work while a runner is running elsewhere: the runner polls the status and
stops or (re)starts the bot within its poll interval. ``start`` also clears a ``failed`` bot (it
restarts from its last committed bar). A ``retired`` bot (``ID@vN``, an old version kept when a
new one started) can be inspected but not started.

``list`` and ``status`` show each bot's **state**, from its status, its last lifecycle event
and its heartbeat:

* ``running``: a runner hosts it (its last event is ``started``, ``restarted`` or ``crashed``)
  and its heartbeat is fresh (``--stale`` seconds, default 60, twelve beats at the runner's
  default interval);
* ``orphaned``: a runner started it and never said it stopped, but the heartbeat is stale:
  the runner was killed, crashed or lost its machine. ``candela run`` resumes it from its last
  committed bar;
* ``idle``: active, but no runner hosts it (never started, or its runner stopped it or
  finished its replay): ``candela run`` starts it;
* ``stopped`` (by ``candela bots stop``), ``failed`` (its strategy kept failing: see the
  error; ``candela bots start`` retries it), ``retired``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC

from candela.cli.commands import CommandError, bots_create, bots_reconcile


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bots`` and its subcommands to the top-level commands."""
    parser = commands.add_parser("bots", help="list, start, stop and inspect paper-trading bots")
    sub = parser.add_subparsers(dest="bots_command", metavar="SUBCOMMAND", required=True)
    bots_create.register(sub)
    bots_reconcile.register(sub)
    listing = sub.add_parser("list", help="every bot: status, market, cursor, equity, heartbeat")
    listing.add_argument(
        "--bots",
        default=None,
        metavar="DIR",
        help="also list configs of this folder not yet registered (default: config/bots/)",
    )
    listing.add_argument(
        "--stale",
        type=float,
        default=STALE_SECONDS,
        metavar="SECONDS",
        help="a hosted bot without a heartbeat for this long is orphaned (default: 60)",
    )
    listing.set_defaults(handler=_list)
    start = sub.add_parser("start", help="mark a bot active (the runner starts it)")
    start.add_argument("bot_id", metavar="ID")
    start.set_defaults(handler=_start)
    stop = sub.add_parser(
        "stop", help="mark a bot stopped (the runner stops it after its current bar)"
    )
    stop.add_argument("bot_id", metavar="ID")
    stop.set_defaults(handler=_stop)
    status = sub.add_parser("status", help="details of one bot (or a summary of all)")
    status.add_argument("bot_id", metavar="ID", nargs="?")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--stale",
        type=float,
        default=STALE_SECONDS,
        metavar="SECONDS",
        help="a hosted bot without a heartbeat for this long is orphaned (default: 60)",
    )
    status.set_defaults(handler=_status)


STALE_SECONDS = 60.0
"""Default heartbeat age after which a hosted bot is ``orphaned``."""

HOSTED_EVENTS = ("started", "restarted", "crashed")
"""Last lifecycle events of a bot that a runner hosts (a crashed bot waits for its restart)."""

LIFECYCLE_EVENTS = (*HOSTED_EVENTS, "stopped", "finished", "failed")


def bot_state(
    status: str, last_event: str | None, heartbeat_age_ms: int | None, stale_ms: float
) -> str:
    """The state ``list`` and ``status`` show (see the module docstring)."""
    if status != "active":
        return status
    if last_event not in HOSTED_EVENTS:
        return "idle"
    if heartbeat_age_ms is not None and heartbeat_age_ms <= stale_ms:
        return "running"
    return "orphaned"


def _bot_summaries(engine, stale_seconds: float = STALE_SECONDS) -> list[dict]:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from sqlalchemy import func, select

    from candela.core import schema
    from candela.core.db import now_ms

    now = now_ms()
    events = schema.bot_events
    with engine.connect() as connection:
        latest = (
            select(func.max(events.c.id))
            .where(events.c.event.in_(LIFECYCLE_EVENTS))
            .group_by(events.c.bot_id)
        )
        last_events = dict(
            connection.execute(
                select(events.c.bot_id, events.c.event).where(events.c.id.in_(latest))
            ).all()
        )
        states = {row.bot_id: row for row in connection.execute(select(schema.bot_state))}
        trade_counts = dict(
            connection.execute(
                select(schema.trades.c.bot_id, func.count()).group_by(schema.trades.c.bot_id)
            ).all()
        )
        signal_counts = dict(
            connection.execute(
                select(schema.signals.c.bot_id, func.count()).group_by(schema.signals.c.bot_id)
            ).all()
        )
        summaries = []
        for bot in connection.execute(select(schema.bots).order_by(schema.bots.c.bot_id)):
            state = states.get(bot.bot_id)
            equity = None
            if state is not None:
                equity = connection.execute(
                    select(schema.bot_performance.c.equity)
                    .where(schema.bot_performance.c.bot_id == bot.bot_id)
                    .order_by(schema.bot_performance.c.ts.desc())
                    .limit(1)
                ).scalar()
            age = None if bot.heartbeat_at is None else now - bot.heartbeat_at
            last_event = last_events.get(bot.bot_id)
            summaries.append(
                dict(
                    bot_id=bot.bot_id,
                    strategy=bot.strategy,
                    exchange=bot.exchange,
                    symbol=bot.symbol,
                    timeframe=bot.timeframe,
                    status=bot.status,
                    last_event=last_event,
                    heartbeat_age_ms=age,
                    restarts=bot.restarts,
                    state=bot_state(bot.status, last_event, age, stale_seconds * 1000),
                    last_error=bot.last_error,
                    heartbeat_at=bot.heartbeat_at,
                    cursor_ts=None if state is None else state.cursor_ts,
                    cash=None if state is None else state.cash,
                    position=None if state is None else state.position,
                    equity=equity,
                    signals=signal_counts.get(bot.bot_id, 0),
                    trades=trade_counts.get(bot.bot_id, 0),
                )
            )
    return summaries


def _time(ms) -> str:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from datetime import datetime

    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from candela.core.paths import BOT_CONFIG_DIR

    if not arguments.stale > 0:
        raise CommandError(f"--stale must be more than 0 seconds, got {arguments.stale:g}")
    engine = connect(arguments.database_url)
    try:
        summaries = _bot_summaries(engine, arguments.stale)
    finally:
        engine.dispose()
    known = {summary["bot_id"] for summary in summaries}
    print(
        f"{'bot':<24} {'state':<9} {'strategy':<20} {'market':<28} {'last bar (UTC)':<20} "
        f"{'equity':>14} {'trades':>7} heartbeat"
    )
    for s in summaries:
        market = f"{s['exchange']} {s['symbol']} {s['timeframe']}"
        equity = "-" if s["equity"] is None else f"{s['equity']:.6g}"
        print(
            f"{s['bot_id']:<24} {s['state']:<9} {s['strategy'][:20]:<20} {market:<28} "
            f"{_time(s['cursor_ts']):<20} {equity:>14} {s['trades']:>7} {_heartbeat(s)}"
        )
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from pathlib import Path

    folder = Path(arguments.bots) if arguments.bots else BOT_CONFIG_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                bot_id = json.loads(path.read_text()).get("id", path.stem)
            except (ValueError, AttributeError):
                bot_id = path.stem
            if bot_id not in known:
                print(
                    f"{bot_id:<24} {'new':<8} (config {path}, not registered until 'candela run')"
                )
    return 0


def _heartbeat(summary: dict) -> str:
    """The heartbeat column: its age, and what an orphaned bot's means."""
    age = summary["heartbeat_age_ms"]
    text = "-" if age is None else f"{age / 1000:.0f} s ago"
    if summary["state"] == "orphaned":
        text += " (its runner is gone: 'candela run' resumes it from its last bar)"
    return text


ACTIONS = {"start": ("active", "start_requested"), "stop": ("stopped", "stop_requested")}
"""``candela bots start|stop``: the status each sets and the event it records."""


def change_status(
    database_url: str | None, bot_id: str, action: str, *, source: str = "from the command line"
) -> str:
    """Do what ``candela bots start|stop ID`` does and return the line it prints.

    ``action`` is ``"start"`` or ``"stop"``; ``source`` is recorded as the event's detail (the
    live monitor's buttons call this too). Raises :class:`CommandError` for an unknown or
    retired bot.
    """
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from runner.registry import ARCHIVED_STATUS, bot_row, set_status

    status, event = ACTIONS[action]
    engine = connect(database_url)
    try:
        with engine.connect() as connection:
            row = bot_row(connection, bot_id)
        if row is not None and row.status == ARCHIVED_STATUS:
            raise CommandError(
                f"bot {bot_id!r} is a retired version of a bot: its "
                "records are kept for reading, it does not run again"
            )
        if not set_status(engine, bot_id, status, event=event, detail=source):
            raise CommandError(
                f"no bot {bot_id!r} in the database: 'candela bots list' shows the bots; "
                "a new config is registered when 'candela run' starts"
            )
    finally:
        engine.dispose()
    return f"bot {bot_id}: {status} (a running runner picks this up within its poll interval)"


def _start(arguments: argparse.Namespace) -> int:
    print(change_status(arguments.database_url, arguments.bot_id, "start"))
    return 0


def _stop(arguments: argparse.Namespace) -> int:
    print(change_status(arguments.database_url, arguments.bot_id, "stop"))
    return 0


def _status(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect

    if not arguments.stale > 0:
        raise CommandError(f"--stale must be more than 0 seconds, got {arguments.stale:g}")
    engine = connect(arguments.database_url)
    try:
        summaries = _bot_summaries(engine, arguments.stale)
    finally:
        engine.dispose()
    if arguments.bot_id is not None:
        summaries = [s for s in summaries if s["bot_id"] == arguments.bot_id]
        if not summaries:
            raise CommandError(
                f"no bot {arguments.bot_id!r} in the database: see 'candela bots list'"
            )
    if arguments.json:
        print(json.dumps(summaries, indent=2, sort_keys=True))
        return 0
    for s in summaries:
        market = f"{s['exchange']} {s['symbol']} {s['timeframe']}"
        print(f"{s['bot_id']}: {s['state']}  ({s['strategy']} on {market})")
        print(
            f"  last bar   {_time(s['cursor_ts'])} UTC   signals {s['signals']}   trades {s['trades']}"
        )
        if s["cash"] is not None:
            print(
                f"  cash {s['cash']:.8g}   position {s['position']:.8g}   equity {s['equity']:.8g}"
            )
        beat = (
            "none"
            if s["heartbeat_at"] is None
            else f"{_time(s['heartbeat_at'])} UTC, {_heartbeat(s)}"
        )
        print(f"  heartbeat  {beat}   restarts {s['restarts']}")
        if s["last_error"]:
            print(f"  last error {s['last_error']}")
    return 0
