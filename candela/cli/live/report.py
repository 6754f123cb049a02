"""The reconciliation as an HTML page without code: ``notebooks/05_reconcile.ipynb`` executed
with papermill and rendered like the strategy reports (:func:`research.report.export_html`).

Nothing half-written is left behind: the notebook and the page are written under temporary
names and renamed at the end.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from research.report import ReportFiles, export_html

RECONCILE_NOTEBOOK = "05_reconcile.ipynb"


def run_reconcile_report(
    bot_id: str,
    *,
    database_url: str,
    out_dir: str | Path = "out",
    on_time: float = 5.0,
    notebook: str | Path | None = None,
) -> ReportFiles:
    """Execute the reconciliation notebook for ``bot_id``; write ``reconcile_<bot>.ipynb`` and
    ``.html`` into ``out_dir`` (created if missing).

    Raises
    ------
    papermill.PapermillExecutionError
        If a cell fails; nothing is left in ``out_dir`` then.
    """
    import papermill

    from candela.core.paths import REPO_ROOT

    source = (
        Path(notebook) if notebook is not None else REPO_ROOT / "notebooks" / RECONCILE_NOTEBOOK
    )
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(
        character if character.isalnum() or character in "-_." else "-" for character in bot_id
    )
    output = folder / f"reconcile_{slug}.ipynb"
    page = output.with_suffix(".html")
    partial = folder / f".reconcile_{slug}.{uuid.uuid4().hex[:8]}.partial.ipynb"
    partial_page = partial.with_suffix(".html")
    chatter = logging.getLogger("papermill")  # its INFO lines are not the user's business
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    try:
        papermill.execute_notebook(
            str(source),
            str(partial),
            kernel_name="python3",
            parameters={"bot_id": bot_id, "on_time": float(on_time), "database_url": database_url},
            cwd=str(source.parent),
            progress_bar=False,
        )
        rendered = export_html(partial, partial_page)
        partial.replace(output)
        if rendered is not None:
            partial_page.replace(page)
    finally:
        chatter.setLevel(level)
        partial.unlink(missing_ok=True)
        partial_page.unlink(missing_ok=True)
    return ReportFiles(notebook=output, html=page if rendered is not None else None)
