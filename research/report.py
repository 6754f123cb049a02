"""Parameterised strategy reports: the report notebook executed with papermill.

:func:`run_report` runs ``notebooks/02_report.ipynb`` (or another notebook with a cell tagged
``parameters``) for one strategy, parameter set and market, writes the executed notebook and,
when nbconvert is installed, a standalone HTML rendering next to it. ``candela report`` is a
thin wrapper around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_NOTEBOOK = "02_report.ipynb"


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`run_report` wrote its output (``html`` is ``None`` without nbconvert)."""

    notebook: Path
    html: Path | None


def default_notebook() -> Path:
    """The bundled report notebook, ``notebooks/02_report.ipynb``."""
    from candela.core.paths import REPO_ROOT

    return REPO_ROOT / "notebooks" / REPORT_NOTEBOOK


def run_report(
    strategy: str,
    params: dict[str, Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start: Any = None,
    end: Any = None,
    fee: float = 0.001,
    slippage_bps: float = 0.0,
    initial_cash: float = 10_000.0,
    database_url: str | None = None,
    out_dir: str | Path = "out",
    notebook: str | Path | None = None,
    html: bool = True,
) -> ReportFiles:
    """Execute the report notebook for one strategy and market.

    Parameters
    ----------
    strategy : str
        Strategy reference: a registry or user strategy name, or ``module:ATTRIBUTE``
        (resolved inside the notebook by :func:`runner.strategy_source.resolve_strategy`).
    params : dict
        Strategy parameters; missing ones keep their defaults.
    exchange, symbol, timeframe : str
        The market, as stored (see ``research.inventory``).
    start, end : optional
        Inclusive close-time bounds (ms, ISO string or datetime), as for ``research.load_bars``.
    fee, slippage_bps, initial_cash : float
        Costs and starting cash of the backtest.
    database_url : str, optional
        Database to read (default: ``$CANDELA_DATABASE_URL``, else the embedded SQLite). The
        notebook imports the bundled sample if the database holds no bars at all.
    out_dir : path
        Folder for ``report_<strategy>_<exchange>_<BASE-QUOTE>_<timeframe>.ipynb`` (and
        ``.html``); created if missing.
    notebook : path, optional
        The notebook to execute (default :func:`default_notebook`).
    html : bool
        Also export HTML (skipped silently when nbconvert is not installed).

    Raises
    ------
    FileNotFoundError
        If the notebook does not exist.
    papermill.PapermillExecutionError
        If a cell fails; the executed notebook is still written and shows the error.
    """
    import papermill

    from candela.core.db import database_url as resolve_database_url

    source = Path(notebook) if notebook is not None else default_notebook()
    if not source.is_file():
        raise FileNotFoundError(f"report notebook {source} does not exist")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    slug = "_".join([strategy.replace(":", "-"), exchange, symbol.replace("/", "-"), timeframe])
    output = folder / f"report_{slug}.ipynb"
    parameters = {
        "strategy": strategy, "params": dict(params), "exchange": exchange, "symbol": symbol,
        "timeframe": timeframe, "start": start, "end": end, "fee": float(fee),
        "slippage_bps": float(slippage_bps), "initial_cash": float(initial_cash),
        "database_url": resolve_database_url(database_url),
    }
    papermill.execute_notebook(str(source), str(output), parameters=parameters,
                               kernel_name="python3", cwd=str(source.parent), progress_bar=False)
    return ReportFiles(notebook=output, html=export_html(output) if html else None)


def export_html(notebook: str | Path) -> Path | None:
    """Render an executed notebook as HTML next to it; ``None`` if nbconvert is missing."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    notebook = Path(notebook)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    path = notebook.with_suffix(".html")
    path.write_text(body, encoding="utf-8")
    return path
