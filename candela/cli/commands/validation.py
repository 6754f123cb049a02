"""``candela walkforward``, ``candela search`` and ``candela sweeps list``: validation at scale
from the shell (docs/validation.md). ``candela report --sweep ID`` lives with ``report`` in
:mod:`candela.cli.commands.research` and calls :func:`report_sweep` here.

Examples::

    candela walkforward --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --grid fast=5:50:5 --grid slow=20:200:20 --train 60D --test 15D
    candela search --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --space fast=5:50 --space slow=20:200 --trials 200 --timeout 600
    candela sweeps list
    candela report --sweep 3f9a1c
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError, user_errors
from candela.cli.commands.exports import write_atomically
from candela.cli.commands.parsing import (
    parse_assignments,
    parse_grid,
    parse_value,
    resolve_strategy,
)
from candela.cli.commands.run_inputs import (
    SUMMARY_STATS,
    check_n_jobs,
    command_line_bars,
    engine_options,
    market_arguments,
    market_text,
    min_trades_setting,
    parallel_arguments,
    run_arguments,
    run_settings,
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``walkforward``, ``search`` and ``sweeps`` to the top-level commands."""
    walk = commands.add_parser(
        "walkforward",
        help="walk-forward optimisation: choose on each training window, trade "
        "the next test window, stitch the out-of-sample record",
    )
    market_arguments(walk)
    run_arguments(walk)
    walk.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fixed strategy parameter (repeatable)",
    )
    walk.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="swept parameter (repeatable), as for 'candela sweep'; default: the "
        "strategy's sweep ranges",
    )
    walk.add_argument(
        "--train",
        required=True,
        metavar="LENGTH",
        help="training window: a number of bars (e.g. 2000) or a duration (90D, 12h, 4W)",
    )
    walk.add_argument(
        "--test",
        default=None,
        metavar="LENGTH",
        help="test window, in the unit of --train (or give --windows)",
    )
    walk.add_argument(
        "--windows",
        type=int,
        default=None,
        metavar="N",
        help="split what follows the first training window into N test windows",
    )
    walk.add_argument(
        "--anchored",
        action="store_true",
        help="training windows all start at the first bar (default: rolling)",
    )
    _selection_arguments(walk)
    parallel_arguments(walk)
    walk.add_argument(
        "--csv", default=None, metavar="PATH", help="also write the per-window table as CSV"
    )
    walk.set_defaults(handler=_walkforward)

    search = commands.add_parser(
        "search",
        help="model-based parameter search (Optuna TPE), its study kept in the "
        "database: run it again to resume",
    )
    market_arguments(search)
    run_arguments(search)
    search.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fixed strategy parameter (repeatable)",
    )
    search.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="searched parameter (repeatable): NAME=LOW:HIGH (integers if both "
        "are, else continuous), NAME=LOW:HIGH:STEP or NAME=V1,V2,...; "
        "default: the strategy's sweep ranges",
    )
    search.add_argument(
        "--trials",
        type=int,
        default=100,
        help="finished trials the study should reach (default: 100)",
    )
    search.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no trial after this many seconds",
    )
    search.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help="study name (default: derived from the strategy, bars and settings)",
    )
    search.add_argument(
        "--no-pruning",
        action="store_true",
        help="run every trial on all the bars (no median pruning)",
    )
    search.add_argument("--seed", type=int, default=0, help="TPE's seed (default: 0)")
    _selection_arguments(search)
    parallel_arguments(search)
    search.set_defaults(handler=_search)

    sweeps = commands.add_parser("sweeps", help="stored sweeps: list them")
    sweeps_commands = sweeps.add_subparsers(dest="sweeps_command", metavar="COMMAND", required=True)
    listing = sweeps_commands.add_parser("list", help="the stored sweeps, newest first")
    listing.add_argument("--limit", type=int, default=20, help="rows to print (default: 20)")
    listing.set_defaults(handler=_sweeps_list)


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metric", default="sharpe", help="stat that chooses the parameters (default: sharpe)"
    )
    parser.add_argument(
        "--min-trades",
        type=int,
        default=None,
        metavar="N",
        help="choose only parameter sets with at least N closed trades (default: 10)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


# --------------------------------------------------------------------------- shared


def _common(arguments: argparse.Namespace):
    """Strategy, bars, costs, cash, minimum trades and the metric of the command line,
    validated before any backtest."""
    from research.metrics import STAT_NAMES

    spec = resolve_strategy(arguments.strategy)
    costs, cash = run_settings(arguments, spec)
    min_trades = min_trades_setting(arguments)
    if arguments.metric not in STAT_NAMES:
        raise CommandError(
            f"--metric {arguments.metric!r} is not a stat; choose one of {', '.join(STAT_NAMES)}"
        )
    check_n_jobs(arguments)
    market, bars = command_line_bars(arguments)
    return spec, bars, costs, cash, min_trades, market


def _grid_of(spec, arguments: argparse.Namespace, option: str = "grid") -> dict[str, list]:
    grid: dict[str, Any] = {
        name: [value] for name, value in parse_assignments(arguments.param).items()
    }
    given = getattr(arguments, option)
    grid.update(
        parse_grid(given)
        if given and option == "grid"
        else parse_space(given)
        if given
        else dict(spec.sweep)
    )
    if not grid:
        raise CommandError(
            f"strategy {spec.name!r} declares no sweep ranges: pass --{option} NAME=SPEC"
        )
    return grid


def parse_space(items: list[str]) -> dict[str, Any]:
    """``NAME=LOW:HIGH`` -> ``(low, high)`` (integers if both are, else floats),
    ``NAME=LOW:HIGH:STEP`` -> ``range(low, high + 1, step)``, ``NAME=V1,V2`` -> a list."""
    space: dict[str, Any] = {}
    for item in items:
        name, separator, text = item.partition("=")
        name = name.strip()
        if not separator or not name or not text.strip():
            raise CommandError(f"--space {item!r} is not NAME=LOW:HIGH[:STEP] or NAME=V1,V2,...")
        if ":" not in text:
            space[name] = [parse_value(part) for part in text.split(",") if part.strip()]
            continue
        parts = [parse_value(part) for part in text.split(":")]
        numbers = all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts)
        if len(parts) not in (2, 3) or not numbers or not parts[0] < parts[1]:
            raise CommandError(f"--space {item!r}: give LOW:HIGH[:STEP] with LOW < HIGH")
        if len(parts) == 3:
            if not all(isinstance(p, int) for p in parts) or parts[2] <= 0:
                raise CommandError(f"--space {item!r}: a STEP needs integers and STEP > 0")
            space[name] = range(parts[0], parts[1] + 1, parts[2])
        elif all(isinstance(p, int) for p in parts):
            space[name] = (parts[0], parts[1])
        else:
            space[name] = (float(parts[0]), float(parts[1]))
    return space


