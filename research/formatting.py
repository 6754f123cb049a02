"""How Candela shows numbers: one module for the CLI, the notebooks, the charts and the reports.

The unit convention, said once
------------------------------
Every number Candela *computes* is a fraction (``0.12`` is 12 %), a time in ms UTC or a
duration in ms (:mod:`research.metrics`). Every number Candela *shows* goes through this
module: fractions as percentages with a ``%`` sign, times as UTC dates, durations as ``3 d 4 h``,
prices and sizes with the digits they need, money with the account's precision, and never in
scientific notation.

Tables come out as DataFrames of strings (the same text in a terminal, a notebook and an HTML
report): :func:`stats_table` (with the basis of each figure), :func:`trades_table`,
:func:`format_frame` for any frame of stats (e.g. a sweep's rows). :func:`readable_pandas`
switches a notebook's default float display to positional notation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from research.metrics import DEFAULT_MIN_TRADES, YEAR_MS

MISSING = "n/a"
#: Largest number of decimals any figure is shown with.
MAX_DECIMALS = 12

# Each stat's kind of value and the basis it is computed on ({years}, {per_year},
# {nominal}, {timeframe} are filled in from the stats themselves).
STATS: dict[str, tuple[str, str]] = {
    "start_ts": ("time", "close time of the first bar"),
    "end_ts": ("time", "close time of the last bar"),
    "n_bars": ("count", "bars in the run"),
    "elapsed_ms": (
        "duration",
        "calendar time, first open to last close, gaps included ({years} years)",
    ),
    "bars_per_year": (
        "number",
        "bars per calendar year in the data ({nominal} if complete); "
        "annualises volatility, Sharpe and Sortino",
    ),
    "missing_bars": ("count", "bars of the {timeframe} grid absent inside the run"),
    "coverage": ("percent", "share of the grid's bars present"),
    "gaps": ("count", "spans of missing bars"),
    "longest_gap_ms": ("duration", "longest span without a bar"),
    "gaps_held": ("count", "gaps crossed while holding a position"),
    "initial_cash": ("money", "quote currency"),
    "final_equity": ("money", "quote currency, marked at the last close"),
    "total_return": ("return", "final equity / initial cash - 1"),
    "cagr": ("return", "compounded per calendar year over {years} years"),
    "annual_volatility": ("percent", "std of bar returns x sqrt({per_year} bars/year)"),
    "sharpe": ("ratio", "mean / std of bar returns x sqrt({per_year}); risk-free rate 0"),
    "sortino": ("ratio", "mean / downside deviation of bar returns x sqrt({per_year})"),
    "calmar": ("ratio", "CAGR / max drawdown"),
    "max_drawdown": ("percent", "largest fall from a peak (the initial cash counts as one)"),
    "max_drawdown_duration_ms": ("duration", "longest time below a peak"),
    "buy_hold_return": ("return", "buy at the first open, hold to the last close, no costs"),
    "buy_hold_sharpe": ("ratio", "as sharpe, for buy and hold"),
    "buy_hold_max_drawdown": ("percent", "as max_drawdown, for buy and hold"),
    "excess_return": ("return", "total_return - buy_hold_return"),
    "trade_count": ("count", "closed round trips (flat to flat)"),
    "win_rate": ("percent", "share of closed trades with a net P&L > 0"),
    "profit_factor": ("ratio", "gross profit / gross loss of closed trades"),
    "expectancy": ("money", "mean net P&L per closed trade, quote currency"),
    "average_holding_ms": ("duration", "mean time in a closed trade"),
    "exposure": ("percent", "share of bars that end holding a position"),
    "total_fees": ("money", "quote currency, every fill"),
}

#: Groups of :data:`STATS` for printing, in order.
SECTIONS: dict[str, tuple[str, ...]] = {
    "period": ("start_ts", "end_ts", "n_bars", "elapsed_ms", "bars_per_year"),
    "data": ("missing_bars", "coverage", "gaps", "longest_gap_ms", "gaps_held"),
    "returns": (
        "initial_cash",
        "final_equity",
        "total_return",
        "cagr",
        "annual_volatility",
        "sharpe",
        "sortino",
        "calmar",
        "max_drawdown",
        "max_drawdown_duration_ms",
    ),
    "benchmark": ("buy_hold_return", "buy_hold_sharpe", "buy_hold_max_drawdown", "excess_return"),
    "trades": (
        "trade_count",
        "win_rate",
        "profit_factor",
        "expectancy",
        "average_holding_ms",
        "exposure",
        "total_fees",
    ),
}

#: Kinds of the columns of ``Result.trades`` and ``Result.fills``.
TABLE_COLUMNS: dict[str, str] = {
    "entry_time": "timestamp",
    "exit_time": "timestamp",
    "ts": "timestamp",
    "bar_ts": "timestamp",
    "size": "quantity",
    "entry_price": "price",
    "exit_price": "price",
    "price": "price",
    "fees": "money",
    "fee": "money",
    "pnl": "money",
    "realized_pnl": "money",
    "return": "return",
    "duration": "timedelta",
    "cash_after": "money",
    "position_after": "quantity",
    # research.tearsheet.drawdown_periods
    "peak": "timestamp",
    "trough": "timestamp",
    "recovered": "timestamp",
    "depth": "percent",
    "to_trough": "timedelta",
    "length": "timedelta",
}


# --------------------------------------------------------------------------- single values


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _clean(text: str) -> str:
    """``-0.00`` -> ``0.00``: a value that rounds to zero has no sign."""
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return text[1:]
    return text


def _infinite(value: float) -> str | None:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def decimals_for(magnitude: float, significant: int = 6) -> int:
    """Decimals that show ``significant`` digits of a number of size ``magnitude`` (at least
    0, at most :data:`MAX_DECIMALS`)."""
    magnitude = abs(float(magnitude))
    if not math.isfinite(magnitude) or magnitude == 0:
        return 2
    return int(min(MAX_DECIMALS, max(0, significant - 1 - math.floor(math.log10(magnitude)))))


def fmt_fixed(value: Any, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators."""
    if _missing(value):
        return MISSING
    value = float(value)
    return _infinite(value) or _clean(f"{value:,.{decimals}f}")


