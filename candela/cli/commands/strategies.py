"""``candela strategies list | show NAME``: the strategies a bot or a backtest can name.

``list`` prints every shipped strategy and every strategy of the user strategy folders
(``CANDELA_STRATEGY_PATH``, else ``user_strategies/``; see :mod:`runner.strategy_source`) with
where it comes from and the first line of its description. ``show`` prints one strategy in full:
parameters (type, default, sweep range), constraints, look-back and history window, default
stops, long-only, source file and description.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from candela.cli.commands import user_errors


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``strategies`` and its subcommands to the top-level commands."""
    parser = commands.add_parser("strategies", help="list the strategies and show one in full")
    sub = parser.add_subparsers(dest="strategies_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser(
        "list", help="every strategy: name, source, first line of its description"
    )
    listing.set_defaults(handler=_list)
    show = sub.add_parser(
        "show",
        help="one strategy: parameters, constraints, look-back, history "
        "window, stops, source file, description",
    )
    show.add_argument("reference", metavar="NAME", help="a strategy name or module:ATTRIBUTE")
    show.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="parameter for the look-back and history window (default: the defaults)",
    )
    show.set_defaults(handler=_show)


def _list(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.paths import strategy_dirs
    from runner.strategy_source import SHIPPED, StrategyReferenceError, catalog

    with user_errors(StrategyReferenceError):
        entries = catalog()
    rows = [
        (
            entry.name,
            "shipped" if entry.origin == SHIPPED else _shown_path(entry.file),
            first_line(entry.spec.description),
        )
        for entry in entries.values()
    ]
    name_width = max(len("name"), *(len(row[0]) for row in rows))
    source_width = max(len("source"), *(len(row[1]) for row in rows))
    print(f"{'name':<{name_width}}  {'source':<{source_width}}  description")
    for name, source, description in rows:
        print(f"{name:<{name_width}}  {source:<{source_width}}  {description}")
    folders = ", ".join(
        f"{_shown_path(folder)}{'' if folder.is_dir() else ' (missing)'}"
        for folder in strategy_dirs()
    )
    print(
        f"\nuser strategy folders: {folders or 'none'} (set CANDELA_STRATEGY_PATH to change them)"
    )
    return 0


def _show(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli import strategy_model as model
    from candela.cli.commands.parsing import make_params, parse_assignments
    from runner.strategy_source import SHIPPED, StrategyReferenceError, find_strategy

    with user_errors(StrategyReferenceError):
        entry = find_strategy(arguments.reference)
    spec = entry.spec
    params = make_params(spec, parse_assignments(arguments.param))
    which = "these parameters" if arguments.param else "the defaults"
    origin = {SHIPPED: "shipped"}.get(entry.origin, f"{entry.origin} strategy")
    print(f"{spec.name}  ({origin}; source {_shown_path(entry.file)})")
    print()
    rows = [("parameter", "type", "default", "sweep")]
    rows += [
        (p.name, p.type, repr(p.default), describe_values(p.sweep)) for p in model.parameters(spec)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  " + "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + f"  {row[3]}"
        )
    print()
    print(f"constraints     {'; '.join(model.constraints(spec)) or 'none'}")
    print(
        f"look-back       {model.lookback(spec, params)} bars for {which}: it trades from the "
        "bar after them"
    )
    print(
        f"history window  {model.history_window(spec, params)} bars for {which}: loaded by the "
        "runner for each decision"
    )
    print(f"stops           {describe_stops(spec.stops)}")
    print(f"long only       {'yes' if spec.long_only else 'no'}")
    print()
    print(spec.description.strip() or "(no description)")
    return 0


def first_line(text: str, width: int = 100) -> str:
    """The first sentence of ``text``'s first paragraph, on one line (``""`` if none); cut with
    ``...`` when longer than ``width``. (A description is a docstring: its lines are wrapped.)"""
    paragraph = []
    for line in (text or "").strip().splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    line = " ".join(paragraph)
    end = line.find(". ")
    if end >= 0:
        line = line[: end + 1]
    if len(line) > width:
        line = line[: width - 3].rstrip() + "..."
    return line


def describe_values(values: Any) -> str:
    """A sweep range in a few characters: ``5..54 (50 values)``, ``20..216 step 4 (50 values)``,
    ``1.5, 2.0, 2.5``; ``-`` for none."""
    if values is None:
        return "-"
    if isinstance(values, range):
        if len(values) == 0:
            return "(empty)"
        step = "" if values.step == 1 else f" step {values.step}"
        return f"{values[0]}..{values[-1]}{step} ({len(values)} values)"
    items = list(values)
    shown = ", ".join(repr(item) for item in items[:6])
    return shown + (f", ... ({len(items)} values)" if len(items) > 6 else "")


def describe_stops(stops) -> str:
    """``stop_loss 0.05, trailing_stop 0.02``, or ``none``."""
    given = [
        f"{name} {value:.4g}"
        for name, value in stops._asdict().items()
        if not (isinstance(value, float) and math.isnan(value))
    ]
    return ", ".join(given) or "none"


def _shown_path(path: Path | None) -> str:
    """``path`` relative to the working folder when inside it, else absolute; ``-`` for none."""
    if path is None:
        return "-"
    try:
        return (
            os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
        )
    except ValueError:  # another drive (Windows)
        return str(path)
