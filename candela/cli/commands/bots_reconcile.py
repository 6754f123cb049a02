"""``candela bots reconcile ID``: the bot's paper fills against its config's backtest, every
difference with its cause, and the service it gave (:mod:`candela.cli.live.reconcile`).

A bot with nothing to report prints one line. ``--report`` also writes an HTML page without
code (``notebooks/05_reconcile.ipynb`` executed with papermill) to ``--out``.
"""

from __future__ import annotations

import argparse

from candela.cli.commands import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``reconcile`` to the ``bots`` subcommands."""
    parser = sub.add_parser(
        "reconcile",
        help="paper against backtest, fill by fill, each difference with its cause",
        description="Rerun the backtest of the bot's stored config on the bars it consumed and on "
        "the bars stored now, compare the fills one by one, and explain every "
        "difference (a bar revised or stored late, a strategy or config change); also "
        "the decisions on time, restart gaps and slippage against the next open.",
    )
    parser.add_argument("bot_id", metavar="ID", help="the bot (ID@vN for a retired version)")
    parser.add_argument(
        "--on-time",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a decision within this many seconds of its bar being stored is on time (default: 5)",
    )
    parser.add_argument(
        "--report", action="store_true", help="also write an HTML report (no code) to --out"
    )
    parser.add_argument("--out", default="out", metavar="DIR", help="report folder (default: out/)")
    parser.set_defaults(handler=_reconcile)


def _reconcile(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.live.reconcile import reconcile
    from candela.cli.live.records import ReconcileError, load_records
    from candela.cli.live.text import reconciliation_text
    from candela.core.db import connect, database_url

    if not arguments.on_time > 0:
        raise CommandError(
            f"--on-time must be a positive number of seconds, got {arguments.on_time:g}"
        )
    engine = connect(arguments.database_url)
    try:
        try:
            records = load_records(engine, arguments.bot_id)
        except ReconcileError as exc:
            raise CommandError(str(exc)) from exc
        result = reconcile(records, on_time_ms=int(arguments.on_time * 1000))
    finally:
        engine.dispose()
    print(reconciliation_text(result))
    if arguments.report:
        from candela.cli.live.report import run_reconcile_report

        files = run_reconcile_report(
            arguments.bot_id,
            database_url=database_url(arguments.database_url),
            out_dir=arguments.out,
            on_time=arguments.on_time,
        )
        print(f"report: {files.html or files.notebook}")
    return 0