def fmt_number(value: Any, significant: int = 6) -> str:
    """A number in positional notation with about ``significant`` significant digits (whole
    numbers keep all their digits): ``0.0000234567``, ``7,123.46``, ``206,326,012``."""
    if _missing(value):
        return MISSING
    value = float(value)
    if _infinite(value):
        return _infinite(value)
    return fmt_fixed(value, decimals_for(value, significant))


def fmt_percent(value: Any, decimals: int = 2, signed: bool = False) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``12.34 %`` (``+12.34 %`` when signed)."""
    if _missing(value):
        return MISSING
    value = float(value)
    if _infinite(value):
        return _infinite(value)
    text = _clean(f"{100.0 * value:,.{decimals}f}")
    if signed and not text.startswith("-") and any(c in "123456789" for c in text):
        text = "+" + text
    return f"{text} %"


def fmt_ratio(value: Any) -> str:
    """A ratio (Sharpe, profit factor, ...) with two decimals."""
    return fmt_fixed(value, 2)


def fmt_count(value: Any) -> str:
    """A whole number with thousands separators."""
    if _missing(value):
        return MISSING
    return f"{int(round(float(value))):,}"


def money_decimals(scale: float | None) -> int:
    """Decimals for amounts of an account whose size is ``scale`` (e.g. its initial cash):
    2 for 1,000 and more, more for smaller accounts (5 for 1 BTC)."""
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return 2
    return int(max(2, min(MAX_DECIMALS, 5 - math.floor(math.log10(scale)))))


def fmt_money(value: Any, scale: float | None = None) -> str:
    """An amount of quote currency with :func:`money_decimals` of ``scale``."""
    return fmt_fixed(value, money_decimals(scale))


def fmt_duration(milliseconds: Any) -> str:
    """A duration in ms as its two largest units: ``183 d 14 h``, ``2 h 02 min``,
    ``32 min 10 s``, ``45 s``, ``0.25 s``."""
    if _missing(milliseconds):
        return MISSING
    if isinstance(milliseconds, (pd.Timedelta, np.timedelta64)):
        milliseconds = pd.Timedelta(milliseconds) / pd.Timedelta(milliseconds=1)
    ms = float(milliseconds)
    if _infinite(ms):
        return _infinite(ms)
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    seconds = round(ms / 1000.0)
    if ms < 1000.0:
        return f"{sign}{ms / 1000.0:.2f} s" if ms else "0 s"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days:,} d {hours} h" if hours else f"{sign}{days:,} d"
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    if minutes:
        return f"{sign}{minutes} min {secs:02d} s"
    return f"{sign}{secs} s"


def fmt_time(value: Any) -> str:
    """A time (ms UTC, a Timestamp or a datetime) as ``2018-01-20 04:56 UTC`` (seconds only
    when not zero)."""
    if _missing(value):
        return MISSING
    if isinstance(value, (int, float, np.integer, np.floating)):
        stamp = pd.Timestamp(int(value), unit="ms", tz="UTC")
    else:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    pattern = "%Y-%m-%d %H:%M:%S" if stamp.second or stamp.microsecond else "%Y-%m-%d %H:%M"
    return stamp.strftime(pattern) + " UTC"


def fmt_timeframe(milliseconds: Any) -> str:
    """A bar length as its shortest name: ``1m``, ``4h``, ``1d``."""
    if _missing(milliseconds) or float(milliseconds) <= 0:
        return MISSING
    ms = int(milliseconds)
    for unit, size in (
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"


def format_value(
    kind: str, value: Any, *, scale: float | None = None, decimals: int | None = None
) -> str:
    """Format ``value`` as a ``kind`` of :data:`STATS` or :data:`TABLE_COLUMNS`."""
    if kind == "time" or kind == "timestamp":
        return fmt_time(value)
    if kind == "count":
        return fmt_count(value)
    if kind in ("duration", "timedelta"):
        return fmt_duration(value)
    if kind == "percent":
        return fmt_percent(value)
    if kind == "return":
        return fmt_percent(value, signed=True)
    if kind == "ratio":
        return fmt_ratio(value)
    if kind == "money":
        return fmt_money(value, scale)
    if kind in ("price", "quantity") and decimals is not None:
        return fmt_fixed(value, decimals)
    if kind == "number" and not _missing(value) and abs(float(value)) >= 1000:
        return fmt_fixed(value, 0)
    return fmt_number(value)


# --------------------------------------------------------------------------- tables


def stat_kind(name: str) -> str | None:
    """The kind of a stat, also for prefixed columns such as ``oos_sharpe``."""
    if name in STATS:
        return STATS[name][0]
    prefix, _, rest = name.partition("_")
    if rest in STATS and prefix in ("oos", "is"):
        return STATS[rest][0]
    return None


def _basis(name: str, stats: Mapping[str, Any]) -> str:
    template = STATS[name][1]
    elapsed = stats.get("elapsed_ms")
    years = float(elapsed) / YEAR_MS if not _missing(elapsed) else math.nan
    timeframe = _timeframe_of(stats)
    nominal = YEAR_MS / timeframe if timeframe else math.nan
    return template.format(
        years=fmt_fixed(years, 2),
        per_year=format_value("number", stats.get("bars_per_year")),
        nominal=format_value("number", nominal),
        timeframe=fmt_timeframe(timeframe),
    )


def _timeframe_of(stats: Mapping[str, Any]) -> float | None:
    """The bar length behind ``stats``: elapsed time over bars present plus missing."""
    try:
        total = float(stats["n_bars"]) + float(stats["missing_bars"])
        return float(stats["elapsed_ms"]) / total if total > 0 else None
    except (KeyError, TypeError, ValueError):
        return None


def stats_table(stats: Mapping[str, Any] | pd.Series) -> pd.DataFrame:
    """The stats of a run as text: one row per stat (in :data:`SECTIONS` order, unknown ones
    last), columns ``section``, ``value`` and ``basis`` (how the figure is computed)."""
    stats = dict(stats.items()) if isinstance(stats, pd.Series) else dict(stats)
    scale = stats.get("initial_cash")
    rows = []
    listed = [(section, name) for section, names in SECTIONS.items() for name in names]
    listed += [("other", name) for name in stats if name not in STATS]
    for section, name in listed:
        if name not in stats:
            continue
        kind = stat_kind(name) or "number"
        basis = _basis(name, stats) if name in STATS else ""
        rows.append((name, section, format_value(kind, stats[name], scale=scale), basis))
    frame = pd.DataFrame(rows, columns=["stat", "section", "value", "basis"]).set_index("stat")
    frame.index.name = None
    return frame


def stats_text(stats: Mapping[str, Any] | pd.Series, *, basis: bool = True) -> str:
    """:func:`stats_table` as aligned text lines, a blank line between sections, then the
    :func:`stats_warnings` (each line starts with ``warning:``)."""
    table = stats_table(stats)
    width = max((len(str(name)) for name in table.index), default=0)
    value_width = max((len(value) for value in table["value"]), default=0)
    lines: list[str] = []
    previous = None
    for name, row in table.iterrows():
        if previous is not None and row["section"] != previous:
            lines.append("")
        previous = row["section"]
        text = f"{str(name):<{width}}  {row['value']:>{value_width}}"
        if basis and row["basis"]:
            text += f"  {row['basis']}"
        lines.append(text.rstrip())
    warnings = stats_warnings(stats)
    if warnings:
        lines.append("")
        lines.extend(f"warning: {warning}" for warning in warnings)
    return "\n".join(lines)


def stats_warnings(
    stats: Mapping[str, Any] | pd.Series, min_trades: int = DEFAULT_MIN_TRADES
) -> list[str]:
    """What a reader of ``stats`` must know before trusting them (empty when nothing)."""
    get = stats.get
    warnings = []
    held, gaps = get("gaps_held"), get("gaps")
    if not _missing(held) and held > 0:
        warnings.append(
            f"a position was held across {fmt_count(held)} of the {fmt_count(gaps)} data gaps "
            f"(longest gap {fmt_duration(get('longest_gap_ms'))}): prices moved where no bar "
            "was traded, and the first fill after a gap is at the open of the next bar"
        )
    coverage = get("coverage")
    if not _missing(coverage) and coverage < 0.9:
        warnings.append(
            f"the bars cover only {fmt_percent(coverage)} of the period "
            f"({fmt_count(get('missing_bars'))} bars missing): annualised figures extrapolate "
            "from the bars present"
        )
    count = get("trade_count")
    if not _missing(count) and count < min_trades:
        warnings.append(
            f"only {fmt_count(count)} closed trade{'s' if count != 1 else ''}: win rate, "
            f"profit factor and expectancy need at least {min_trades} to mean much"
        )
    return warnings


def format_frame(
    frame: pd.DataFrame, *, scale: float | None = None, kinds: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """``frame`` with every column as text: columns named in ``kinds`` as that kind (see
    :func:`format_value`), stat columns (also ``oos_``-prefixed) by their kind, trade and fill
    columns (:data:`TABLE_COLUMNS`) with one precision per column, other numbers positional.
    ``scale`` sets the money precision (:func:`money_decimals`)."""
    kinds = kinds or {}
    out = pd.DataFrame(index=frame.index)
    for name in frame.columns:
        column = frame[name]
        kind = kinds.get(name) or stat_kind(str(name)) or TABLE_COLUMNS.get(str(name))
        out[name] = _format_column(column, kind, scale)
    return out


def format_rows(
    frame: pd.DataFrame, kinds: Mapping[str, str], *, scale: float | None = None
) -> pd.DataFrame:
    """``frame`` as text row by row: each row named in ``kinds`` as that kind, other rows as
    counts (e.g. :func:`research.tearsheet.trade_analysis`)."""
    out = frame.astype(object).copy()
    for name in frame.index:
        kind = kinds.get(name, "count")
        out.loc[name] = [format_value(kind, value, scale=scale) for value in frame.loc[name]]
    return out


def _format_column(column: pd.Series, kind: str | None, scale: float | None) -> list[str]:
    values = column.tolist()
    if kind is None:
        if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
            return ["" if _missing(v) else str(v) for v in values]
        if pd.api.types.is_integer_dtype(column):
            return [fmt_count(v) for v in values]
        decimals = _column_decimals(column)
        return [fmt_fixed(v, decimals) for v in values]
    decimals = _column_decimals(column) if kind in ("price", "quantity") else None
    return [format_value(kind, v, scale=scale, decimals=decimals) for v in values]


def _column_decimals(column: pd.Series, significant: int = 6) -> int:
    """Decimals that give the column's typical (median) value ``significant`` digits."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    values = np.abs(values[np.isfinite(values) & (values != 0)])
    if len(values) == 0:
        return 2
    if np.all(values == np.round(values)):
        return 0
    most = decimals_for(float(np.median(values)), significant)
    for decimals in range(most):  # fewer when every value is exact with fewer (a tick size)
        if np.all(np.abs(np.round(values, decimals) - values) <= 1e-9 * values):
            return decimals
    return most


