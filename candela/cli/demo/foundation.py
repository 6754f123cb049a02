"""Demo step: import the bundled sample into the database and print the inventory.

``DemoContext.create`` has already upgraded the database. Every file listed in
``data/sample/manifest.json`` is imported (one transaction per file); a second run inserts
nothing and says so ("0 new").
"""

from __future__ import annotations

import json
from pathlib import Path

from candela.cli.commands import CommandError
from candela.core.paths import SAMPLE_DIR
from data_pipeline.importer import import_candles
from research.data import inventory

TITLE = "foundation: import the bundled sample, inventory"


def sample_files(sample_dir: Path | None = None) -> list[dict]:
    """The sample's manifest entries: ``file`` (relative to the sample folder), ``exchange``,
    ``symbol`` (unified, ``BTC/USDT``), ``timeframe`` and ``path`` (absolute)."""
    folder = Path(sample_dir or SAMPLE_DIR)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise CommandError(
            f"sample manifest {manifest} is missing: restore data/sample/ from the repository"
        )
    entries = json.loads(manifest.read_text())["files"]
    return [{**entry, "path": folder / entry["file"]} for entry in entries]


def run(context) -> None:
    """Import every sample file into ``context.engine`` and print what happened."""
    entries = sample_files()
    width = max(len(entry["file"]) for entry in entries)
    print(f"{'file':<{width}}  {'new':>6}  {'stored':>6}  {'conflict':>8}  {'rejected':>8}")
    totals = [0, 0, 0, 0]
    for entry in entries:
        report = import_candles(
            context.engine, entry["path"], entry["exchange"], entry["symbol"], entry["timeframe"]
        )
        counts = (report.inserted, report.unchanged, report.conflicting, report.rejected_total)
        totals = [total + count for total, count in zip(totals, counts)]
        print(
            f"{entry['file']:<{width}}  {counts[0]:>6,}  {counts[1]:>6,}  {counts[2]:>8,}  {counts[3]:>8,}"
        )
    print(
        f"{len(entries)} files: {totals[0]:,} new, {totals[1]:,} already stored, "
        f"{totals[2]:,} conflicting, {totals[3]:,} rejected"
    )
    print()
    print(format_inventory(inventory(context.engine)))


def format_inventory(table) -> str:
    """The inventory as a plain-text table: market, timeframe, first, last, bars, gaps."""
    rows = [("market", "timeframe", "first (close, UTC)", "last (close, UTC)", "bars", "gaps")]
    for record in table.itertuples(index=False):
        rows.append(
            (
                f"{record.exchange} {record.symbol}",
                record.timeframe,
                record.first.strftime("%Y-%m-%d %H:%M"),
                record.last.strftime("%Y-%m-%d %H:%M"),
                f"{record.bars:,}",
                f"{record.gaps:,} ({record.missing_bars:,} bars)" if record.gaps else "0",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numeric = {4, 5}
    return "\n".join(
        "  ".join(
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    )
