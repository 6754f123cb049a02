"""``candela sweep``: every combination of a grid of parameters, ranked, with the overfitting
reading of the best."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError, user_errors
from candela.cli.commands.exports import write_atomically
from candela.cli.commands.parsing import parse_assignments, parse_grid, resolve_strategy
from candela.cli.commands.run_inputs import (
    SUMMARY_STATS,
    check_n_jobs,
    command_line_bars,
    engine_options,
    market_text,
    min_trades_setting,
    run_settings,
)


def run_sweep(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import format_frame
    from research.sweeps import sweep

    spec = resolve_strategy(arguments.strategy)
    fixed = parse_assignments(arguments.param)
    grid: dict[str, list[Any]] = {name: [value] for name, value in fixed.items()}
    grid.update(parse_grid(arguments.grid) if arguments.grid else dict(spec.sweep))
    if not grid:
        raise CommandError(
            f"strategy {spec.name!r} declares no sweep ranges: pass --grid NAME=SPEC"
        )
    costs, cash = run_settings(arguments, spec)
    min_trades = min_trades_setting(arguments)
    market, bars = command_line_bars(arguments)
    _check_sweep(spec, bars, grid, arguments)
    from research.validation.reading import read_overfitting

    stored = None if arguments.no_store else (arguments.database_url or True)
    result = sweep(
        spec,
        bars,
        grid,
        costs,
        initial_cash=cash,
        sample=arguments.sample,
        seed=arguments.seed,
        metric=arguments.metric,
        keep_best=0,
        progress=not arguments.no_progress,
        oos_fraction=arguments.oos_fraction,
        min_trades=min_trades,
        store=stored,
        market=None
        if arguments.resample
        else dict(zip(("exchange", "symbol", "timeframe"), market, strict=True)),
        **engine_options(arguments),
    )
    if result.n_evaluated == 0:
        raise CommandError(
            _none_valid(spec, result.n_combinations, result.invalid_reasons, len(bars))
        )
    print(
        f"{spec.name} on {market_text(market, arguments.resample)} ({len(bars):,} bars): "
        f"{result.n_evaluated} parameter sets evaluated of {result.n_combinations} "
        f"combinations ({result.n_invalid} invalid)"
    )
    best = result.best(arguments.top)
    print(
        f"best {len(best)} by {result.metric}, among the parameter sets with at least "
        f"{min_trades} closed trades ({result.n_too_few_trades} had fewer; --min-trades):"
    )
    columns = list(result.param_names) + [c for c in SUMMARY_STATS if c in best.columns]
    columns += [
        f"oos_{c}" for c in ("total_return", "sharpe", "max_drawdown") if f"oos_{c}" in best.columns
    ]
    if len(best):
        print(format_frame(best[columns], scale=cash).to_string(index=False))
    if result.overfitting is not None:
        print("\n" + read_overfitting(result.overfitting))
    if result.sweep_id is not None:
        print(
            f"\nstored as sweep {result.sweep_id[:8]} (candela sweeps list; candela report "
            f"--sweep {result.sweep_id[:8]})"
        )
    if arguments.csv:
        path = Path(arguments.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temporary: result.frame.to_csv(temporary, index=False))
        print(f"\nall rows written to {path}")
    return 0


def _check_sweep(spec, bars, grid: dict[str, list[Any]], arguments: argparse.Namespace) -> None:
    """Refuse, before any backtest, what the sweep would refuse: the options, the grid's names,
    a grid without a valid combination, a metric that is not a stat."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.metrics import STAT_NAMES
    from research.sweeps import normalize_grid, valid_combinations

    check_n_jobs(arguments)
    if arguments.sample is not None and arguments.sample < 1:
        raise CommandError(
            f"--sample must be a positive number of combinations, got {arguments.sample}"
        )
    shortest = len(bars)
    if arguments.oos_fraction is not None:
        held_out = round(len(bars) * arguments.oos_fraction)
        if not 0 < arguments.oos_fraction < 1 or not 1 <= held_out < len(bars):
            raise CommandError(
                f"--oos-fraction must leave bars on both sides, e.g. 0.3; got "
                f"{arguments.oos_fraction:g} of {len(bars)} bars"
            )
        shortest = min(held_out, len(bars) - held_out)
    metrics = set(STAT_NAMES) | {f"oos_{name}" for name in STAT_NAMES}
    if arguments.metric not in metrics:
        raise CommandError(
            f"--metric {arguments.metric!r} is not a stat; choose one of {', '.join(STAT_NAMES)}"
        )
    with user_errors(ValueError):
        candidates, total, reasons = valid_combinations(spec, normalize_grid(spec, grid))
    if not candidates:
        raise CommandError(_none_valid(spec, total, reasons, shortest))


def _none_valid(spec, total: int, reasons: dict[str, int], n_bars: int) -> str:
    listed = "; ".join(f"{count} x {reason}" for reason, count in reasons.items())
    return (
        f"none of the {total} combinations of the grid is valid for strategy {spec.name!r} "
        f"on {n_bars} bars ({listed}); widen the grid or load more bars"
    )
