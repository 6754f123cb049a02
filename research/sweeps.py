"""Parameter sweeps: one strategy over a grid of parameters, in parallel, in bounded memory.

:func:`sweep` backtests every valid parameter set of a grid (or a seeded random subset of it)
and returns a :class:`SweepResult`: a tidy DataFrame with one row per parameter set (the
parameters as columns, then the stats), plus the equity curves of the best few. Each row holds
exactly the stats :func:`research.backtesting.backtest` reports for that parameter set (same
target, same execution kernel, same :func:`research.metrics.compute_stats`); only the trade
and fill tables are not built. With ``oos_fraction`` the last part of the bars is held out and
every row also gets its out-of-sample stats (``oos_*`` columns).

Memory does not grow with the number of combinations: the bars are shipped to the workers
once (memory-mapped from a temporary file for process backends, scattered to every worker on a
Dask cluster), each worker runs one backtest at a time and sends back only its stats (a few
dozen numbers) and its returns' moments per block (:mod:`research.validation.moments`, 384
numbers), and the equity curves of the best ``keep_best`` parameter sets are recomputed in the
calling process after ranking. Nothing of shape bars x combinations is ever built. The batches
run in :mod:`research.validation.engine`; from the moments every sweep reports the deflated
Sharpe ratio of its best row and the PBO of its selection (:attr:`SweepResult.overfitting`).
With ``store`` the rows go to the database as they finish, and a sweep run again computes only
what is missing (:mod:`research.validation.store`).

Parallelism is joblib's. The default, ``backend="auto"``, runs rows without stops or risk
limits (whose work is compiled code that releases the GIL) on threads of this process, which
share one copy of the bars, and the other rows on ``"loky"`` processes; any joblib backend name
works; ``backend="dask"`` with ``client=`` runs on a Dask cluster (the ``distributed`` extra;
:mod:`research.validation.distributed`)::

    from research.validation.distributed import connect_cluster

    client = connect_cluster("tcp://scheduler:8786")
    table = research.sweep(spec, bars, grid, backend="dask", n_jobs=-1, client=client)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from research.backtesting import infer_timeframe_ms, run_target
from research.charts import plot_heatmap
from research.kernels.records import make_config
from research.metrics import (
    DEFAULT_MIN_TRADES,
    LOWER_IS_BETTER,
    STAT_NAMES,
    BarsContext,
    bars_context,
)
from research.result import utc_index
from research.strategy_model import ConstraintError, StrategySpec, UnknownHistoryError
from research.types import Bars, Costs, RiskLimits, Stops

DEFAULT_INITIAL_CASH = 10_000.0
# The default backend: threads for rows that run compiled code only, processes otherwise
# (research.validation.engine.resolve_backend).
AUTO_BACKEND = "auto"


@dataclass
class SweepResult:
    """The outcome of :func:`sweep`.

    Attributes
    ----------
    frame : DataFrame
        One row per combination of the grid (per drawn combination with ``sample``), in grid
        order: the parameter columns first, then ``valid`` (bool) and ``invalid_reason`` (``""``
        for a valid row, else why: a broken constraint, too few bars for the look-back, or
        the exception the strategy raised), then one column per stat of
        :attr:`research.backtesting.Result.stats` (``nan`` for invalid rows).
    equity : dict
        ``{params: equity Series}`` for the best ``keep_best`` rows by :attr:`metric`
        (``params`` is the strategy's ``Params`` NamedTuple), best first.
    metric : str
        The stat the rows were ranked by (higher is better, except for drawdowns,
        volatility and fees: see ``LOWER_IS_BETTER``).
    spec_name : str
        The strategy's registry name.
    param_names : tuple of str
        The swept parameters (the parameter columns of :attr:`frame`).
    n_combinations : int
        Size of the full grid (every combination, valid or not).
    n_invalid : int
        Invalid combinations: those breaking a constraint (over the whole grid, also with
        ``sample``), and those of :attr:`frame` with too few bars for their look-back or whose
        strategy raised.
    n_evaluated : int
        Valid rows of :attr:`frame`: backtested parameter sets.
    invalid_reasons : dict
        ``{reason: count}`` of the invalid combinations (``"constraint 'fast < slow'"``,
        ``"too few bars for the look-back"``, ``"ValueError raised by the strategy"``, ...).
    split_ts : int or None
        With ``oos_fraction``: close time (ms UTC) of the first out-of-sample bar.
    min_trades : int
        Rows with fewer closed (in-sample) trades are kept in :attr:`frame` but left out of
        :meth:`best` and of the kept equity curves.
    overfitting : research.validation.overfitting.Overfitting or None
        The deflated Sharpe ratio of the best row (with the effective number of trials) and
        the PBO of the selection (``None`` with fewer than two valid rows); see
        docs/validation.md.
    sweep_id : str or None
        With ``store``: the stored sweep's id (``research.validation.store.load_sweep``).
    """

    frame: pd.DataFrame
    equity: dict[Any, pd.Series]
    metric: str
    spec_name: str
    param_names: tuple[str, ...]
    n_combinations: int
    n_invalid: int
    n_evaluated: int
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    split_ts: int | None = None
    min_trades: int = 0
    overfitting: Any = None
    sweep_id: str | None = None

    def best(
        self, n: int = 5, metric: str | None = None, min_trades: int | None = None
    ) -> pd.DataFrame:
        """Return the ``n`` best valid rows by ``metric`` (default: the sweep's metric), best
        first, among those with at least ``min_trades`` closed trades (default: the sweep's)."""
        return rank(
            self.frame, metric or self.metric, self.min_trades if min_trades is None else min_trades
        ).head(n)

    @property
    def n_too_few_trades(self) -> int:
        """Rows left out of the ranking for having fewer than :attr:`min_trades` trades."""
        return int((self.frame["trade_count"] < self.min_trades).sum())

    def heatmap(self, x: str, y: str, metric: str | None = None):
        """Plot ``metric`` over parameters ``x`` and ``y`` (see :func:`research.charts.plot_heatmap`)."""
        return plot_heatmap(self.frame, x, y, metric or self.metric, min_trades=self.min_trades)

    def __repr__(self) -> str:
        return (
            f"SweepResult({self.spec_name}: {self.n_evaluated} evaluated of {self.n_combinations} "
            f"combinations, {self.n_invalid} invalid; best by {self.metric}:\n"
            f"{self.best(3).to_string()})"
        )


def rank(frame: pd.DataFrame, metric: str, min_trades: int = 0) -> pd.DataFrame:
    """Sort ``frame`` best first by ``metric``; NaN last; stable among ties; invalid rows
    (column ``valid``) and rows with fewer than ``min_trades`` closed trades (column
    ``trade_count``) left out.

    Higher is better, except for the stats in ``LOWER_IS_BETTER`` (drawdown, its duration,
    volatility, fees).

    Raises
    ------
    ValueError
        If ``metric`` is not a column of ``frame``.
    """
    if metric not in frame.columns:
        raise ValueError(
            f"unknown metric {metric!r}; choose one of the stats columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    if "valid" in frame.columns:
        frame = frame[frame["valid"].to_numpy(dtype=bool)]
    if min_trades > 0:
        frame = frame[frame["trade_count"] >= min_trades]
    ascending = metric.removeprefix("oos_") in LOWER_IS_BETTER
    return frame.sort_values(metric, ascending=ascending, na_position="last", kind="stable")


def sweep(
    spec: StrategySpec,
    bars: Bars,
    grid: Mapping[str, Iterable[Any]] | None = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = DEFAULT_INITIAL_CASH,
    n_jobs: int = 1,
    backend: str | None = AUTO_BACKEND,
    sample: int | None = None,
    seed: int = 0,
    keep_best: int = 5,
    metric: str = "sharpe",
    batch_size: int | None = None,
    progress: bool = True,
    oos_fraction: float | None = None,
    min_trades: int = DEFAULT_MIN_TRADES,
    store: Any = None,
    market: Mapping[str, str | None] | None = None,
    client: Any = None,
) -> SweepResult:
    """Backtest ``spec`` on ``bars`` for every parameter set of ``grid``.

    Parameters
    ----------
    spec : StrategySpec
        The strategy.
    bars : Bars
        The market history, shared by every run.
    grid : mapping, optional
        ``{parameter name: values}``; parameters left out keep their defaults. Default: the
        strategy's own ``spec.sweep`` ranges. Every combination (the Cartesian product) is a
        row; those that break a constraint, need more bars than there are (fewer than
        ``lookback + 1``) or make the strategy raise are invalid rows, counted in
        :attr:`SweepResult.n_invalid` and left out of the ranking.
    costs, stops, risk, initial_cash
        As for :func:`research.backtesting.backtest` (``stops=None``: the strategy's default
        stops), identical for every run.
    n_jobs : int
        joblib workers (``-1``: one per core). ``1`` runs everything in this process.
    backend : str or None
        ``"auto"`` (default): threads for rows without stops or risk limits, ``"loky"``
        processes for the others (see :func:`research.validation.engine.resolve_backend`);
        or any joblib backend (``"loky"``, ``"threading"``, ``"dask"``, ...); ``None`` uses the
        one configured with ``joblib.parallel_config``.
    sample : int, optional
        Evaluate only a random subset of this many of the combinations that satisfy the
        constraints, drawn without replacement with ``numpy.random.default_rng(seed)``
        (reproducible for a given grid and seed); the frame holds those rows, in grid order.
    seed : int
        Seed of the random subset.
    keep_best : int
        How many of the best parameter sets (by ``metric``) keep their equity curves.
    metric : str
        Stat to rank by (a column of the stats; default ``"sharpe"``).
    batch_size : int, optional
        Parameter sets per joblib task (default: up to 100, at least four tasks per worker).
    progress : bool
        Show a ``tqdm.auto`` progress bar (terminal or notebook).
    oos_fraction : float, optional
        Hold out the last ``oos_fraction`` of the bars (``0 < f < 1``, rounded to whole bars):
        the stats columns, the ranking and the kept equity curves then describe the first
        part (in-sample) only, and every row also gets the same stats on the held-out part,
        prefixed ``oos_`` (e.g. ``oos_sharpe``). The out-of-sample run is
        ``backtest(..., start=<first held-out bar>)``: it starts flat with fresh cash on the
        first held-out bar, its strategy evaluated with the history window before it (as a bot
        started there). A combination is invalid when the in-sample part is too short for its
        look-back.
    min_trades : int
        Rank only rows with at least this many closed (in-sample) trades
        (:data:`DEFAULT_MIN_TRADES`); the others stay in the frame. ``0`` ranks every row.
    store : bool, str or Engine, optional
        Keep the rows in the database as they finish (``True``: the project's database, or a
        URL or engine): a sweep run again loads what is stored and computes only the rest
        (:mod:`research.validation.store`). Default: not stored.
    market : mapping, optional
        ``exchange``, ``symbol``, ``timeframe`` of the bars, recorded with a stored sweep (the
        sweep report reloads the bars with them).
    client : distributed.Client, optional
        The Dask cluster for ``backend="dask"`` (:mod:`research.validation.distributed`);
        the bars are scattered to each worker once.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        For an unknown parameter name (with a suggestion), an empty grid, or a ``sample`` /
        ``keep_best`` / ``n_jobs`` out of range.
    UnknownHistoryError
        If the strategy's look-back or history window cannot be known (a definition error,
        the same for every combination).
    """
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"spec must be a StrategySpec, got {type(spec).__name__}")
    if not isinstance(bars, Bars):
        raise TypeError(f"bars must be research.types.Bars, got {type(bars).__name__}")
    if keep_best < 0:
        raise ValueError(f"keep_best must be 0 or more, got {keep_best}")
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive number of workers or -1 (all cores), got 0")
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be a positive number of combinations, got {sample}")
    if min_trades < 0:
        raise ValueError(f"min_trades must be 0 or more, got {min_trades}")
    _check_settings(spec, costs, stops, risk, initial_cash)
    grid = normalize_grid(spec, spec.sweep if grid is None else grid)
    split = _split_index(len(bars), oos_fraction)
    rows, n_combinations, invalid_reasons = expand_grid(spec, grid)
    if sample is not None:
        runnable = [i for i, row in enumerate(rows) if row.params is not None]
        if sample < len(runnable):
            chosen = np.random.default_rng(seed).choice(len(runnable), sample, replace=False)
            rows = [rows[runnable[i]] for i in np.sort(chosen)]
        else:
            rows = [rows[i] for i in runnable]
    candidates = [row.params for row in rows if row.params is not None]
    run_settings = (costs, stops, risk, float(initial_cash))
    # research.validation imports this module: loaded when a sweep runs
    from research.validation import sweeping

    evaluation = (
        sweeping.evaluate_sweep(
            spec,
            bars,
            candidates,
            run_settings,
            grid=grid,
            split=split,
            store=store,
            market=market,
            metric=metric,
            min_trades=min_trades,
            n_combinations=n_combinations,
            extra={"sample": sample, "seed": seed},
            n_jobs=n_jobs,
            backend=backend,
            batch_size=batch_size,
            progress=progress,
            client=client,
        )
        if candidates
        else None
    )
    outcomes = evaluation.outcomes if evaluation is not None else []
    results = iter(outcomes)
    rows = [row if row.params is None else row._replace(outcome=next(results)) for row in rows]
    for row in rows:
        if row.params is not None and isinstance(row.outcome, Invalid):
            invalid_reasons[row.outcome.category] = invalid_reasons.get(row.outcome.category, 0) + 1
    names = tuple(grid)
    frame = _tidy_frame(rows, names, split is not None)
    ranked = rank(frame, metric, min_trades)
    overfitting = None
    if evaluation is not None:
        candidate_rows = [i for i, row in enumerate(rows) if row.params is not None]
        traded = bars if split is None else bars[:split]
        overfitting = sweeping.sweep_overfitting(
            evaluation, frame, candidate_rows, ranked, _context(traded).bars_per_year
        )
        sweeping.finish(evaluation, overfitting, ranked, metric)
    in_sample = bars if split is None else bars[:split]
    best = [rows[index].params for index in ranked.index[:keep_best]]
    equity = equity_curves(spec, in_sample, best, *run_settings)
    return SweepResult(
        frame=frame,
        equity=equity,
        metric=metric,
        spec_name=spec.name,
        param_names=names,
        n_combinations=n_combinations,
        n_invalid=sum(invalid_reasons.values()),
        n_evaluated=int(frame["valid"].sum()),
        invalid_reasons=invalid_reasons,
        split_ts=None if split is None else int(bars.ts[split]),
        min_trades=int(min_trades),
        overfitting=overfitting,
        sweep_id=None if evaluation is None else evaluation.sweep_id,
    )


def _split_index(n_bars: int, oos_fraction: float | None) -> int | None:
    """Index of the first out-of-sample bar, or ``None`` without a split."""
    if oos_fraction is None:
        return None
    fraction = float(oos_fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"oos_fraction must be within (0, 1), e.g. 0.3, got {oos_fraction}")
    held_out = int(round(n_bars * fraction))
    if held_out < 1 or held_out >= n_bars:
        raise ValueError(
            f"oos_fraction {fraction} of {n_bars} bars leaves an empty part: "
            "use more bars or a fraction nearer 0.5"
        )
    return n_bars - held_out


def _check_settings(spec, costs, stops, risk, initial_cash) -> None:
    """Fail in the caller, before any work, on settings every run would reject."""
    for value, kind, name in ((costs, Costs, "costs"), (risk, RiskLimits, "risk")):
        if not isinstance(value, kind):
            raise TypeError(
                f"{name} must be research.types.{kind.__name__}, got {type(value).__name__}"
            )
    if stops is not None and not isinstance(stops, Stops):
        raise TypeError(f"stops must be research.types.Stops or None, got {type(stops).__name__}")
    make_config(costs, spec.stops if stops is None else stops, risk)
    if not (math.isfinite(float(initial_cash)) and float(initial_cash) > 0):
        raise ValueError(f"initial_cash must be a positive number, got {initial_cash}")


# --------------------------------------------------------------------------- grid


def normalize_grid(spec: StrategySpec, grid: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
    """Return ``grid`` as ``{name: list of values}``, checking names against ``spec.params``.

    A scalar value counts as a one-value list.

    Raises
    ------
    ValueError
        For an unknown parameter (with a "did you mean" suggestion) or an empty value list.
    """
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(
            "grid must be a non-empty mapping of parameter name to values, e.g. "
            "{'fast': range(5, 50, 5), 'slow': range(20, 200, 20)}"
        )
    normalized: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if name not in spec.params._fields:
            spec.make_params({name: None})  # raises with a "did you mean" suggestion
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            values = [values]
        values = list(values)
        if not values:
            raise ValueError(f"grid[{name!r}] is empty: give at least one value")
        normalized[name] = values
    return normalized


class Invalid(NamedTuple):
    """Why a combination has no stats: ``category`` (counted) and ``reason`` (its row's text)."""

    category: str
    reason: str


class Row(NamedTuple):
    """One combination of the grid: its ``values`` (grid order), its validated ``params``
    (``None`` when they break a constraint) and its ``outcome`` (a stats dict or
    :class:`Invalid`)."""

    values: tuple
    params: Any
    outcome: dict | Invalid | None = None


def expand_grid(
    spec: StrategySpec, grid: Mapping[str, Sequence[Any]]
) -> tuple[list[Row], int, dict[str, int]]:
    """Every combination of ``grid`` as a :class:`Row`; return (rows, grid size, reasons).

    A combination that :meth:`StrategySpec.make_params` rejects (a constraint, a value of the
    wrong type) is a row without params whose outcome is :class:`Invalid`; the reasons are
    counted by category.
    """
    names = list(grid)
    rows: list[Row] = []
    reasons: dict[str, int] = {}
    for values in itertools.product(*(grid[name] for name in names)):
        try:
            rows.append(Row(values, spec.make_params(dict(zip(names, values, strict=True)))))
        except ConstraintError as exc:
            invalid = Invalid(f"constraint {exc.constraint!r}", f"constraint {exc.constraint!r}")
        except ValueError as exc:
            text = str(exc).split(";")[0][:200]
            invalid = Invalid(text.split(":")[0][:120], text)
        else:
            continue
        rows.append(Row(values, None, invalid))
        reasons[invalid.category] = reasons.get(invalid.category, 0) + 1
    return rows, len(rows), reasons


def valid_combinations(
    spec: StrategySpec, grid: Mapping[str, Sequence[Any]]
) -> tuple[list[Any], int, dict[str, int]]:
    """The ``params`` of the combinations that satisfy the constraints, the grid size and the
    counted reasons of the others (see :func:`expand_grid`)."""
    rows, total, reasons = expand_grid(spec, grid)
    return [row.params for row in rows if row.params is not None], total, reasons


# --------------------------------------------------------------------------- evaluation


class _TooFewBars(Exception):
    """The bars cannot give one defined target for a parameter set."""


class _StrategyFailed(Exception):
    """The strategy raised for a parameter set (the cause is chained)."""


def _outcome(spec, bars, params, run_settings, buffers, context, start=0) -> dict | Invalid:
    """:func:`run_stats`, or :class:`Invalid` when the bars are too few or the strategy raised
    (anything else, a bug, propagates)."""
    try:
        return run_stats(spec, bars, params, *run_settings, **buffers, context=context, start=start)
    except _TooFewBars as exc:
        return Invalid("too few bars for the look-back", str(exc))
    except _StrategyFailed as exc:
        cause = exc.__cause__
        return Invalid(
            f"{type(cause).__name__} raised by the strategy",
            f"{type(cause).__name__}: {cause}"[:200],
        )


def run_stats(
    spec: StrategySpec,
    bars: Bars,
    params: Any,
    costs: Costs,
    stops: Stops | None,
    risk: RiskLimits,
    initial_cash: float,
    *,
    equity_buffer: np.ndarray | None = None,
    fill_buffer: np.ndarray | None = None,
    context: BarsContext | None = None,
    start: int = 0,
) -> dict[str, float]:
    """Stats of one backtest, without building its tables: same numbers as
    ``research.backtest(..., start=start).stats`` (the target, the execution loop and the stats
    are the same code), a fraction of the time and memory.

    ``equity_buffer``, a float64 array at least as long as ``bars``, is used as scratch space
    for the equity curve, and ``fill_buffer`` (from :func:`~research.kernels.records.new_fills`)
    for the fill table (a sweep reuses both per batch: fresh bars-long arrays cost page
    faults); by default they are allocated. ``context`` is
    :func:`research.metrics.bars_context` of the traded bars, ``bars[start:]`` (computed when
    not given). ``start`` (a bar index) trades from that bar, the strategy's history window
    before it serving as history only.

    Raises
    ------
    _TooFewBars, _StrategyFailed
        When the evaluated bars are fewer than ``lookback + 1`` or the strategy raised (the
        sweep makes both an invalid row).
    """
    stops = spec.stops if stops is None else stops
    config = make_config(costs, stops, risk)
    timeframe_ms = infer_timeframe_ms(bars)
    try:
        offset = max(0, start - spec.history_window(params) + 1) if start else 0
        evaluation = spec.evaluate(bars[offset:] if offset else bars, params)
    except UnknownHistoryError:
        raise  # a definition error, the same for every combination
    except Exception as exc:  # noqa: BLE001 - the strategy's own failure: an invalid row
        raise _StrategyFailed() from exc
    if len(bars) - offset < evaluation.lookback + 1:
        raise _TooFewBars(
            f"too few bars: {len(bars) - offset} < look-back {evaluation.lookback} + 1"
        )
    target = evaluation.target[start - offset :]
    bars = bars[start:] if start else bars
    if equity_buffer is None or len(equity_buffer) < len(bars):
        equity_buffer = np.empty(len(bars))
    *_, stats = run_target(
        bars,
        np.ascontiguousarray(target),
        config,
        initial_cash,
        timeframe_ms,
        equity_buffer,
        fill_buffer,
        context,
    )
    return stats


def _context(bars: Bars) -> BarsContext:
    """The :func:`~research.metrics.bars_context` every run of a batch over ``bars`` shares."""
    return bars_context(bars.ts, infer_timeframe_ms(bars), bars.open, bars.close)


def equity_curves(
    spec: StrategySpec,
    bars: Bars,
    params_list: Sequence[Any],
    costs: Costs,
    stops: Stops | None,
    risk: RiskLimits,
    initial_cash: float,
) -> dict[Any, pd.Series]:
    """The equity Series of each parameter set: ``research.backtest(...).equity``, the same
    target, execution loop and bits, without the rest of a backtest's result. The Series share
    one index, so the curves cost the sweep 8 bytes a bar each."""
    if not params_list:
        return {}
    config = make_config(costs, spec.stops if stops is None else stops, risk)
    timeframe_ms = infer_timeframe_ms(bars)
    index = utc_index(bars.ts)
    curves = {}
    for params in params_list:
        target = np.ascontiguousarray(spec.evaluate(bars, params).target)
        equity = np.empty(len(bars))
        _, processed, _, _ = run_target(bars, target, config, initial_cash, timeframe_ms, equity)
        equity[processed:] = np.nan
        curves[params] = pd.Series(equity, index=index, name="equity", copy=False)
    return curves


def _tidy_frame(rows: list[Row], names: tuple[str, ...], out_of_sample: bool) -> pd.DataFrame:
    """The sweep's frame: parameters, ``valid``, ``invalid_reason``, then the stats."""
    params_frame = pd.DataFrame([row.values for row in rows], columns=list(names))
    params_frame["valid"] = [not isinstance(row.outcome, Invalid) for row in rows]
    params_frame["invalid_reason"] = [
        row.outcome.reason if isinstance(row.outcome, Invalid) else "" for row in rows
    ]
    columns = list(STAT_NAMES) + ([f"oos_{name}" for name in STAT_NAMES] if out_of_sample else [])
    stats_frame = pd.DataFrame(
        [{} if isinstance(row.outcome, Invalid) else row.outcome for row in rows],
        columns=columns,
        dtype=np.float64,
    )
    clashing = [column for column in stats_frame.columns if column in params_frame.columns]
    stats_frame = stats_frame.drop(columns=clashing)
    return pd.concat([params_frame, stats_frame], axis=1)
