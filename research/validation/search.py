"""Model-based parameter search with Optuna (TPE), its study kept in the project's database.

Instead of every point of a grid, :func:`search` lets Optuna's tree-structured Parzen estimator
pick the next parameter set from the results so far. Each trial is one backtest, the same row a
sweep computes (:mod:`research.validation.engine`): its statistics and its returns' moments
per block go to the stored-sweep tables (:mod:`research.validation.store`) under the same keys
as a sweep's rows, so a grid sweep over the same bars reuses a search's rows and vice versa.

Study storage
    The study lives in the project's database (``CANDELA_DATABASE_URL``, or the embedded
    SQLite file), beside Candela's tables: on PostgreSQL in the schema ``optuna`` of the same
    database, on SQLite in a file next to it (``<database>.optuna.db``). (Optuna keeps its own
    Alembic version table, which would clash with Candela's in one schema.) A search with the
    same ``study_name`` continues the stored study: a killed search is resumed by running it
    again; trials the kill interrupted are marked failed by Optuna's heartbeat and retried
    with the same parameters, and a trial whose row is already stored is not computed again.

Trials, timeout, pruning
    ``n_trials`` is the number of finished (complete or pruned) trials the study should reach;
    ``timeout`` (seconds) stops the search earlier. With ``pruning``, a trial is first run on
    the first quarter and then the first half of the bars (a causal strategy gives on a
    prefix exactly what the full run gives on it), and Optuna's median pruner stops trials
    whose running metric is below the median of earlier trials at the same stage; the
    survivors then run on all bars (about 1.75 times the work of one run; a pruned trial costs
    a quarter or three quarters).

Overfitting
    Every completed trial is a trial for the deflated Sharpe ratio and the PBO
    (:func:`research.validation.overfitting.assess`, effective trials by clustering); pruned
    trials, which were looked at but have no full returns, count in ``dsr_all_trials``'s
    number of trials.

Parallel trials (``n_jobs > 1``) run in joblib workers that share the study through its
storage; each worker's sampler is seeded with ``seed + worker``, so only ``n_jobs=1`` repeats
exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from research.metrics import DEFAULT_MIN_TRADES, LOWER_IS_BETTER, STAT_NAMES
from research.strategy_model import StrategySpec
from research.sweeps import (
    AUTO_BACKEND,
    DEFAULT_INITIAL_CASH,
    Invalid,
    _check_settings,
    normalize_grid,
)
from research.types import Bars, Costs, RiskLimits, Stops
from research.validation.engine import run_batch
from research.validation.moments import block_cuts
from research.validation.overfitting import Overfitting, assess
from research.validation.store import SweepStore, params_json, run_key
from research.validation.study import (
    StudyError,
    project_engine,
    quiet_optuna,
    rdb_storage,
    study_storage,
)

PRUNING_STAGES = (0.25, 0.5)
DEFAULT_BLOCKS = 16
SUB_BLOCKS = 4


@dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes
    ----------
    study_name : str
    storage : str
        Where the study is kept (URL, password hidden).
    frame : DataFrame
        One row per finished trial: ``number``, ``state`` (``complete`` / ``pruned``), the
        parameters, ``value`` (the objective) and, for complete trials, the stats.
    metric : str
    min_trades : int
    best : Series or None
        The best complete trial with at least ``min_trades`` trades.
    overfitting : Overfitting or None
        Over the complete trials (``None`` without any).
    n_complete, n_pruned, n_failed : int
    moments : ndarray
        The complete trials' moments per sub-block, in ``frame`` order of those trials.
    """

    study_name: str
    storage: str
    frame: pd.DataFrame
    metric: str
    min_trades: int
    best: pd.Series | None
    overfitting: Overfitting | None
    n_complete: int
    n_pruned: int
    n_failed: int
    moments: np.ndarray = field(repr=False)


