"""Validation at scale: overfitting statistics, cross-validation for trading rules, walk-forward
analysis, model-based search and stored sweeps.

One module per job:

* :mod:`research.validation.moments` - per-segment moments of a run's bar returns, the
  compact form (combinations x segments, never combinations x bars) everything below reads;
* :mod:`research.validation.overfitting` - the deflated Sharpe ratio and the probability of
  backtest overfitting (CSCV);
* :mod:`research.validation.trials` - the number of effectively independent trials;
* :mod:`research.validation.engine` - a sweep's batches: stats and moments per parameter set,
  on threads, local processes or a Dask cluster (:mod:`research.validation.distributed`);
  :mod:`research.validation.batches` cuts them (tiles of the grid) and ships the bars,
  :mod:`research.validation.fused` runs the rows without stops or limits in one pass each,
  :mod:`research.validation.memory` returns the threads' freed memory between batches;
* :mod:`research.validation.sweeping` - what ``research.sweep`` asks of this package;
* :mod:`research.validation.store` - stored, resumable sweeps;
* :mod:`research.validation.crossval` - purged k-fold and combinatorial purged CV;
* :mod:`research.validation.windows`, :mod:`research.validation.walkforward` - walk-forward;
* :mod:`research.validation.search`, :mod:`research.validation.study` - Optuna search and
  where its study lives;
* :mod:`research.validation.reading`, :mod:`research.validation.charts`,
  :mod:`research.validation.sweep_report` - plain words, figures and the sweep report.
"""
