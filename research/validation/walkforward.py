"""Walk-forward optimisation: choose the parameters on a training window, trade them on the
next test window, move on; stitch the test windows into one out-of-sample record.

For each window (:mod:`research.validation.windows`):

1. **Train.** Every valid combination of the grid is backtested over the training bars
   (:func:`research.validation.engine.evaluate` with ``start``: the indicators are warmed on
   the bars before the window, never on a cold start) and the best row by ``metric`` among
   those with at least ``min_trades`` closed trades is chosen (:func:`research.sweeps.rank`).
   A window without any such row stays flat in its test window.
2. **Test.** The chosen parameters are backtested over the test bars with
   ``research.backtest(..., start=test start)``: the strategy is evaluated on its history
   window before the test window (no bar of the test window is lost to a warm-up), and the
   account starts flat with the capital the previous test window ended with.
3. **Stitch.** The test windows' equity curves, fills and trades follow one another into one
   out-of-sample run from the first test bar to the last bar, with continuous capital: a
   position still open at the end of a window is valued at that window's last close and the
   next window starts flat with that equity (no exit fee is charged for the handover). Its
   statistics are computed like any run's (:func:`research.metrics.compute_stats`).

Reported with it: the **walk-forward efficiency** (WFE; Pardo): the out-of-sample annualised
performance over the in-sample one, for the Sharpe ratio (stitched out-of-sample Sharpe over the
mean of the chosen rows' training Sharpe ratios) and for the CAGR (the same with CAGRs), and per
window (``nan`` where the in-sample figure is not positive: no edge to keep); the **parameter
stability**: the chosen values per window, how often they change from one window to the next and
their spread; the **per-window statistics** in and out of sample; and the overfitting statistics of
every training window's sweep (:func:`research.validation.overfitting.assess`: a window with a low
deflated Sharpe ratio chose by luck).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from research.backtesting import backtest
from research.kernels.trades import closed_trade_arrays_nb
from research.metrics import DEFAULT_MIN_TRADES, STAT_NAMES, compute_stats
from research.sweeps import (
    AUTO_BACKEND,
    DEFAULT_INITIAL_CASH,
    Invalid,
    _check_settings,
    normalize_grid,
    rank,
)
from research.types import Bars, Costs, RiskLimits, Stops
from research.validation.engine import evaluate
from research.validation.moments import block_cuts
from research.validation.overfitting import assess
from research.validation.windows import Window, walk_forward_windows

#: CSCV blocks of a training window's PBO (fewer than a whole sweep's: windows are short).
WINDOW_BLOCKS = 8


@dataclass
class WalkForward:
    """Outcome of :func:`walk_forward`.

    Attributes
    ----------
    windows : DataFrame
        One row per window: ``window``, the training and test spans (``train_start_ts``,
        ``train_end_ts``, ``test_start_ts``, ``test_end_ts`` close times, ``train_bars``,
        ``test_bars``), the chosen parameters, ``is_<metric>``, ``is_sharpe``, ``is_cagr``,
        ``is_trades`` (in sample), ``oos_sharpe``, ``oos_cagr``, ``oos_total_return``,
        ``oos_max_drawdown``, ``oos_trades`` (out of sample), ``wfe_sharpe``, ``wfe_cagr``,
        ``dsr`` and ``pbo`` of the window's sweep, ``n_valid`` (rows of the training sweep) and
        ``n_ranked`` (rows with enough trades).
    equity : Series
        The stitched out-of-sample equity (tz-aware UTC index of close times).
    stats : Series
        Statistics of the stitched run (:data:`research.metrics.STAT_NAMES`).
    trades : DataFrame
        The test windows' round trips, one after the other, with a ``window`` column.
    metric : str
    min_trades : int
    param_names : tuple of str
    anchored : bool
    """

    windows: pd.DataFrame
    equity: pd.Series
    stats: pd.Series
    trades: pd.DataFrame
    metric: str
    min_trades: int
    param_names: tuple[str, ...]
    anchored: bool
    initial_cash: float
    buy_hold: pd.Series = field(repr=False, default=None)

    @property
    def efficiency(self) -> dict[str, float]:
        """Walk-forward efficiency (module docstring): ``sharpe`` and ``cagr``."""
        chosen = self.windows.dropna(subset=["is_sharpe"])
        mean_is_sharpe = chosen["is_sharpe"].mean()
        mean_is_cagr = chosen["is_cagr"].mean()
        return {
            "sharpe": efficiency_ratio(self.stats["sharpe"], mean_is_sharpe),
            "cagr": efficiency_ratio(self.stats["cagr"], mean_is_cagr),
        }

    def stability(self) -> pd.DataFrame:
        """Per parameter: distinct values chosen, changes between consecutive windows (and
        their share), the values' mean, standard deviation and coefficient of variation."""
        rows = []
        chosen = self.windows.dropna(subset=list(self.param_names))
        for name in self.param_names:
            values = chosen[name]
            changes = int((values.to_numpy()[1:] != values.to_numpy()[:-1]).sum())
            numeric = pd.api.types.is_numeric_dtype(values)
            mean = float(values.mean()) if numeric else math.nan
            std = float(values.std(ddof=1)) if numeric and len(values) > 1 else math.nan
            rows.append(
                {
                    "parameter": name,
                    "distinct": int(values.nunique()),
                    "changes": changes,
                    "change_share": changes / max(len(values) - 1, 1),
                    "mean": mean,
                    "std": std,
                    "cv": std / abs(mean) if numeric and mean else math.nan,
                }
            )
        return pd.DataFrame(rows)


