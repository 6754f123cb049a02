"""Parameterised strategy reports: the report notebook executed with papermill.

:func:`run_report` runs ``notebooks/02_report.ipynb`` (or another notebook with a cell tagged
``parameters``) for one strategy, parameter set and market, writes the executed notebook and,
when nbconvert is installed, a standalone HTML page next to it: the outputs only (no code),
with plotly.js embedded and nothing fetched from the network, so it opens offline
(:func:`export_html`). Nothing half-written is left behind: both files are written under
temporary names and renamed at the end. ``candela report`` is a thin wrapper around it.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_NOTEBOOK = "02_report.ipynb"
TEMPLATES = Path(__file__).parent / "templates"
#: The nbconvert template of the HTML page (``research/templates/candela_report``).
REPORT_TEMPLATE = "candela_report"


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
    resample: str | None = None,
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
    resample : str, optional
        Aggregate the bars to this coarser timeframe first (``research.resample``).

    Raises
    ------
    FileNotFoundError
        If the notebook does not exist.
    ValueError
        If the market, the period or ``resample`` gives no bars (checked before the notebook
        runs, with ``research.load_bars``' message).
    papermill.PapermillExecutionError
        If a cell fails. Nothing is left in ``out_dir`` then.
    """
    from candela.core.db import database_url as resolve_database_url
    from research.data import load_bars
    from research.data import resample as resample_bars

    source = Path(notebook) if notebook is not None else default_notebook()
    if not source.is_file():
        raise FileNotFoundError(f"report notebook {source} does not exist")
    url = resolve_database_url(database_url)
    bars = load_bars(url, exchange, symbol, timeframe, start, end)  # user errors: before running
    if resample:
        resample_bars(bars, resample)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    slug = "_".join(
        [strategy.replace(":", "-"), exchange, symbol.replace("/", "-"), resample or timeframe]
    )
    parameters = {
        "strategy": strategy,
        "params": dict(params),
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "fee": float(fee),
        "slippage_bps": float(slippage_bps),
        "initial_cash": float(initial_cash),
        "database_url": url,
        "resample": resample,
    }
    return execute_notebook(source, folder / f"report_{slug}.ipynb", parameters, html=html)


def execute_notebook(
    source: Path, output: Path, parameters: dict[str, Any], *, html: bool = True
) -> ReportFiles:
    """Execute ``source`` with papermill into ``output`` and, if ``html``, render it next to it.

    The kernel runs in ``source``'s folder. Both files are written under temporary names
    (``.<stem>.<random>.partial.*`` beside ``output``) and renamed only once everything
    succeeded: a failing cell leaves nothing behind. papermill's INFO lines and the kernel's own
    log lines below ERROR (ipykernel's notice that it talks TCP on the loopback) stay quiet; a
    cell's output and errors are not affected.

    Raises
    ------
    papermill.PapermillExecutionError
        If a cell fails.
    """
    import papermill

    partial = output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}.partial.ipynb")
    partial_page = partial.with_suffix(".html")
    page = output.with_suffix(".html")
    chatter = logging.getLogger("papermill")  # its INFO lines are not the user's business
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    rendered = None
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
            extra_arguments=["--log-level=ERROR"],
        )
        rendered = export_html(partial, partial_page) if html else None
        partial.replace(output)
        if rendered is not None:
            partial_page.replace(page)
    finally:
        chatter.setLevel(level)
        partial.unlink(missing_ok=True)
        partial_page.unlink(missing_ok=True)
    return ReportFiles(notebook=output, html=page if rendered is not None else None)


def export_html(notebook: str | Path, path: str | Path | None = None) -> Path | None:
    """Render an executed notebook as a standalone HTML page; ``None`` if nbconvert is missing.

    The page shows the outputs only (no code cells, no prompts) and loads nothing from the
    network (template ``research/templates/candela_report``): the plotly figures carry
    plotly.js themselves. Written to ``path`` (default: the notebook's name with ``.html``).
    """
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    notebook = Path(notebook)
    exporter = HTMLExporter(
        template_name=REPORT_TEMPLATE,
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    path = Path(path) if path is not None else notebook.with_suffix(".html")
    path.write_text(_without_mathjax(body), encoding="utf-8")
    return path


#: The MathJax script plotly's notebook renderer puts before every figure (the figures use no
#: LaTeX; offline the tag only fails to load, but the page should not reach for the network).
_PLOTLY_MATHJAX = re.compile(
    r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>'
)


def _without_mathjax(html: str) -> str:
    return _PLOTLY_MATHJAX.sub("", html)