def search(
    spec: StrategySpec,
    bars: Bars,
    space: Mapping[str, Any] | None = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = DEFAULT_INITIAL_CASH,
    n_trials: int = 100,
    timeout: float | None = None,
    metric: str = "sharpe",
    min_trades: int = DEFAULT_MIN_TRADES,
    study_name: str | None = None,
    database_url: str | None = None,
    seed: int = 0,
    pruning: bool = True,
    n_jobs: int = 1,
    backend: str | None = "loky",
    n_blocks: int = DEFAULT_BLOCKS,
    progress: bool = True,
    market: Mapping[str, str | None] | None = None,
    start: int = 0,
) -> SearchResult:
    """Search ``spec``'s parameters on ``bars`` with Optuna TPE (module docstring).

    Parameters
    ----------
    spec, bars, costs, stops, risk, initial_cash
        As for :func:`research.sweeps.sweep`.
    space : mapping, optional
        ``{name: values}`` per searched parameter: a ``range`` (integers with its step), a
        ``(low, high)`` tuple of floats (continuous) or of ints (integers), or a list
        (categorical). Default: the strategy's sweep ranges.
    n_trials : int
        Finished trials the study should reach (a resumed study counts its earlier ones).
    timeout : float, optional
        Seconds after which no new trial starts.
    metric : str
        Stat to optimise (maximised, or minimised for ``LOWER_IS_BETTER`` stats).
    min_trades : int
        A run with fewer closed trades scores the worst value (it cannot be picked).
    study_name : str, optional
        Default ``"<strategy>-<first 12 characters of the run key>"``: the same search on the
        same bars, code and settings resumes its study.
    database_url : str, optional
        The project's database (default ``CANDELA_DATABASE_URL`` or the embedded SQLite).
    seed : int
        TPE's seed.
    pruning : bool
        Median pruning on bar prefixes (module docstring).
    n_jobs, backend
        joblib workers sharing the study (``backend="dask"`` for a Dask cluster; ``"auto"``
        is ``"loky"`` here: a trial runs the sampler's Python as well as the backtest).
    n_blocks : int
        CSCV blocks for the PBO (even).
    progress : bool
        A progress bar with the time left.
    market : mapping, optional
        ``exchange``, ``symbol``, ``timeframe`` to record with the stored rows.
    start : int
        Trade from this bar, the bars before it being the strategy's history only (as
        ``research.backtest(..., start=)``; a walk-forward's training window).

    Raises
    ------
    ValueError
        For an unknown metric or parameter, an empty space, bad trial counts, or a database
        that cannot hold a study (in-memory SQLite).
    """
    import optuna  # the validation extra

    if metric not in STAT_NAMES:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(STAT_NAMES)}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if min_trades < 0:
        raise ValueError(f"min_trades must be 0 or more, got {min_trades}")
    _check_settings(spec, costs, stops, risk, initial_cash)
    distributions = search_space(spec, spec.sweep if space is None else space)
    run_settings = (costs, stops, risk, float(initial_cash))
    if not 0 <= start < len(bars) - 1:
        raise ValueError(f"start must be a bar index from 0 to {len(bars) - 2}, got {start}")
    cuts = block_cuts(len(bars) - start, n_blocks, SUB_BLOCKS)
    key = run_key(spec, bars, run_settings, cuts, start)
    engine = project_engine(database_url)
    store = SweepStore(engine)
    store.ensure_run(key, spec, bars, market=market)
    storage_url, storage_label = study_storage(engine)
    name = study_name or f"{spec.name}-{key.run_key[:12]}"
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    with quiet_optuna():
        study = optuna.create_study(
            storage=rdb_storage(storage_url),
            study_name=name,
            direction=direction,
            load_if_exists=True,
        )
    if study.direction.name.lower() != direction:
        raise StudyError(
            f"study {name!r} was stored to {study.direction.name.lower()} its "
            f"objective, and metric {metric!r} needs {direction}: choose another "
            "study_name"
        )
    task = _Task(
        spec=spec,
        bars=bars,
        distributions=distributions,
        run_settings=run_settings,
        cuts=cuts,
        metric=metric,
        min_trades=min_trades,
        direction=direction,
        storage_url=storage_url,
        study_name=name,
        key=key,
        database_url=str(engine.url.render_as_string(hide_password=False)),
        pruning=pruning,
        start=int(start),
    )
    deadline = None if timeout is None else time.time() + float(timeout)
    finished = _finished(study)
    bar = tqdm(
        total=n_trials,
        initial=min(finished, n_trials),
        desc=f"search {spec.name}",
        unit="trial",
        disable=not progress,
    )
    if backend == AUTO_BACKEND:
        backend = "loky"
    try:
        if n_jobs == 1 and backend in ("loky", "multiprocessing", "threading", "sequential", None):

            def advance() -> None:
                bar.update(max(0, min(_finished(study), n_trials) - bar.n))

            run_trials(task, n_trials - finished, seed, deadline, advance)
        else:
            chunks = []
            remaining = n_trials - finished
            share = max(1, math.ceil(remaining / (4 * max(n_jobs, 1))))
            while remaining > 0:
                chunks.append(min(share, remaining))
                remaining -= chunks[-1]
            options = {"n_jobs": n_jobs, "return_as": "generator_unordered"}
            if backend is not None:
                options["backend"] = backend
            calls = (
                delayed(run_trials)(task, size, seed + 1 + i, deadline)
                for i, size in enumerate(chunks)
            )
            for _ in Parallel(**options)(calls):
                now = _finished(study)
                bar.update(max(0, min(now, n_trials) - bar.n))
    finally:
        bar.close()
    return _result(
        study, store, key, cuts, n_blocks, metric, min_trades, storage_label, bars[start:]
    )