def walk_forward(
    spec,
    bars: Bars,
    grid: Mapping[str, Iterable[Any]] | None = None,
    costs: Costs = Costs(),
    *,
    train: Any,
    test: Any = None,
    n_windows: int | None = None,
    anchored: bool = False,
    metric: str = "sharpe",
    min_trades: int = DEFAULT_MIN_TRADES,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = DEFAULT_INITIAL_CASH,
    n_jobs: int = 1,
    backend: str | None = AUTO_BACKEND,
    client: Any = None,
    progress: bool = True,
    search_trials: int | None = None,
    space: Mapping[str, Any] | None = None,
    database_url: str | None = None,
    seed: int = 0,
) -> WalkForward:
    """Walk-forward optimisation of ``spec`` over ``grid`` on ``bars`` (module docstring).

    Parameters
    ----------
    spec, bars, grid, costs, stops, risk, initial_cash, n_jobs, backend
        As for :func:`research.sweeps.sweep` (``backend="dask"`` with ``client``: see
        :mod:`research.validation.distributed`).
    train, test, n_windows, anchored
        The windows (:func:`research.validation.windows.walk_forward_windows`): lengths in bars
        (int) or time (``"90D"``), or ``n_windows`` test windows after the first training one.
    metric : str
        The stat that chooses the parameters in each training window (higher is better, except
        for the ``LOWER_IS_BETTER`` stats).
    min_trades : int
        Rows with fewer closed trades in the training window cannot be chosen.
    progress : bool
        One progress bar per training sweep, with the time left, and one over the windows.
    search_trials : int, optional
        Choose in each training window with an Optuna search of this many trials
        (:func:`research.validation.search.search`, over ``space``, default the grid's values;
        its study in the project's database at ``database_url``, one study per window, so a
        killed walk-forward resumes) instead of backtesting the whole grid.
    space, database_url, seed
        The search's space, database and seed.

    Raises
    ------
    ValueError
        For windows that do not fit the data, an unknown metric or parameter, or a grid whose
        combinations are all invalid.
    """
    from tqdm.auto import tqdm

    if metric not in STAT_NAMES:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(STAT_NAMES)}")
    if min_trades < 0:
        raise ValueError(f"min_trades must be 0 or more, got {min_trades}")
    _check_settings(spec, costs, stops, risk, initial_cash)
    grid = normalize_grid(spec, spec.sweep if grid is None else grid)
    windows = walk_forward_windows(bars.ts, train, test, n_windows=n_windows, anchored=anchored)
    candidates = _constrained(spec, grid)
    first_stop = windows[0].train_stop
    if not any(spec.lookback(params) < first_stop for params in candidates):
        raise ValueError(
            f"no combination of the grid has a look-back shorter than the "
            f"{first_stop} bars up to the end of the first training window: use a "
            "longer train window or shorter look-back parameters"
        )
    run_settings = (costs, stops, risk, float(initial_cash))
    names = tuple(grid)
    rows, equities, trades, fills_bars = [], [], [], []
    capital = float(initial_cash)
    outer = tqdm(
        windows,
        desc=f"walk-forward {spec.name}",
        unit="window",
        disable=not progress or len(windows) < 2,
    )
    for window in outer:
        if search_trials:
            chosen, training = _search(
                spec,
                bars,
                window,
                space or grid,
                run_settings,
                metric,
                min_trades,
                search_trials,
                database_url,
                seed,
                n_jobs,
                backend,
                progress,
            )
        else:
            chosen, training = _train(
                spec,
                bars,
                window,
                candidates,
                run_settings,
                names,
                metric,
                min_trades,
                n_jobs,
                backend,
                client,
                progress,
                grid,
            )
        row = _window_row(bars, window, names, chosen, training, metric, min_trades)
        if chosen is None:
            equity = pd.Series(capital, index=_index(bars.ts[window.test_start : window.test_stop]))
            row.update(
                oos_sharpe=math.nan,
                oos_cagr=math.nan,
                oos_total_return=0.0,
                oos_max_drawdown=0.0,
                oos_trades=0,
            )
            window_trades = pd.DataFrame()
        else:
            result = backtest(
                spec,
                bars[: window.test_stop],
                chosen,
                costs,
                stops=stops,
                risk=risk,
                initial_cash=capital,
                start=window.test_start,
            )
            equity = result.equity
            stats = result.stats
            row.update(
                oos_sharpe=stats["sharpe"],
                oos_cagr=stats["cagr"],
                oos_total_return=stats["total_return"],
                oos_max_drawdown=stats["max_drawdown"],
                oos_trades=stats["trade_count"],
            )
            window_trades = result.trades.assign(window=window.index)
            fills_bars.append(result)
        row["wfe_sharpe"] = efficiency_ratio(row["oos_sharpe"], row["is_sharpe"])
        row["wfe_cagr"] = efficiency_ratio(row["oos_cagr"], row["is_cagr"])
        capital = float(equity.iloc[-1]) if len(equity) else capital
        equities.append(equity)
        trades.append(window_trades)
        rows.append(row)
    stitched = pd.concat(equities)
    first = windows[0].test_start
    out_of_sample = bars[first:]
    stats = _stitched_stats(stitched, fills_bars, out_of_sample, float(initial_cash))
    trades_frame = (
        pd.concat([t for t in trades if len(t)], ignore_index=True)
        if any(len(t) for t in trades)
        else pd.DataFrame()
    )
    buy_hold = pd.Series(
        float(initial_cash) * out_of_sample.close / out_of_sample.open[0], index=stitched.index
    )
    return WalkForward(
        windows=pd.DataFrame(rows),
        equity=stitched,
        stats=pd.Series(stats, name=spec.name),
        trades=trades_frame,
        metric=metric,
        min_trades=int(min_trades),
        param_names=names,
        anchored=anchored,
        initial_cash=float(initial_cash),
        buy_hold=buy_hold,
    )


