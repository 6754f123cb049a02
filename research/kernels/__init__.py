"""Numba kernels: the execution function and the backtest loop (pure core: numpy + numba)."""