# --------------------------------------------------------------------------- the space


def search_space(spec: StrategySpec, space: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions for ``space`` (see :func:`search`), checked against the strategy.

    Raises
    ------
    ValueError
        For an unknown parameter (with a suggestion) or a value list that is empty.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            "the search space must be a non-empty mapping of parameter name to "
            "values, e.g. {'fast': range(5, 50), 'slow': (20, 200)}"
        )
    distributions: dict[str, Any] = {}
    for name, values in space.items():
        if name not in spec.params._fields:
            spec.make_params({name: None})  # raises with a "did you mean" suggestion
        if isinstance(values, range):
            if len(values) == 0:
                raise ValueError(f"space[{name!r}] is an empty range")
            distributions[name] = IntDistribution(values[0], values[-1], step=abs(values.step))
        elif (
            isinstance(values, tuple)
            and len(values) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        ):
            low, high = values
            if not low < high:
                raise ValueError(f"space[{name!r}] = {values}: low must be below high")
            if isinstance(low, int) and isinstance(high, int):
                distributions[name] = IntDistribution(low, high)
            else:
                distributions[name] = FloatDistribution(float(low), float(high))
        else:
            listed = normalize_grid(spec, {name: values})[name]
            distributions[name] = CategoricalDistribution(listed)
    return distributions


# --------------------------------------------------------------------------- trials


@dataclass
class _Task:
    """Everything a worker needs to run trials of one study (picklable)."""

    spec: StrategySpec
    bars: Bars
    distributions: dict[str, Any]
    run_settings: tuple
    cuts: np.ndarray
    metric: str
    min_trades: int
    direction: str
    storage_url: str
    study_name: str
    key: Any
    database_url: str
    pruning: bool
    start: int = 0


def run_trials(
    task: _Task,
    n: int,
    seed: int,
    deadline: float | None,
    on_trial: Callable[[], None] | None = None,
) -> int:
    """Run up to ``n`` trials of the task's study (in this process or a worker), calling
    ``on_trial`` after each; return how many were started."""
    import optuna

    from candela.core.db import create_database_engine

    store = SweepStore(create_database_engine(task.database_url))
    stored = store.load_rows(task.key, len(task.cuts) - 1)
    with quiet_optuna():
        study = optuna.load_study(
            study_name=task.study_name,
            storage=rdb_storage(task.storage_url),
            sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=10)
            if task.pruning
            else optuna.pruners.NopPruner(),
        )
        started = 0
        for _ in range(n):
            if _expired(deadline):
                break
            study.optimize(
                lambda trial: _objective(trial, task, store, stored), n_trials=1, catch=()
            )
            started += 1
            if on_trial is not None:
                on_trial()
    store.engine.dispose()
    return started