def _constrained(spec, grid) -> list[Any]:
    from research.sweeps import valid_combinations

    candidates, n_combinations, _ = valid_combinations(spec, grid)
    if not candidates:
        raise ValueError(
            f"none of the {n_combinations} combinations of the grid satisfies the "
            f"constraints of strategy {spec.name!r}: widen the grid"
        )
    return candidates


def _train(
    spec,
    bars,
    window: Window,
    candidates,
    run_settings,
    names,
    metric,
    min_trades,
    n_jobs,
    backend,
    client,
    progress,
    grid,
):
    """The chosen params of ``window`` (``None`` when no row qualifies) and its training
    sweep: ``(frame, overfitting or None)``."""
    n_train = window.train_stop - window.train_start
    blocks = WINDOW_BLOCKS if n_train >= 4 * WINDOW_BLOCKS else 2
    cuts = block_cuts(n_train, blocks, 4 if n_train >= 4 * blocks * 4 else 1)
    evaluation = evaluate(
        spec,
        bars[: window.train_stop],
        candidates,
        run_settings,
        cuts,
        start=window.train_start,
        n_jobs=n_jobs,
        backend=backend,
        client=client,
        progress=progress,
        grid=grid,
        description=f"window {window.index + 1} {spec.name}",
    )
    valid = [
        i
        for i, stats in enumerate(evaluation.stats)
        if not isinstance(stats, Invalid) and stats.get("n_bars")
    ]
    frame = pd.DataFrame([evaluation.stats[i] for i in valid])
    if frame.empty:
        return None, (frame, None)
    params_frame = pd.DataFrame(
        [[getattr(candidates[i], n) for n in names] for i in valid], columns=list(names)
    )
    frame = pd.concat([params_frame, frame.drop(columns=[c for c in names if c in frame])], axis=1)
    ranked = rank(frame, metric, min_trades)
    chosen_row = None if ranked.empty else int(ranked.index[0])
    overfitting = None
    if len(valid) > 1:
        overfitting = assess(
            evaluation.moments[valid], chosen_row, blocks, float(frame["bars_per_year"].iloc[0])
        )
    frame.attrs["chosen"] = chosen_row
    chosen = None if chosen_row is None else candidates[valid[chosen_row]]
    return chosen, (frame, overfitting)


