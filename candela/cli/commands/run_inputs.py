"""What the research commands run on: their market and cost arguments, the stored bars, the
costs and cash, validated (shared by ``backtest``, ``sweep``, ``report``, ``walkforward`` and
``search``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from candela.cli.commands import CommandError, user_errors

DEFAULT_FEE, DEFAULT_SLIPPAGE_BPS, DEFAULT_CASH = 0.001, 0.0, 10_000.0

SUMMARY_STATS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "trade_count",
    "win_rate",
    "profit_factor",
    "exposure",
    "excess_return",
)
"""The statistics the commands' summaries show, in order."""


def market_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--strategy",
        required=required,
        default=None,
        help="strategy: a name (see 'candela strategies list') or module:ATTRIBUTE",
    )
    parser.add_argument(
        "--exchange", required=required, default=None, help="exchange id, e.g. binance"
    )
    parser.add_argument(
        "--symbol", required=required, default=None, help="unified symbol, e.g. BTC/USDT"
    )
    parser.add_argument(
        "--timeframe", required=required, default=None, help="bar timeframe, e.g. 1h"
    )
    parser.add_argument("--start", default=None, help="first bar close time (ISO date/time, UTC)")
    parser.add_argument("--end", default=None, help="last bar close time (ISO date/time, UTC)")
    parser.add_argument(
        "--resample",
        default=None,
        metavar="TIMEFRAME",
        help="aggregate the bars to a coarser timeframe first, e.g. 4h",
    )


def run_arguments(parser: argparse.ArgumentParser) -> None:
    # None marks "not given" (``backtest --bot`` takes them from the file); see run_settings
    parser.add_argument(
        "--fee",
        type=float,
        default=None,
        help=f"fee as a fraction of notional (default: {DEFAULT_FEE} = 0.1 %%)",
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=None,
        help="slippage in basis points against the trader (default: 0)",
    )
    parser.add_argument(
        "--cash",
        type=float,
        default=None,
        help=f"initial cash in the quote currency (default: {DEFAULT_CASH:.0f})",
    )


def parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """``--n-jobs`` and ``--scheduler`` (read by :func:`engine_options`)."""
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="workers (threads for rows without stops or limits, else processes; -1: all cores)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster of this scheduler (tcp://HOST:8786; "
        "needs the distributed extra)",
    )


def check_n_jobs(arguments: argparse.Namespace) -> None:
    """Refuse ``--n-jobs 0``."""
    if arguments.n_jobs == 0:
        raise CommandError("--n-jobs must be a positive number of workers or -1 (all cores), got 0")


def engine_options(arguments: argparse.Namespace) -> dict[str, Any]:
    """``n_jobs``, ``backend`` and ``client`` for ``--n-jobs`` / ``--scheduler``."""
    if arguments.scheduler is None:
        return {"n_jobs": arguments.n_jobs, "backend": "auto"}
    from research.validation.distributed import connect_cluster

    with user_errors(ValueError):
        client = connect_cluster(arguments.scheduler)
    return {"n_jobs": -1, "backend": "dask", "client": client}


def run_settings(arguments: argparse.Namespace, spec) -> tuple[Any, float]:
    """Costs and initial cash of the command line, validated (defaults for those not given)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.kernels.records import make_config
    from research.types import Costs, RiskLimits

    fee = DEFAULT_FEE if arguments.fee is None else arguments.fee
    slippage = DEFAULT_SLIPPAGE_BPS if arguments.slippage_bps is None else arguments.slippage_bps
    cash = DEFAULT_CASH if arguments.cash is None else arguments.cash
    costs = Costs(fee_rate=fee, slippage_bps=slippage)
    with user_errors(ValueError):
        make_config(costs, spec.stops, RiskLimits())
    if not (math.isfinite(cash) and cash > 0):
        raise CommandError(f"--cash must be a positive amount of quote currency, got {cash:g}")
    return costs, cash


def market_checks(exchange: str, symbol: str, timeframe: str) -> None:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.markets import validate_exchange, validate_symbol
    from candela.core.timeframes import timeframe_to_ms

    validate_exchange(exchange)
    validate_symbol(symbol)
    timeframe_to_ms(timeframe)


def format_stats(stats) -> str:
    """The stats as aligned ``name  value  basis`` lines (:func:`research.formatting.stats_text`)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.formatting import stats_text

    return stats_text(stats)


def load_market_bars(
    database_url: str | None,
    market: tuple[str, str, str],
    start_ms: int | None,
    end_ms: int | None,
    resample: str | None = None,
    *,
    history: int = 0,
):
    """The stored bars of ``market`` in the period, aggregated to ``resample`` if given, with
    up to ``history`` bars (of the final timeframe) before ``start_ms``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect
    from candela.core.timeframes import timeframe_to_ms
    from research.data import load_bars
    from research.data import resample as resample_bars

    if history and resample:
        with user_errors(ValueError):  # an unknown timeframe
            ratio = -(-timeframe_to_ms(resample) // timeframe_to_ms(market[2]))
        history = (history + 1) * ratio  # whole coarse bars, the first one possibly partial
    engine = connect(database_url)
    try:
        with user_errors(ValueError):  # a malformed market, or no bars stored in that period
            bars = load_bars(engine, *market, start_ms, end_ms, history=history)
    finally:
        engine.dispose()
    if resample:
        with user_errors(ValueError):  # an unknown or finer timeframe
            coarse = resample_bars(bars, resample)
        if len(coarse) == 0:
            raise CommandError(
                f"no whole {resample} bar in the {len(bars)} {market[2]} bars of "
                "that period: widen --start/--end"
            )
        return coarse
    return bars


def command_line_bars(arguments: argparse.Namespace):
    """``(market, bars)`` of ``--exchange/--symbol/--timeframe``, ``--start``/``--end`` and
    ``--resample`` (:func:`load_market_bars`; the user's mistakes as one-line errors)."""
    from candela.cli.commands.parsing import to_ms

    market = (arguments.exchange, arguments.symbol, arguments.timeframe)
    bars = load_market_bars(
        arguments.database_url,
        market,
        to_ms(arguments.start),
        to_ms(arguments.end),
        arguments.resample,
    )
    return market, bars


def min_trades_setting(arguments: argparse.Namespace) -> int:
    """``--min-trades`` (default ``research.metrics.DEFAULT_MIN_TRADES``), checked."""
    from research.metrics import DEFAULT_MIN_TRADES

    min_trades = DEFAULT_MIN_TRADES if arguments.min_trades is None else arguments.min_trades
    if min_trades < 0:
        raise CommandError(f"--min-trades must be 0 or more, got {min_trades}")
    return min_trades


def market_text(market: tuple[str, str, str], resample: str | None) -> str:
    """``exchange symbol timeframe``, with the resampling if any."""
    text = " ".join(market)
    return text + (f" resampled to {resample}" if resample else "")
