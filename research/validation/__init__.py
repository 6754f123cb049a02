"""Validation at scale: overfitting statistics, cross-validation for trading rules, walk-forward
analysis, model-based search and stored sweeps.

One module per job:

* :mod:`research.validation.moments` - per-segment moments of a run's bar returns, the
  compact form (combinations x segments, never combinations x bars) everything below reads;
* :mod:`research.validation.overfitting` - the deflated Sharpe ratio and the probability of
  backtest overfitting (CSCV);
* :mod:`research.validation.trials` - the number of effectively independent trials.
"""