def _search(
    spec,
    bars,
    window: Window,
    space,
    run_settings,
    metric,
    min_trades,
    trials,
    database_url,
    seed,
    n_jobs,
    backend,
    progress,
):
    """:func:`_train` with an Optuna search instead of the whole grid."""
    from research.validation.search import search

    costs, stops, risk, initial_cash = run_settings
    result = search(
        spec,
        bars[: window.train_stop],
        space,
        costs,
        stops=stops,
        risk=risk,
        initial_cash=initial_cash,
        n_trials=trials,
        metric=metric,
        min_trades=min_trades,
        database_url=database_url,
        seed=seed,
        n_jobs=n_jobs,
        backend=backend,
        progress=progress,
        start=window.train_start,
        n_blocks=WINDOW_BLOCKS,
    )
    frame = result.frame[result.frame["state"] == "complete"] if len(result.frame) else result.frame
    if result.best is None:
        return None, (frame, result.overfitting)
    frame.attrs["chosen"] = result.best.name
    chosen = spec.make_params({name: result.best[name] for name in space})
    return chosen, (frame, result.overfitting)


def _window_row(
    bars, window: Window, names, chosen, training, metric, min_trades
) -> dict[str, Any]:
    frame, overfitting = training
    row: dict[str, Any] = {
        "window": window.index,
        "train_start_ts": int(bars.ts[window.train_start]),
        "train_end_ts": int(bars.ts[window.train_stop - 1]),
        "test_start_ts": int(bars.ts[window.test_start]),
        "test_end_ts": int(bars.ts[window.test_stop - 1]),
        "train_bars": window.train_stop - window.train_start,
        "test_bars": window.test_stop - window.test_start,
    }
    for name in names:
        row[name] = getattr(chosen, name) if chosen is not None else None
    best = frame.loc[frame.attrs["chosen"]] if chosen is not None else None
    row[f"is_{metric}"] = best[metric] if best is not None else math.nan
    row["is_sharpe"] = best["sharpe"] if best is not None else math.nan
    row["is_cagr"] = best["cagr"] if best is not None else math.nan
    row["is_trades"] = best["trade_count"] if best is not None else 0
    row["n_valid"] = len(frame)
    row["n_ranked"] = 0 if frame.empty else int((frame["trade_count"] >= min_trades).sum())
    row["dsr"] = overfitting.dsr if overfitting is not None else math.nan
    row["pbo"] = overfitting.pbo.pbo if overfitting is not None and overfitting.pbo else math.nan
    return row


def _stitched_stats(equity: pd.Series, results, bars: Bars, initial_cash: float) -> dict:
    """Statistics of the stitched out-of-sample run over ``bars`` (the bars of every test
    window, in order)."""
    position = np.zeros(len(bars))
    pnls, durations, fees = [], [], 0.0
    where = {int(ts): i for i, ts in enumerate(bars.ts)}
    for result in results:
        first = where[int(result.bars.ts[0])]
        position[first : first + len(result.bars)] = result.position.to_numpy()
        if len(result.fill_rows):
            window_pnls, window_durations = closed_trade_arrays_nb(
                result.fill_rows, result.timeframe_ms
            )
            pnls.extend(window_pnls)
            durations.extend(window_durations)
        fees += float(result.stats["total_fees"])
    return compute_stats(
        equity.to_numpy(),
        position,
        bars.ts,
        bars.timeframe_ms or int(np.diff(bars.ts).min()),
        np.asarray(pnls),
        np.asarray(durations),
        initial_cash,
        fees,
        open_=bars.open,
        close=bars.close,
    )


def _index(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ts, unit="ms", utc=True)


def efficiency_ratio(out_of_sample: float, in_sample: float) -> float:
    """``out_of_sample / in_sample``, or ``nan`` when the in-sample figure is not positive
    (there is no in-sample edge whose share could survive) or either is not finite."""
    if not (math.isfinite(out_of_sample) and math.isfinite(in_sample)) or in_sample <= 0:
        return math.nan
    return float(out_of_sample / in_sample)
