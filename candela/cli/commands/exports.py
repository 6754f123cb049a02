"""Files a backtest writes: ``--csv`` tables, the ``--json`` document, and the atomic write that
leaves nothing half-written when it fails."""

from __future__ import annotations

import math
from pathlib import Path


def write_atomically(path: Path, write) -> None:
    """Call ``write(temporary path)`` next to ``path``, then rename it to ``path``: a failed
    write leaves nothing behind."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def export_csv(result, folder: Path, *, extra: dict | None = None) -> list[Path]:
    """Write ``stats.csv``, ``trades.csv``, ``fills.csv`` and ``equity.csv`` into ``folder``,
    then the ``extra`` tables (file name -> ``(frame, write its index)``).

    ``equity.csv`` holds the equity and cash after each close, and the position: one
    ``position`` column for one market, one ``position_<market>`` column per market for a
    portfolio (``result.positions``)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    stats = result.stats.rename_axis("stat").rename("value").to_frame()
    equity = pd.DataFrame({"equity": result.equity, "cash": result.cash})
    if hasattr(result, "positions"):  # a portfolio: one position column per market
        equity = equity.join(result.positions.add_prefix("position_"))
    else:
        equity["position"] = result.position
    tables = {
        "stats.csv": (stats, True),
        "trades.csv": (_machine_table(result.trades), False),
        "fills.csv": (_machine_table(result.fills), False),
        "equity.csv": (_machine_table(equity.reset_index()), False),
        **(extra or {}),
    }
    written = []
    for name, (table, index) in tables.items():
        path = folder / name
        write_atomically(path, lambda temporary, t=table, i=index: t.to_csv(temporary, index=i))
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


def export_json(result, path: Path, *, market: dict, costs) -> Path:
    """Write the run (strategy, parameters, ``market``: one market's exchange, symbol and
    timeframe or a universe's, costs), its stats and its trades as JSON: fractions and ms as
    in ``research.metrics``; ``nan`` is ``null``, infinities are the strings ``"inf"`` and
    ``"-inf"``."""
    import json

    def plain(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if hasattr(value, "item"):  # numpy scalars
            return plain(value.item())
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value

    trades = _machine_table(result.trades)
    document = {
        "strategy": result.spec_name,
        "params": {key: plain(value) for key, value in result.params._asdict().items()},
        "market": {key: plain(value) for key, value in market.items()},
        "costs": {"fee_rate": costs.fee_rate, "slippage_bps": costs.slippage_bps},
        "initial_cash": result.initial_cash,
        "stats": {name: plain(value) for name, value in result.stats.items()},
        "trades": [
            {key: plain(value) if value is not None else None for key, value in row.items()}
            for row in trades.astype(object).where(trades.notna(), None).to_dict(orient="records")
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(
        path,
        lambda temporary: temporary.write_text(
            json.dumps(document, indent=1, allow_nan=False), encoding="utf-8"
        ),
    )
    return path


def write_exports(arguments, result, *, market: dict, costs, extra: dict | None = None) -> None:
    """Write what the command line asked for (``--csv DIR``, ``--json FILE``, ``--html FILE``)
    of a backtest ``result`` (one market's or a book's), saying where each went; ``market`` and
    ``costs`` go into the JSON document, ``extra`` tables into the CSV folder."""
    if arguments.csv:
        for path in export_csv(result, Path(arguments.csv), extra=extra):
            print(f"\nwritten: {path}", end="")
        print()
    if arguments.json:
        path = export_json(result, Path(arguments.json), market=market, costs=costs)
        print(f"\nrun written to {path}")
    if arguments.html:
        path = Path(arguments.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(
            path, lambda temporary: result.plot().write_html(temporary, include_plotlyjs=True)
        )
        print(f"\nchart written to {path}")
