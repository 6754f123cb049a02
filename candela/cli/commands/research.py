"""``candela backtest``, ``candela sweep`` and ``candela report``: research from the shell.

This is the one place that resolves strategy names (via :mod:`strategies.registry`), because
research's upper layers receive strategies as arguments and never import them.

Examples::

    candela backtest --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --param fast=10 --param slow=50 --fee 0.001 --html out/backtest.html
    candela sweep --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h \\
        --grid fast=5:50:5 --grid slow=20:200:20 --n-jobs 2
    candela report --strategy sma_cross --exchange binance --symbol BTC/USDT --timeframe 1h
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from candela.cli.commands import CommandError

SUMMARY_STATS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trade_count",
                 "win_rate", "profit_factor", "exposure", "excess_return")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backtest``, ``sweep`` and ``report`` to the top-level commands."""
    backtest = commands.add_parser(
        "backtest", help="backtest one strategy on stored bars; print stats and the last trades")
    _market_arguments(backtest)
    _run_arguments(backtest)
    backtest.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="strategy parameter (repeatable), e.g. --param fast=10")
    backtest.add_argument("--trades", type=int, default=10, metavar="N",
                          help="how many of the last trades to print (default: 10)")
    backtest.add_argument("--html", default=None, metavar="PATH",
                          help="also write the chart as a standalone offline HTML file")
    backtest.add_argument("--csv", default=None, metavar="DIR",
                          help="also write stats.csv, trades.csv, fills.csv and equity.csv "
                               "into DIR (fractions, ISO times in UTC, durations in ms)")
    backtest.add_argument("--json", default=None, metavar="FILE",
                          help="also write the run, its stats and its trades as JSON")
    backtest.set_defaults(handler=_backtest)

    sweep = commands.add_parser(
        "sweep", help="backtest a strategy over a parameter grid; print the best parameter sets")
    _market_arguments(sweep)
    _run_arguments(sweep)
    sweep.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="fixed strategy parameter (repeatable)")
    sweep.add_argument("--grid", action="append", default=[], metavar="NAME=SPEC",
                       help="swept parameter (repeatable): NAME=START:STOP:STEP (STOP included) "
                            "or NAME=V1,V2,...; default: the strategy's own sweep ranges")
    sweep.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores)")
    sweep.add_argument("--sample", type=int, default=None, metavar="N",
                       help="evaluate a random subset of N valid combinations")
    sweep.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    sweep.add_argument("--metric", default="sharpe", help="stat to rank by (default: sharpe)")
    sweep.add_argument("--top", type=int, default=10, help="rows to print (default: 10)")
    sweep.add_argument("--min-trades", type=int, default=None, metavar="N",
                       help="rank only parameter sets with at least N closed trades "
                            "(default: 10; 0 ranks all)")
    sweep.add_argument("--oos-fraction", type=float, default=None, metavar="F",
                       help="hold out the last F of the bars (e.g. 0.3): rank on the rest, "
                            "report oos_ stats too")
    sweep.add_argument("--csv", default=None, metavar="PATH", help="also write every row as CSV")
    sweep.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sweep.set_defaults(handler=_sweep)

    report = commands.add_parser(
        "report", help="execute the report notebook with papermill into out/ (HTML if possible)")
    _market_arguments(report)
    report.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="strategy parameter (repeatable)")
    report.add_argument("--fee", type=float, default=0.001, help="fee rate (default: 0.001)")
    report.add_argument("--slippage-bps", type=float, default=0.0, help="slippage in bps")
    report.add_argument("--out", default="out", help="output folder (default: out/)")
    report.add_argument("--notebook", default=None, metavar="PATH",
                        help="report notebook (default: notebooks/02_report.ipynb)")
    report.set_defaults(handler=_report)


