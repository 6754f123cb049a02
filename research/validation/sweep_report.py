"""The sweep report: ``notebooks/07_sweep_report.ipynb`` executed with papermill for one stored
sweep, rendered to a standalone HTML page without code.

The notebook reads the stored sweep (:func:`research.validation.store.load_sweep`), reloads its
bars from the database and checks that they are the very bars the sweep ran on (their
fingerprint), then shows: the parameter surface (heatmap and parallel coordinates), the
deflated Sharpe ratio and the PBO with a plain-words reading, a walk-forward analysis over the
same grid (stitched equity, per-window table, parameter stability) and the CPCV distribution of
out-of-sample Sharpe ratios. The walk-forward and CPCV runs are computed when the report runs.

:func:`report_inputs` is what the notebook calls to rebuild the sweep's inputs;
:func:`run_sweep_report` is what ``candela report --sweep ID`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research.types import Bars, Costs, RiskLimits, Stops

SWEEP_NOTEBOOK = "07_sweep_report.ipynb"
#: Sub-blocks per CSCV block in a stored sweep's moments (see ``research.sweeps``).
SUB_BLOCKS = 4


@dataclass
class ReportInputs:
    """A stored sweep with everything needed to look at it again."""

    record: dict
    spec: Any
    bars: Bars
    grid: dict[str, list[Any]]
    costs: Costs
    stops: Stops
    risk: RiskLimits
    initial_cash: float
    frame: pd.DataFrame
    moments: np.ndarray
    overfitting: Any

    @property
    def market(self) -> str:
        return f"{self.record['exchange']} {self.record['symbol']} {self.record['timeframe']}"


def report_inputs(engine, sweep_id: str, resolve: Callable[[str], Any]) -> ReportInputs:
    """Load the stored sweep ``sweep_id``, its strategy (``resolve(name)``, e.g.
    ``runner.strategy_source.resolve_strategy``) and its bars from ``engine``.

    Raises
    ------
    ValueError
        If no such sweep is stored, it was stored without its market, or the stored bars
        have changed since (the message says how to proceed).
    """
    from research.data import load_bars
    from research.metrics import bars_context
    from research.sweeps import rank
    from research.validation.overfitting import assess
    from research.validation.store import bars_fingerprint, load_sweep

    stored = load_sweep(engine, sweep_id)
    record = stored.record
    if not all(record.get(name) for name in ("exchange", "symbol", "timeframe")):
        raise ValueError(
            f"sweep {record['sweep_id'][:8]} was stored without its market: run it "
            "with market=... (or with 'candela sweep'), so that the report can "
            "reload its bars"
        )
    bars = load_bars(
        engine,
        record["exchange"],
        record["symbol"],
        record["timeframe"],
        int(record["start_ts"]),
        int(record["end_ts"]),
    )
    with engine.connect() as connection:
        from sqlalchemy import select

        from candela.core.schema import sweep_runs

        bars_hash = connection.execute(
            select(sweep_runs.c.bars_hash).where(sweep_runs.c.run_key == record["run_key"])
        ).scalar_one()
    if bars_fingerprint(bars) != bars_hash:
        raise ValueError(
            f"the stored {record['exchange']} {record['symbol']} "
            f"{record['timeframe']} bars have changed since sweep "
            f"{record['sweep_id'][:8]} ran (bars added, refetched or removed in "
            "its span): run the sweep again for a report on the current bars"
        )
    settings = record["settings"]
    spec = resolve(record["strategy"])
    frame = stored.frame
    valid = frame["valid"].to_numpy(dtype=bool) if "valid" in frame else np.ones(len(frame), bool)
    overfitting = None
    if valid.sum() > 1:
        ranked = rank(frame, record["metric"], int(record["min_trades"]))
        valid_index = np.flatnonzero(valid)
        selected = int(np.searchsorted(valid_index, ranked.index[0])) if len(ranked) else None
        per_year = bars_context(bars.ts, bars.timeframe_ms).bars_per_year
        n_blocks = (len(settings["cuts"]) - 1) // SUB_BLOCKS
        overfitting = assess(stored.moments[valid], selected, n_blocks, per_year)
    return ReportInputs(
        record=record,
        spec=spec,
        bars=bars,
        grid=record["grid"],
        costs=Costs(**settings["costs"]),
        stops=Stops(**settings["stops"]),
        risk=RiskLimits(**settings["risk"]),
        initial_cash=float(settings["initial_cash"]),
        frame=frame,
        moments=stored.moments,
        overfitting=overfitting,
    )


def default_notebook() -> Path:
    from candela.core.paths import REPO_ROOT

    return REPO_ROOT / "notebooks" / SWEEP_NOTEBOOK


def run_sweep_report(
    sweep_id: str,
    *,
    database_url: str | None = None,
    out_dir: str | Path = "out",
    notebook: str | Path | None = None,
    walkforward_windows: int = 5,
    cv_folds: int = 6,
    cv_test_folds: int = 2,
    n_jobs: int = 1,
    html: bool = True,
):
    """Execute the sweep report notebook for the stored sweep ``sweep_id`` (a prefix of 6 or
    more characters is enough) into ``out_dir/sweep_<id>.ipynb`` and ``.html``.

    Nothing half-written is left: both files are written under temporary names and renamed at
    the end. Returns :class:`research.report.ReportFiles`.

    Raises
    ------
    ValueError
        If the sweep is unknown or its bars cannot be reloaded (checked before the notebook
        runs).
    """
    from candela.core.db import connect
    from candela.core.db import database_url as resolve_database_url
    from research.report import execute_notebook
    from research.validation.store import load_sweep

    source = Path(notebook) if notebook is not None else default_notebook()
    if not source.is_file():
        raise FileNotFoundError(f"sweep report notebook {source} does not exist")
    url = resolve_database_url(database_url)
    engine = connect(url)
    try:
        record = load_sweep(engine, sweep_id).record  # user errors: before the notebook runs
    finally:
        engine.dispose()
    identifier = record["sweep_id"]
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    parameters = {
        "sweep_id": identifier,
        "database_url": url,
        "walkforward_windows": int(walkforward_windows),
        "cv_folds": int(cv_folds),
        "cv_test_folds": int(cv_test_folds),
        "n_jobs": int(n_jobs),
    }
    output = folder / f"sweep_{record['strategy']}_{identifier[:8]}.ipynb"
    return execute_notebook(source, output, parameters, html=html)