# --------------------------------------------------------------------------- walkforward


def _walkforward(arguments: argparse.Namespace) -> int:
    from research.formatting import fmt_time, format_frame, stats_text
    from research.validation.reading import read_walkforward
    from research.validation.walkforward import walk_forward
    from research.validation.windows import walk_forward_windows

    spec, bars, costs, cash, min_trades, market = _common(arguments)
    grid = _grid_of(spec, arguments)
    train, test = _length(arguments.train), _length(arguments.test)
    with user_errors(ValueError):
        from research.sweeps import normalize_grid

        grid = normalize_grid(spec, grid)
        walk_forward_windows(
            bars.ts, train, test, n_windows=arguments.windows, anchored=arguments.anchored
        )
    options = engine_options(arguments)
    walk = walk_forward(
        spec,
        bars,
        grid,
        costs,
        train=train,
        test=test,
        n_windows=arguments.windows,
        anchored=arguments.anchored,
        metric=arguments.metric,
        min_trades=min_trades,
        initial_cash=cash,
        progress=not arguments.no_progress,
        **options,
    )
    print(
        f"walk-forward of {spec.name} on {market_text(market, arguments.resample)} "
        f"({len(bars):,} bars), choosing by {arguments.metric}:\n"
    )
    print(read_walkforward(walk) + "\n")
    table = walk.windows.copy()
    for column in ("test_start_ts", "test_end_ts"):
        table[column] = table[column].map(fmt_time)
    columns = (
        ["window", "test_start_ts", "test_end_ts"]
        + list(walk.param_names)
        + ["is_sharpe", "oos_sharpe", "oos_total_return", "oos_trades", "dsr", "pbo"]
    )
    print(format_frame(table[columns], scale=cash).to_string(index=False))
    print("\nstitched out-of-sample run:")
    print(stats_text(walk.stats))
    if arguments.csv:
        path = Path(arguments.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temporary: walk.windows.to_csv(temporary, index=False))
        print(f"\nper-window table written to {path}")
    return 0


def _length(text: str | None) -> Any:
    """A window length: an int (bars) or the text of a duration."""
    if text is None:
        return None
    value = parse_value(text)
    return value if isinstance(value, int) else text


# --------------------------------------------------------------------------- search


