"""A replay's fast path: a bot decides a block of bars with ONE strategy evaluation.

Following live bars, a bot runs its strategy once per bar on the last ``history_window`` bars
(:meth:`runner.bot.Bot.prepare`). Replaying stored bars, it may instead run it once on the
history window before a block of bars followed by the whole block
(:func:`decide_block`): by the parity contract (docs/architecture.md §3) the strategy is causal
and any window of at least its history window (clamped at the first stored bar) gives the
full-history target and indicators at its last bar, so the value at each bar of the block is
the one the per-bar window would give, bit for bit (``tests/runner/test_block.py`` checks it
for every shipped strategy on real data). The block's bars then go through the execution
function one after the other (:func:`research.kernels.execution.step_span`, which is
:func:`~research.kernels.execution.step` per bar) and become the very records the per-bar path
makes (:meth:`runner.bot.Bot.prepare_block`). Committing, exactly once per (bot, bar), and publishing after the
commit stay the market group's (:mod:`runner.market_group`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from research.kernels.execution import step_span
from research.kernels.records import MAX_FILLS_PER_BAR, State, new_fills
from research.types import Bars

BAD_BAR_NOTE = "bar rejected by the execution function (bad prices); not traded"
"""The ``error`` indicator of a bar the execution function rejected."""

_FIELDS = len(State._fields)


@dataclass
class BlockDecisions:
    """The strategy's decisions at the close of consecutive bars.

    Attributes
    ----------
    ts : ndarray of int64
        The bars' close times.
    target : ndarray of float64
        The target decided at each bar's close (``nan``: none).
    indicators : dict of str to list
        Each indicator's value at each bar (``None`` for ``nan``).
    """

    ts: np.ndarray
    target: np.ndarray
    indicators: dict[str, list]

    def covers(self, first_ts: int, count: int) -> int | None:
        """Index of the bar ``first_ts`` if it and the ``count - 1`` bars after it are held."""
        index = int(np.searchsorted(self.ts, first_ts))
        if index + count <= len(self.ts) and self.ts[index] == first_ts:
            return index
        return None


def rows_to_arrays(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(ts int64, values (5, n) float64)`` of ``(ts, open, high, low, close, volume)`` rows."""
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 6)
    ts = np.array([int(row[0]) for row in rows], dtype=np.int64)
    return ts, np.ascontiguousarray(table[:, 1:].T)


def decide_block(spec, params, history: tuple, ts: np.ndarray, values: np.ndarray, timeframe_ms):
    """Evaluate the strategy once on ``history`` (the bot's window before the block, as
    :meth:`runner.market_data.BarWindow.arrays` gives it) followed by the block's bars.

    Returns
    -------
    BlockDecisions
        The target and indicators at each of the block's bars. Exceptions of the strategy
        propagate.
    """
    h_ts, h_open, h_high, h_low, h_close, h_volume = history
    bars = Bars(
        np.concatenate((h_ts, ts)),
        np.concatenate((h_open, values[0])),
        np.concatenate((h_high, values[1])),
        np.concatenate((h_low, values[2])),
        np.concatenate((h_close, values[3])),
        np.concatenate((h_volume, values[4])),
        timeframe_ms,
    )
    target, series = spec.target_and_indicators(bars, params)
    skip = len(h_ts)
    indicators = {}
    for name, values_ in series.items():
        column = np.asarray(values_, dtype=np.float64)[skip:]
        indicators[name] = [None if math.isnan(value) else value for value in column.tolist()]
    return BlockDecisions(ts, np.asarray(target, dtype=np.float64)[skip:].copy(), indicators)


@dataclass
class SpanResult:
    """The execution function run over a block: each bar's state, status and fills."""

    processed: int  #: bars processed (fewer than the block's at an out-of-order bar)
    states: list  #: the state after each processed bar, as :class:`State`
    statuses: list  #: fills per bar, or ``STATUS_BAD_BAR``
    fills: np.ndarray  #: every fill, in bar order


def run_span(state: State, config, ts, values, target) -> SpanResult:
    """Advance ``state`` over the block's bars with the execution function."""
    n = len(ts)
    states = np.empty((n, _FIELDS))
    statuses = np.empty(n, dtype=np.int64)
    fills = new_fills(MAX_FILLS_PER_BAR * n)
    processed, n_fills = step_span(
        state,
        config,
        ts,
        values[0],
        values[1],
        values[2],
        values[3],
        target,
        states,
        statuses,
        fills,
    )
    return SpanResult(
        processed,
        [State._make(row) for row in states[:processed].tolist()],
        statuses[:processed].tolist(),
        fills[:n_fills],
    )
