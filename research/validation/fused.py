"""Sweep rows without stops or risk limits, each in one pass over the bars.

:func:`research.kernels.sweep_row.sweep_row_nb` runs the execution function only where an order
is pending and folds the equity, chunk by chunk while it is in the cache, into the statistics
and the return moments per segment: no bars-long equity array per row, and a boolean target is
read as it is, not converted to float64 levels. Each row is exactly what
:func:`research.sweeps.run_stats` (``research.backtest``'s stats) and
:func:`~research.validation.moments.segment_moments_nb` give for it (tested).

What only depends on the bars (which bars the execution function accepts, the calendar, gaps
and buy-and-hold figures) is computed once per batch, not once per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from research.backtesting import infer_timeframe_ms
from research.kernels.records import feature_switches, make_config
from research.kernels.sweep_row import (
    BLOCK,
    CHUNK,
    MAX_FILLS_PER_BAR,
    NO_FLAGS,
    NO_LEVELS,
    accepted_bars_nb,
    fill_table,
    fresh_account,
    sweep_row_nb,
)
from research.kernels.trades import closed_trades_into_nb
from research.metrics import bars_context, gaps_held_by_fills, stats_of_curve
from research.strategy_model import StrategySpec, UnknownHistoryError
from research.sweeps import Invalid, _context
from research.types import Bars
from research.validation.moments import N_MOMENTS

#: Fill records a batch starts with (4.5 MiB): room for the fills of a chunk, and more.
FILL_ROWS = max(65_536, 2 * MAX_FILLS_PER_BAR * CHUNK)


def fused_rows(spec: StrategySpec, run_settings: tuple) -> bool:
    """Whether the rows of these settings take the fused path: no stop and no risk limit."""
    costs, stops, risk, _ = run_settings
    config = make_config(costs, spec.stops if stops is None else stops, risk)
    return feature_switches(config) == (None, None)


class _Part:
    """The bars a run trades (``bars[start:]``) and what they alone determine: how many of
    them the execution function accepts, the bar length the run infers from ``bars``, and the
    calendar, gaps and buy-and-hold figures of the accepted ones (as
    :func:`research.sweeps.run_stats` and :func:`research.backtesting.run_stats_values` get
    them)."""

    def __init__(self, bars: Bars, start: int):
        self.start = start
        traded = bars[start:] if start else bars
        self.traded = traded
        self.timeframe_ms = infer_timeframe_ms(bars)
        self.accepted, _ = accepted_bars_nb(
            traded.ts, traded.open, traded.high, traded.low, traded.close
        )
        n = self.accepted
        self.context = None
        if n == len(traded):
            self.context = _context(traded)
        elif n:
            self.context = bars_context(
                traded.ts[:n], self.timeframe_ms, traded.open[:n], traded.close[:n]
            )


class FusedRows:
    """The rows of one batch: :meth:`outcome` of each parameter set, sharing the bars' parts,
    the scratch space and the fill table."""

    def __init__(
        self,
        spec: StrategySpec,
        bars: Bars,
        run_settings: tuple,
        cuts: np.ndarray,
        start: int = 0,
        split: int | None = None,
    ):
        costs, stops, risk, initial_cash = run_settings
        self.spec = spec
        self.bars = bars
        self.config = tuple(make_config(costs, spec.stops if stops is None else stops, risk))
        self.initial_cash = float(initial_cash)
        self.cuts = np.ascontiguousarray(cuts, dtype=np.int64)
        self.split = split
        # one Bars object per part for the whole batch: the indicator memo knows its arrays
        self.in_sample_bars = bars if split is None else bars[:split]
        self.in_sample = _Part(self.in_sample_bars, start)
        self.held_out = None if split is None else _Part(bars, split)
        self.fills = fill_table(FILL_ROWS)
        self.account = fresh_account(self.initial_cash)
        self.pnls, self.durations = np.empty(FILL_ROWS), np.empty(FILL_ROWS)
        self.equity = np.empty(CHUNK)
        self.returns = np.empty(CHUNK)
        self.scratch = np.empty(BLOCK)
        self.no_cuts = np.zeros(1, dtype=np.int64)
        self.no_moments = np.empty((0, N_MOMENTS))

    def outcome(self, params: Any) -> tuple[dict[str, float] | Invalid, np.ndarray]:
        """``(stats or Invalid, moments)`` of ``params``: what
        :func:`research.validation.engine.run_batch` gives for it the long way."""
        moments = np.zeros((len(self.cuts) - 1, N_MOMENTS))
        stats = self._run(params, self.in_sample_bars, self.in_sample, self.cuts, moments)
        if isinstance(stats, Invalid) or self.held_out is None:
            return stats, moments
        held_out = self._run(params, self.bars, self.held_out, self.no_cuts, self.no_moments)
        if isinstance(held_out, Invalid):
            moments[:] = 0.0
            return held_out._replace(reason=f"out of sample: {held_out.reason}"), moments
        stats.update({f"oos_{name}": value for name, value in held_out.items()})
        return stats, moments

    def _run(self, params, bars: Bars, part: _Part, cuts, moments):
        """One run over ``bars`` trading from ``part.start`` (as
        :func:`research.sweeps.run_stats`), its moments into ``moments``."""
        spec, start = self.spec, part.start
        try:
            offset = max(0, start - spec.history_window(params) + 1) if start else 0
            evaluation = spec.evaluate(bars[offset:] if offset else bars, params, raw_target=True)
        except UnknownHistoryError:
            raise  # a definition error, the same for every combination
        except Exception as exc:  # noqa: BLE001 - the strategy's own failure: an invalid row
            return Invalid(
                f"{type(exc).__name__} raised by the strategy", f"{type(exc).__name__}: {exc}"[:200]
            )
        if len(bars) - offset < evaluation.lookback + 1:
            reason = f"too few bars: {len(bars) - offset} < look-back {evaluation.lookback} + 1"
            return Invalid("too few bars for the look-back", reason)
        skip = start - offset
        target = np.ascontiguousarray(evaluation.target[skip:])
        if target.dtype == np.bool_:
            levels, flags = NO_LEVELS, target.view(np.uint8)
            lookback = max(0, evaluation.lookback - skip)
        else:
            levels, flags, lookback = target, NO_FLAGS, 0
        n = part.accepted
        if n == 0:
            return {}
        traded, context = part.traded, part.context
        while True:
            n_fills, exposed, final, curve = sweep_row_nb(
                self.config,
                self.account,
                traded.ts,
                traded.open,
                traded.high,
                traded.low,
                traded.close,
                levels,
                flags,
                lookback,
                n,
                context.timeframe_ms,
                cuts,
                self.fills,
                moments,
                self.equity,
                self.returns,
                self.scratch,
            )
            if n_fills >= 0:
                break
            self.fills = fill_table(2 * len(self.fills))
        fills = self.fills[:n_fills]
        if n_fills:
            if len(self.pnls) < n_fills:
                self.pnls, self.durations = np.empty(len(self.fills)), np.empty(len(self.fills))
            closed = closed_trades_into_nb(fills, part.timeframe_ms, self.pnls, self.durations)
            pnls, durations = self.pnls[:closed], self.durations[:closed]
            fees = float(fills["fee"].sum())
            gaps_held = gaps_held_by_fills(context, fills["bar"], fills["position_after"])
        else:
            pnls, durations, fees, gaps_held = np.empty(0), np.empty(0), 0.0, 0
        return stats_of_curve(
            final, curve, exposed, gaps_held, context, pnls, durations, self.initial_cash, fees
        )
