"""Portfolios in research: universes from the database, the portfolio backtest and its result,
charts and sweeps (the upper layers over :mod:`research.panel` and the book kernel,
:mod:`research.kernels.portfolio`). Nothing is imported here: each module loads on use."""