def _market_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="strategy name, e.g. sma_cross")
    parser.add_argument("--exchange", required=True, help="exchange id, e.g. binance")
    parser.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDT")
    parser.add_argument("--timeframe", required=True, help="bar timeframe, e.g. 1h")
    parser.add_argument("--start", default=None, help="first bar close time (ISO date/time, UTC)")
    parser.add_argument("--end", default=None, help="last bar close time (ISO date/time, UTC)")
    parser.add_argument("--resample", default=None, metavar="TIMEFRAME",
                        help="aggregate the bars to a coarser timeframe first, e.g. 1h")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fee", type=float, default=0.001,
                        help="fee as a fraction of notional (default: 0.001 = 0.1 %%)")
    parser.add_argument("--slippage-bps", type=float, default=0.0,
                        help="slippage in basis points against the trader (default: 0)")
    parser.add_argument("--cash", type=float, default=10_000.0,
                        help="initial cash in the quote currency (default: 10000)")


# --------------------------------------------------------------------------- handlers


def _backtest(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.cli.commands.warmup import compile_notice
    from research.backtesting import backtest
    from research.formatting import stats_text, trades_table
    from research.types import Costs

    spec = resolve_strategy(arguments.strategy)
    params = spec.make_params(parse_assignments(arguments.param))
    bars = _load_bars(arguments)
    costs = Costs(fee_rate=arguments.fee, slippage_bps=arguments.slippage_bps)
    with compile_notice():
        result = backtest(spec, bars, params, costs, initial_cash=arguments.cash)
    print(f"{spec.name} {_format_params(params)} on {_market(arguments)}: {len(bars):,} bars; "
          f"fee {100 * arguments.fee:g} %, slippage {arguments.slippage_bps:g} bp")
    print("(returns and rates in %, of the quote currency; see the basis of each figure)\n")
    print(stats_text(result.stats))
    trades = result.trades
    print(f"\nlast {min(arguments.trades, len(trades))} of {len(trades)} trades:")
    if len(trades) and arguments.trades > 0:
        table = trades_table(trades.tail(arguments.trades), scale=result.initial_cash)
        print(table.to_string(index=False))
    if arguments.csv:
        for path in _export_csv(result, Path(arguments.csv)):
            print(f"\nwritten: {path}", end="")
        print()
    if arguments.json:
        path = _export_json(result, arguments, Path(arguments.json))
        print(f"\nrun written to {path}")
    if arguments.html:
        path = Path(arguments.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda temporary: result.plot().write_html(
            temporary, include_plotlyjs=True))
        print(f"\nchart written to {path}")
    return 0


def _sweep(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import format_frame
    from research.metrics import DEFAULT_MIN_TRADES
    from research.sweeps import sweep
    from research.types import Costs

    spec = resolve_strategy(arguments.strategy)
    fixed = parse_assignments(arguments.param)
    grid: dict[str, list[Any]] = {name: [value] for name, value in fixed.items()}
    grid.update(parse_grid(arguments.grid) if arguments.grid else dict(spec.sweep))
    if not grid:
        raise CommandError(f"strategy {spec.name!r} declares no sweep ranges: pass --grid NAME=SPEC")
    min_trades = DEFAULT_MIN_TRADES if arguments.min_trades is None else arguments.min_trades
    bars = _load_bars(arguments)
    costs = Costs(fee_rate=arguments.fee, slippage_bps=arguments.slippage_bps)
    result = sweep(spec, bars, grid, costs, initial_cash=arguments.cash, n_jobs=arguments.n_jobs,
                   sample=arguments.sample, seed=arguments.seed, metric=arguments.metric,
                   keep_best=0, progress=not arguments.no_progress,
                   oos_fraction=arguments.oos_fraction, min_trades=min_trades)
    print(f"{spec.name} on {_market(arguments)} ({len(bars):,} bars): {result.n_evaluated} "
          f"parameter sets evaluated of {result.n_combinations} combinations "
          f"({result.n_invalid} invalid)")
    best = result.best(arguments.top)
    print(f"best {len(best)} by {result.metric}, among the parameter sets with at least "
          f"{min_trades} closed trades ({result.n_too_few_trades} had fewer; --min-trades):")
    columns = list(result.param_names) + [c for c in SUMMARY_STATS if c in best.columns]
    columns += [f"oos_{c}" for c in ("total_return", "sharpe", "max_drawdown")
                if f"oos_{c}" in best.columns]
    if len(best):
        table = format_frame(best[columns], scale=arguments.cash)
        print(table.to_string(index=False))
    if arguments.csv:
        path = Path(arguments.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda temporary: result.frame.to_csv(temporary, index=False))
        print(f"\nall rows written to {path}")
    return 0


def _report(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.report import run_report

    spec = resolve_strategy(arguments.strategy)
    params = spec.make_params(parse_assignments(arguments.param))
    bars = _load_bars(arguments)  # user errors (market, dates, resample) end here, in one line
    spec.check_enough_bars(len(bars), params)
    files = run_report(spec.name, params._asdict(), arguments.exchange, arguments.symbol,
                       arguments.timeframe, start=arguments.start, end=arguments.end,
                       fee=arguments.fee, slippage_bps=arguments.slippage_bps,
                       database_url=arguments.database_url, out_dir=arguments.out,
                       notebook=arguments.notebook, resample=arguments.resample)
    print(f"report notebook written to {files.notebook}")
    if files.html is not None:
        print(f"report HTML written to {files.html}")
    return 0


def format_stats(stats) -> str:
    """The stats as aligned ``name  value  basis`` lines (:func:`research.formatting.stats_text`)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import stats_text

    return stats_text(stats)


# --------------------------------------------------------------------------- exports


def _write_atomically(path: Path, write) -> None:
    """Call ``write(temporary path)`` next to ``path``, then rename it to ``path``: a failed
    write leaves nothing behind."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _export_csv(result, folder: Path) -> list[Path]:
    """Write ``stats.csv``, ``trades.csv``, ``fills.csv`` and ``equity.csv`` into ``folder``."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    stats = result.stats.rename_axis("stat").rename("value").to_frame()
    equity = pd.DataFrame({"equity": result.equity, "cash": result.cash,
                           "position": result.position})
    tables = {"stats.csv": (stats, True), "trades.csv": (_machine_table(result.trades), False),
              "fills.csv": (_machine_table(result.fills), False),
              "equity.csv": (_machine_table(equity.reset_index()), False)}
    written = []
    for name, (table, index) in tables.items():
        path = folder / name
        _write_atomically(path, lambda temporary, t=table, i=index: t.to_csv(temporary, index=i))
        written.append(path)
    return written


def _machine_table(frame):
    """``frame`` for files: times as ISO 8601 UTC text, durations as ``<name>_ms`` integers."""
    import pandas as pd

    out = frame.copy()
    for name in list(out.columns):
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = column.map(lambda t: t.isoformat() if pd.notna(t) else None)
        elif pd.api.types.is_timedelta64_dtype(column):
            out[name] = (column / pd.Timedelta(milliseconds=1)).astype("Int64")
            out = out.rename(columns={name: f"{name}_ms"})
    return out


def _export_json(result, arguments: argparse.Namespace, path: Path) -> Path:
    """Write the run (strategy, parameters, market, costs), its stats and its trades as JSON:
    fractions and ms as in ``research.metrics``; ``nan`` is ``null``, infinities are the
    strings ``"inf"`` and ``"-inf"``."""
    import json

    def plain(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if hasattr(value, "item"):  # numpy scalars
            return plain(value.item())
        return value

    trades = _machine_table(result.trades)
    document = {
        "strategy": result.spec_name,
        "params": {key: plain(value) for key, value in result.params._asdict().items()},
        "market": {"exchange": arguments.exchange, "symbol": arguments.symbol,
                   "timeframe": arguments.resample or arguments.timeframe},
        "costs": {"fee_rate": arguments.fee, "slippage_bps": arguments.slippage_bps},
        "initial_cash": result.initial_cash,
        "stats": {name: plain(value) for name, value in result.stats.items()},
        "trades": [{key: plain(value) if value is not None else None
                    for key, value in row.items()}
                   for row in trades.astype(object).where(trades.notna(), None)
                   .to_dict(orient="records")],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, lambda temporary: temporary.write_text(
        json.dumps(document, indent=1, allow_nan=False), encoding="utf-8"))
    return path


# --------------------------------------------------------------------------- parsing


def resolve_strategy(name: str):
    """Return the :class:`~research.types.StrategySpec` registered as ``name``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from strategies.registry import get_strategy

    return get_strategy(name)


def parse_value(text: str) -> Any:
    """Parse ``text`` as int, float, bool (true/false) or, failing those, keep the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Parse ``["fast=10", "slow=50"]`` into ``{"fast": 10, "slow": 50}``."""
    values: dict[str, Any] = {}
    for item in items:
        name, separator, text = item.partition("=")
        if not separator or not name.strip() or not text.strip():
            raise CommandError(f"--param {item!r} is not NAME=VALUE, e.g. --param fast=10")
        values[name.strip()] = parse_value(text)
    return values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """Parse ``NAME=START:STOP:STEP`` (stop included) or ``NAME=V1,V2,...`` into value lists."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, separator, text = item.partition("=")
        name = name.strip()
        if not separator or not name or not text.strip():
            raise CommandError(f"--grid {item!r} is not NAME=START:STOP:STEP or NAME=V1,V2,...")
        if ":" in text:
            grid[name] = _parse_range(item, text)
        else:
            grid[name] = [parse_value(part) for part in text.split(",") if part.strip()]
    return grid


def _parse_range(item: str, text: str) -> list[Any]:
    parts = [parse_value(part) for part in text.split(":")]
    if len(parts) == 2:
        parts.append(1)
    if len(parts) != 3 or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                  for p in parts):
        raise CommandError(f"--grid {item!r}: the range must be START:STOP[:STEP] with numbers")
    start, stop, step = parts
    if step <= 0 or stop < start:
        raise CommandError(f"--grid {item!r}: need START <= STOP and a positive STEP")
    if all(isinstance(p, int) for p in parts):
        return list(range(start, stop + 1, step))
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return [round(start + i * step, 12) for i in range(count)]


def _load_bars(arguments: argparse.Namespace):
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from research.data import load_bars, resample

    engine = connect(arguments.database_url)
    try:
        bars = load_bars(engine, arguments.exchange, arguments.symbol, arguments.timeframe,
                         _to_ms(arguments.start), _to_ms(arguments.end))
    finally:
        engine.dispose()
    if len(bars) == 0:
        raise CommandError(
            f"no {arguments.timeframe} bars of {arguments.exchange} {arguments.symbol} in the "
            "database for that period: import some with 'candela data import' or "
            "'candela data backfill' (see 'candela data inventory')")
    if getattr(arguments, "resample", None):
        source = len(bars)
        bars = resample(bars, arguments.resample)
        if len(bars) == 0:
            raise CommandError(f"no whole {arguments.resample} bar in the {source} "
                               f"{arguments.timeframe} bars of that period: widen --start/--end")
    return bars


def _market(arguments: argparse.Namespace) -> str:
    """``exchange symbol timeframe``, with the resampling if any."""
    text = f"{arguments.exchange} {arguments.symbol} {arguments.timeframe}"
    if getattr(arguments, "resample", None):
        text += f" resampled to {arguments.resample}"
    return text


def _to_ms(text: str | None) -> int | None:
    if text is None:
        return None
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise CommandError(f"cannot read time {text!r}: use an ISO date such as 2024-01-31 "
                           "or 2024-01-31T12:00") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def _format_params(params: Any) -> str:
    return "(" + ", ".join(f"{key}={value}" for key, value in params._asdict().items()) + ")"