def _search(arguments: argparse.Namespace) -> int:
    from research.formatting import format_frame
    from research.validation.reading import read_overfitting
    from research.validation.search import search, search_space
    from research.validation.study import StudyError

    spec, bars, costs, cash, min_trades, market = _common(arguments)
    space = _grid_of(spec, arguments, "space")
    if arguments.trials < 1:
        raise CommandError(f"--trials must be at least 1, got {arguments.trials}")
    if arguments.timeout is not None and not arguments.timeout > 0:
        raise CommandError(
            f"--timeout must be a positive number of seconds, got {arguments.timeout:g}"
        )
    with user_errors(ValueError):
        search_space(spec, space)
    options = engine_options(arguments)
    options.pop("client", None)  # trials reach the cluster through joblib's default client
    with user_errors(StudyError):  # an in-memory database, or a study of another direction
        result = search(
            spec,
            bars,
            space,
            costs,
            initial_cash=cash,
            n_trials=arguments.trials,
            timeout=arguments.timeout,
            metric=arguments.metric,
            min_trades=min_trades,
            study_name=arguments.study,
            database_url=arguments.database_url,
            seed=arguments.seed,
            pruning=not arguments.no_pruning,
            progress=not arguments.no_progress,
            market=dict(zip(("exchange", "symbol", "timeframe"), market, strict=True)),
            **options,
        )
    print(
        f"search of {spec.name} on {market_text(market, arguments.resample)} ({len(bars):,} "
        f"bars): study {result.study_name!r} in {result.storage}"
    )
    print(
        f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed "
        "trials (run the same command again to resume or extend it)\n"
    )
    if result.best is None:
        print(f"no complete trial had at least {min_trades} closed trades (--min-trades)")
        return 0
    complete = result.frame[result.frame["state"] == "complete"]
    from research.sweeps import rank

    best = rank(complete, arguments.metric, min_trades).head(10)
    names = [name for name in space if name in best.columns]
    columns = ["number"] + names + [c for c in SUMMARY_STATS if c in best.columns]
    print(f"best {len(best)} by {arguments.metric}:")
    print(format_frame(best[columns], scale=cash).to_string(index=False))
    if result.overfitting is not None:
        label = ", ".join(f"{name}={result.best[name]}" for name in names)
        print("\n" + read_overfitting(result.overfitting, f"the best trial ({label})"))
    return 0


# --------------------------------------------------------------------------- sweeps


def _sweeps_list(arguments: argparse.Namespace) -> int:
    from candela.core.db import connect
    from research.formatting import fmt_percent, fmt_ratio, fmt_time
    from research.validation.store import list_sweeps

    engine = connect(arguments.database_url)
    try:
        frame = list_sweeps(engine)
    finally:
        engine.dispose()
    if frame.empty:
        print("no stored sweep yet ('candela sweep ...' stores one)")
        return 0
    rows = []
    for row in frame.head(arguments.limit).itertuples():
        market = " ".join(str(v) for v in (row.exchange, row.symbol, row.timeframe) if v)
        rows.append(
            {
                "id": row.sweep_id[:8],
                "kind": row.kind,
                "strategy": row.strategy,
                "market": market or "-",
                "bars": f"{row.n_bars:,}",
                "from": fmt_time(row.start_ts),
                "to": fmt_time(row.end_ts),
                "done": f"{row.n_done}/{row.n_combinations}",
                "status": row.status,
                "metric": row.metric,
                "dsr": fmt_percent(row.dsr, 1),
                "pbo": fmt_percent(row.pbo, 1),
                "best sharpe": fmt_ratio(row.best_sharpe),
                "updated": fmt_time(row.updated_at),
            }
        )
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def report_sweep(arguments: argparse.Namespace) -> int:
    """``candela report --sweep ID``: the sweep report of a stored sweep."""
    from research.validation.sweep_report import run_sweep_report

    given = [
        f"--{name.replace('_', '-')}"
        for name in ("strategy", "exchange", "symbol", "timeframe", "start", "end", "resample")
        if getattr(arguments, name, None) is not None
    ] + (["--param"] if arguments.param else [])
    if given:
        raise CommandError(f"--sweep reports a stored sweep as it ran: drop {', '.join(given)}")
    if arguments.notebook is not None and not Path(arguments.notebook).is_file():
        raise CommandError(f"--notebook {arguments.notebook}: no such notebook file")
    with user_errors(ValueError):
        files = run_sweep_report(
            arguments.sweep,
            database_url=arguments.database_url,
            out_dir=arguments.out,
            notebook=arguments.notebook,
            walkforward_windows=arguments.windows,
            cv_folds=arguments.cv_folds,
            n_jobs=arguments.n_jobs,
        )
    print(f"sweep report notebook written to {files.notebook}")
    if files.html is not None:
        print(f"sweep report HTML written to {files.html}")
    return 0