def _objective(trial, task: _Task, store: SweepStore, stored: dict) -> float:
    import optuna

    values = {
        name: _suggest(trial, name, distribution)
        for name, distribution in task.distributions.items()
    }
    try:
        params = task.spec.make_params(values)
        task.spec.check_enough_bars(len(task.bars), params)
    except ValueError as exc:  # a constraint (fast >= slow) or too few bars: not a trial
        trial.set_user_attr("invalid_reason", str(exc).split(":")[0][:200])
        raise optuna.TrialPruned() from None
    text = params_json(params)
    trial.set_user_attr("params_json", text)
    if text in stored:
        return _score(stored[text][0], task)
    if task.pruning:
        for step, fraction in enumerate(PRUNING_STAGES):
            traded = max(2, int((len(task.bars) - task.start) * fraction))
            prefix = task.bars[: task.start + traded]
            if len(prefix) <= task.spec.lookback(params):
                continue
            [(_, outcome, _)] = run_batch(
                task.spec,
                prefix,
                [0],
                [params],
                task.run_settings,
                np.array([0, traded]),
                task.start,
            )
            trial.report(_score(outcome, task), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
    [(_, outcome, moments)] = run_batch(
        task.spec, task.bars, [0], [params], task.run_settings, task.cuts, task.start
    )
    store.write_rows(task.key, [(text, outcome, moments)])
    stored[text] = (outcome, moments)
    return _score(outcome, task)


def _suggest(trial, name: str, distribution) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high)
    return trial.suggest_categorical(name, distribution.choices)


def _score(stats: Mapping[str, float] | Invalid, task: _Task) -> float:
    """The objective: the metric, or the worst value with too few trades, no value, or an
    invalid run (too few bars, the strategy raised)."""
    worst = math.inf if task.direction == "minimize" else -math.inf
    if isinstance(stats, Invalid):
        return worst
    value = float(stats.get(task.metric, math.nan))
    if stats.get("trade_count", 0) < task.min_trades or not math.isfinite(value):
        return worst
    return value


def _finished(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


# --------------------------------------------------------------------------- the result


def _result(
    study, store: SweepStore, key, cuts, n_blocks, metric, min_trades, storage_label, bars
) -> SearchResult:
    import optuna

    from research.metrics import bars_context

    stored = store.load_rows(key, len(cuts) - 1)
    rows, moments = [], []
    states = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
    }
    n_failed = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in states:
            n_failed += trial.state == optuna.trial.TrialState.FAIL
            continue
        if "invalid_reason" in trial.user_attrs:
            continue  # a constraint, not a backtest
        row = {
            "number": trial.number,
            "state": states[trial.state],
            **trial.params,
            "value": trial.value,
        }
        text = trial.user_attrs.get("params_json")
        if trial.state == optuna.trial.TrialState.COMPLETE and text in stored:
            stats, row_moments = stored[text]
            if isinstance(stats, Invalid):
                row.update(state="invalid", invalid_reason=stats.reason)
            else:
                row.update(stats)
                moments.append(row_moments)
        rows.append(row)
    frame = pd.DataFrame(rows)
    complete = frame[frame["state"] == "complete"] if len(frame) else frame
    best = None
    if len(complete):
        ranked = complete[complete["trade_count"] >= min_trades]
        if len(ranked):
            ascending = metric in LOWER_IS_BETTER
            best = ranked.sort_values(metric, ascending=ascending, kind="stable").iloc[0]
    overfitting = None
    stacked = np.stack(moments) if moments else np.empty((0, len(cuts) - 1, 6))
    if len(stacked):
        selected = None if best is None else int(np.flatnonzero(complete.index == best.name)[0])
        per_year = bars_context(bars.ts, bars.timeframe_ms or int(np.diff(bars.ts).min()))
        n_pruned = int((frame["state"] == "pruned").sum())
        overfitting = assess(
            stacked, selected, n_blocks, per_year.bars_per_year, looked_at=len(stacked) + n_pruned
        )
    return SearchResult(
        study_name=study.study_name,
        storage=storage_label,
        frame=frame,
        metric=metric,
        min_trades=min_trades,
        best=best,
        overfitting=overfitting,
        n_complete=len(complete),
        n_pruned=int((frame["state"] == "pruned").sum()) if len(frame) else 0,
        n_failed=n_failed,
        moments=stacked,
    )
