"""The reconciliation as an HTML page without code: ``notebooks/05_reconcile.ipynb`` executed
with papermill and rendered like the strategy reports (:func:`research.report.execute_notebook`).

Nothing half-written is left behind: the notebook and the page are written under temporary
names and renamed at the end.
"""

from __future__ import annotations

from pathlib import Path

from research.report import ReportFiles, execute_notebook

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
    from candela.core.paths import REPO_ROOT

    source = (
        Path(notebook) if notebook is not None else REPO_ROOT / "notebooks" / RECONCILE_NOTEBOOK
    )
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(
        character if character.isalnum() or character in "-_." else "-" for character in bot_id
    )
    parameters = {"bot_id": bot_id, "on_time": float(on_time), "database_url": database_url}
    return execute_notebook(source, folder / f"reconcile_{slug}.ipynb", parameters)