def trades_table(trades: pd.DataFrame, *, scale: float | None = None) -> pd.DataFrame:
    """``Result.trades`` (or ``Result.fills``) as text (:func:`format_frame`): times as UTC
    dates, prices and sizes with the digits their market needs, money with the account's
    precision (``scale``: its initial cash), returns in %, durations as durations."""
    return format_frame(trades, scale=scale)


def readable_pandas() -> None:
    """Show floats in pandas output (notebook tables, ``print``) in positional notation with
    about six significant digits (:func:`fmt_number`) instead of scientific notation, and text
    cells (such as a stat's basis) whole instead of cut at 50 characters."""
    pd.set_option("display.float_format", fmt_number)
    pd.set_option("display.max_colwidth", None)


def styled(frame: pd.DataFrame, left: tuple[str, ...] = ("basis",)):
    """``frame`` as a pandas Styler for notebooks and HTML reports: the columns in ``left``
    (text, such as a stat's basis) left-aligned, their headers too, the others as pandas shows
    them."""
    styler = frame.style
    columns = [name for name in left if name in frame.columns]
    if columns:
        styler = styler.set_properties(subset=columns, **{"text-align": "left"})
        left_header = [{"selector": "th.col_heading", "props": [("text-align", "left")]}]
        styler = styler.set_table_styles(dict.fromkeys(columns, left_header), overwrite=False)
    return styler
