"""Run many parameter sets of one strategy over the same bars, in parallel, keeping for each its
statistics and the moments of its returns per segment.

What a sweep row is (:func:`research.sweeps.run_stats`: the same target, execution loop and
statistics as ``research.backtest``) plus, from the equity the run leaves in its buffer, the
six sums of :mod:`research.validation.moments` for each segment between ``cuts``: everything
the overfitting statistics, the cross-validation and the stored sweeps need, in memory
combinations x segments.

Parallelism is joblib's, as in :mod:`research.sweeps`: threads (``"threading"``, what
``backend="auto"`` picks for rows without stops or risk limits, whose work is compiled code
that releases the GIL), local processes (``"loky"``, the bars memory-mapped once for all
workers; ``"auto"`` for the other rows), or a Dask cluster (``backend="dask"``, see
:mod:`research.validation.distributed`), where the bars are scattered to every worker once
(``client.scatter(..., broadcast=True)``) and each task carries only its parameter sets.
Results come back batch by batch as workers finish them (in any order); ``on_batch`` sees each
batch in this process as it arrives, which is how a stored sweep writes its rows as they finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from research.indicators import indicator_cache
from research.kernels.records import new_fills
from research.strategy_model import StrategySpec
from research.sweeps import AUTO_BACKEND, Invalid, _context, _outcome
from research.types import Bars
from research.validation.batches import (
    BATCH_CACHE_ARRAYS,
    BATCH_FILL_ROWS,
    MAX_BATCH_SIZE,
    PROCESS_BACKENDS,
    grid_batches,
    plain_bars,
    shared_bars,
    worker_count,
)
from research.validation.fused import FusedRows, fused_rows
from research.validation.memory import release_free_memory
from research.validation.moments import N_MOMENTS, segment_moments_nb

#: ``(index, outcome, moments array (segments, 6))`` of each parameter set of a batch; the
#: outcome is the stats dict or :class:`research.sweeps.Invalid` (moments all 0 then).
BatchResult = list[tuple[int, "dict[str, float] | Invalid", np.ndarray]]


@dataclass
class Evaluation:
    """What :func:`evaluate` returns, in candidate order.

    Attributes
    ----------
    stats : list of dict or Invalid
        Each candidate's stats (:data:`research.metrics.STAT_NAMES`, plus ``oos_`` ones with a
        split), or :class:`research.sweeps.Invalid` when the bars are too few for its
        look-back or the strategy raised.
    moments : ndarray, shape (candidates, segments, 6)
        Each candidate's return moments per segment.
    """

    stats: list[dict[str, float] | Invalid]
    moments: np.ndarray


def evaluate(
    spec: StrategySpec,
    bars: Bars,
    candidates: Sequence[Any],
    run_settings: tuple,
    cuts: np.ndarray,
    *,
    n_jobs: int = 1,
    backend: str | None = AUTO_BACKEND,
    batch_size: int | None = None,
    progress: bool = True,
    description: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    grid: dict[str, Sequence[Any]] | None = None,
    client: Any = None,
    start: int = 0,
    split: int | None = None,
) -> Evaluation:
    """Backtest every candidate (validated ``Params``) on ``bars``; keep stats and moments.

    Parameters
    ----------
    spec, bars
        The strategy and the bars every run shares.
    candidates : sequence of Params
    run_settings : tuple
        ``(costs, stops, risk, initial_cash)`` as for :func:`research.sweeps.run_stats`.
    cuts : ndarray of int64
        Segment boundaries (indices of the traded bars ``bars[start:]``, increasing, from 0
        to at most ``len(bars) - start``).
    n_jobs, backend, batch_size
        As for :func:`research.sweeps.sweep`; ``backend="dask"`` runs on the Dask cluster of
        ``client`` (or the default client).
    progress : bool
        A ``tqdm.auto`` bar (terminal or notebook) with the rate and the time left.
    description : str, optional
        The progress bar's label (default ``"sweep <name>"``).
    on_batch : callable, optional
        Called in this process with each finished batch (``[(index, stats, moments)]``),
        in the order they finish.
    grid : dict, optional
        The grid the candidates come from: batches are then tiles of it (each indicator is
        computed about once per batch).
    client : distributed.Client, optional
        The Dask client for ``backend="dask"``.
    start : int
        Trade from this bar (``research.backtest(..., start=start)``): the bars before it are
        the strategy's history only, and the stats and moments cover ``bars[start:]``.
    split : int, optional
        A sweep's ``oos_fraction`` split: the stats and moments describe ``bars[:split]``, and
        ``oos_`` stats the run from ``split`` on (as :func:`research.sweeps.sweep`).
    """
    cuts = np.ascontiguousarray(cuts, dtype=np.int64)
    backend = resolve_backend(backend, spec, run_settings)
    n = len(candidates)
    stats: list[dict[str, float] | Invalid] = [{}] * n
    moments = np.zeros((n, len(cuts) - 1, N_MOMENTS))
    if n == 0:
        return Evaluation(stats, moments)
    workers = worker_count(n_jobs) if backend != "dask" else max(1, _dask_workers(client))
    size = batch_size or max(1, min(MAX_BATCH_SIZE, math.ceil(n / (4 * workers))))
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # the largest batches first, so that the workers finish together (the last batches, the
    # ones a constraint thinned out, are the shortest)
    batches = sorted(grid_batches(list(candidates), grid or {}, size), key=len, reverse=True)
    bar = tqdm(
        total=n,
        desc=description or f"sweep {spec.name}",
        unit="run",
        disable=not progress,
        smoothing=0.1,
    )

    def collect(results: BatchResult) -> None:
        for index, row, row_moments in results:
            stats[index] = row
            moments[index] = row_moments
        if on_batch is not None:
            on_batch(results)
        if backend == "threading":
            release_free_memory()  # the workers' freed arrays (research.validation.memory)
        bar.update(len(results))

    try:
        if workers == 1 and backend in PROCESS_BACKENDS + ("threading", "sequential"):
            for batch in batches:
                collect(
                    run_batch(
                        spec,
                        bars,
                        batch,
                        [candidates[i] for i in batch],
                        run_settings,
                        cuts,
                        start,
                        split,
                    )
                )
        else:
            for results in _parallel(
                spec,
                bars,
                batches,
                candidates,
                run_settings,
                cuts,
                n_jobs,
                backend,
                client,
                start,
                split,
            ):
                collect(results)
    finally:
        bar.close()
    return Evaluation(stats, moments)


def resolve_backend(backend: str | None, spec: StrategySpec, run_settings: tuple) -> str | None:
    """``backend`` with ``"auto"`` resolved: ``"threading"`` when the rows take the fused path
    (:func:`~research.validation.fused.fused_rows`: no stop, no risk limit), whose work is
    compiled code that releases the GIL, so threads in this process share one copy of the bars
    and of the interpreter; ``"loky"`` processes otherwise. Any other value is returned as
    it is."""
    if backend != AUTO_BACKEND:
        return backend
    return "threading" if fused_rows(spec, run_settings) else "loky"


def _parallel(
    spec, bars, batches, candidates, run_settings, cuts, n_jobs, backend, client, start, split
):
    # one batch per task: a batch is already many rows (joblib would group short tasks)
    options: dict[str, Any] = {
        "n_jobs": n_jobs,
        "return_as": "generator_unordered",
        "batch_size": 1,
    }
    if backend == "dask":
        config = parallel_config(
            backend="dask", scatter=[bars], client=client, wait_for_workers_timeout=30
        )
        shipped = nullcontext(bars)  # the scattered object itself: joblib swaps in its future
    else:
        config = nullcontext()
        if backend is not None:
            options["backend"] = backend
        shipped = shared_bars(bars, backend)
    with config, shipped as shared:
        tasks = (
            delayed(run_batch)(
                spec,
                shared,
                batch,
                [candidates[i] for i in batch],
                run_settings,
                cuts,
                start,
                split,
            )
            for batch in batches
        )
        yield from Parallel(**options)(tasks)


def _dask_workers(client: Any) -> int:
    if client is None:
        from distributed import get_client  # the distributed extra; only for backend="dask"

        client = get_client()
    return len(client.scheduler_info().get("workers", {}))


def run_batch(
    spec: StrategySpec,
    bars: Bars,
    indices: Sequence[int],
    params_list: Sequence[Any],
    run_settings: tuple,
    cuts: np.ndarray,
    start: int = 0,
    split: int | None = None,
) -> BatchResult:
    """Run ``params_list`` (the candidates at ``indices``) trading from bar ``start`` (to
    ``split`` when given, then ``oos_`` stats from it): ``[(index, outcome, moments)]``.

    What :func:`research.sweeps.sweep` does for a batch (one indicator cache, one equity buffer
    and one fill table for all of it; the same outcome per parameter set), plus the moments
    read from the equity buffer after each run.
    """
    bars = plain_bars(bars)
    initial_cash = float(run_settings[3])
    traded = bars if split is None else bars[:split]
    out: BatchResult = []
    if fused_rows(spec, run_settings):
        with indicator_cache(max_bytes=BATCH_CACHE_ARRAYS * len(bars) * 8):
            rows = FusedRows(spec, bars, run_settings, cuts, start, split)
            for index, params in zip(indices, params_list, strict=True):
                out.append((index, *rows.outcome(params)))
        return out
    with indicator_cache(max_bytes=BATCH_CACHE_ARRAYS * len(bars) * 8):
        buffers = {"equity_buffer": np.empty(len(bars)), "fill_buffer": new_fills(BATCH_FILL_ROWS)}
        context = _context(traded[start:])
        held_out_context = None if split is None else _context(bars[split:])
        for index, params in zip(indices, params_list, strict=True):
            outcome = _outcome(spec, traded, params, run_settings, buffers, context, start=start)
            row_moments = np.zeros((len(cuts) - 1, N_MOMENTS))
            if not isinstance(outcome, Invalid):
                processed = int(outcome.get("n_bars", 0))
                segment_moments_nb(
                    buffers["equity_buffer"][:processed], initial_cash, cuts, row_moments
                )
                if split is not None:
                    held_out = _outcome(
                        spec, bars, params, run_settings, buffers, held_out_context, start=split
                    )
                    if isinstance(held_out, Invalid):
                        outcome = held_out._replace(reason=f"out of sample: {held_out.reason}")
                        row_moments[:] = 0.0
                    else:
                        outcome.update({f"oos_{name}": value for name, value in held_out.items()})
            out.append((index, outcome, row_moments))
    return out
