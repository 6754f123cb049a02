"""What :func:`research.sweeps.sweep` asks of the validation layer: its rows evaluated with
their return moments (through the store when there is one), and its overfitting statistics.

Every sweep keeps, per valid row, the moments of its returns in ``cscv_blocks x 4`` segments
(:func:`research.validation.moments.block_cuts`): 16 x 4 by default, 3 KiB a row. From them the
sweep reports the deflated Sharpe ratio of its best row, with the effective number of trials,
and the PBO (:func:`research.validation.overfitting.assess`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from research.sweeps import Invalid
from research.validation.engine import Evaluation, evaluate
from research.validation.moments import block_cuts
from research.validation.overfitting import Overfitting, assess

DEFAULT_CSCV_BLOCKS = 16
SUB_BLOCKS = 4


@dataclass
class SweepEvaluation:
    """The outcomes of a sweep's candidates, their moments, and where they are stored."""

    outcomes: list[Any]
    moments: np.ndarray
    n_blocks: int
    sweep_id: str | None = None
    store: Any = None
    n_loaded: int = 0


def resolve_store(store: Any):
    """``store`` as a :class:`~research.validation.store.SweepStore`: ``True`` opens the
    project's database (``CANDELA_DATABASE_URL`` or the embedded SQLite), a URL that database,
    an engine is used as it is; ``None`` / ``False``: no store."""
    if store is None or store is False:
        return None
    from candela.core.db import connect
    from research.validation.store import SweepStore

    if isinstance(store, SweepStore):
        return store
    if store is True:
        return SweepStore(connect(None))
    if isinstance(store, str):
        return SweepStore(connect(store))
    return SweepStore(store)


def evaluate_sweep(
    spec,
    bars,
    candidates: Sequence[Any],
    run_settings: tuple,
    *,
    grid: Mapping[str, Sequence[Any]],
    split: int | None,
    store: Any,
    market: Mapping[str, str | None] | None,
    metric: str,
    min_trades: int,
    n_combinations: int,
    extra: Any,
    n_jobs: int,
    backend: str | None,
    batch_size: int | None,
    progress: bool,
    client: Any,
    cscv_blocks: int = DEFAULT_CSCV_BLOCKS,
) -> SweepEvaluation:
    """Evaluate a sweep's candidates with their moments; through ``store`` when given (rows
    already stored are loaded, the others written batch by batch as they finish)."""
    from research.validation.store import evaluate_stored

    n_traded = len(bars) if split is None else split
    blocks = cscv_blocks if n_traded >= cscv_blocks * SUB_BLOCKS else 2
    sub_blocks = SUB_BLOCKS if n_traded >= blocks * SUB_BLOCKS else 1
    cuts = block_cuts(n_traded, blocks, sub_blocks)
    options = {
        "n_jobs": n_jobs,
        "backend": backend,
        "batch_size": batch_size,
        "progress": progress,
        "client": client,
        "description": f"sweep {spec.name}",
    }
    resolved = resolve_store(store)
    if resolved is None:
        evaluation: Evaluation = evaluate(
            spec, bars, candidates, run_settings, cuts, split=split, grid=dict(grid), **options
        )
        return SweepEvaluation(evaluation.stats, evaluation.moments, blocks)
    stored = evaluate_stored(
        resolved,
        spec,
        bars,
        candidates,
        run_settings,
        cuts,
        kind="sweep",
        grid=grid,
        metric=metric,
        min_trades=min_trades,
        n_combinations=n_combinations,
        extra=extra,
        market=market,
        split=split,
        **options,
    )
    return SweepEvaluation(
        stored.evaluation.stats,
        stored.evaluation.moments,
        blocks,
        sweep_id=stored.sweep_id,
        store=resolved,
        n_loaded=stored.n_loaded,
    )


def sweep_overfitting(
    evaluation: SweepEvaluation,
    frame: pd.DataFrame,
    candidate_rows: Sequence[int],
    ranked: pd.DataFrame,
    bars_per_year: float,
) -> Overfitting | None:
    """DSR and PBO of a sweep (``None`` with fewer than two valid rows).

    ``candidate_rows[i]`` is the frame row of candidate ``i``; the statistics judge the best
    ranked row (or the highest Sharpe ratio when no row has enough trades).
    """
    valid = [i for i, outcome in enumerate(evaluation.outcomes) if not isinstance(outcome, Invalid)]
    if len(valid) < 2:
        return None
    selected = None
    if len(ranked):
        row_of = {candidate_rows[i]: position for position, i in enumerate(valid)}
        selected = row_of.get(int(ranked.index[0]))
    # every row valid (the usual case): the moments as they are, not a copy
    moments = (
        evaluation.moments if len(valid) == len(evaluation.outcomes) else evaluation.moments[valid]
    )
    return assess(moments, selected, evaluation.n_blocks, bars_per_year)


def finish(
    evaluation: SweepEvaluation, overfitting: Overfitting | None, ranked: pd.DataFrame, metric: str
) -> None:
    """Mark a stored sweep complete with its summary (best row and overfitting figures)."""
    if evaluation.store is None:
        return
    summary: dict[str, Any] = {} if overfitting is None else overfitting.summary()
    if len(ranked):
        summary["best_" + metric] = float(ranked.iloc[0][metric])
        summary["best_sharpe"] = float(ranked.iloc[0]["sharpe"])
    evaluation.store.finish_sweep(evaluation.sweep_id, len(evaluation.outcomes), summary)
