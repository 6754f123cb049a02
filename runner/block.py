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

from candela.core.bus import Encoded, signals_channel, status_channel, trades_channel
from candela.core.db import now_ms
from research.kernels.execution import step_span
from research.kernels.records import (
    HALT_NONE,
    MAX_FILLS_PER_BAR,
    REASON_SIGNAL,
    STATUS_BAD_BAR,
    State,
    fill_rows,
    new_fills,
)
from research.types import Bars
from runner.encoding import (
    SIGNAL_TEMPLATE,
    indicator_texts,
    indicators_json,
    number_texts,
    signal_json,
)
from runner.ledger import BlockRecord

BAD_BAR_NOTE = "bar rejected by the execution function (bad prices); not traded"
"""The ``error`` indicator of a bar the execution function rejected."""

_FIELDS = len(State._fields)
_CASH, _POSITION, _EQUITY, _PENDING, _ORDERED, _HALT, _PENDING_REASON = (
    State._fields.index(name)
    for name in (
        "cash",
        "position",
        "equity",
        "pending_target",
        "ordered_target",
        "halt",
        "pending_reason",
    )
)


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
    states_array: np.ndarray  #: row ``i``: the values of the state after bar ``i``
    statuses: np.ndarray  #: fills per bar, or ``STATUS_BAD_BAR``
    fills: np.ndarray  #: every fill, in bar order

    def state(self, i: int) -> State:
        """The state after bar ``i``."""
        return State._make(self.states_array[i].tolist())


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
    return SpanResult(processed, states[:processed], statuses[:processed], fills[:n_fills])


# ------------------------------------------------------------------ the block's records


@dataclass
class PreparedBlock:
    """Consecutive bars of one bot decided and filled, not yet committed: the block path's
    :class:`runner.bot.PreparedBar` for many bars, its rows held as columns.

    Attributes
    ----------
    record : runner.ledger.BlockRecord
        The rows to write.
    state : State
        The execution state after the last bar; the bot has adopted it (provisionally).
    indicators : list of dict
        Each bar's indicator values, as the per-bar path records them.
    """

    record: BlockRecord
    state: State
    indicators: list[dict]
    indicator_texts: list | None = None
    """Each bar's indicators as compact JSON without braces (``None``: not spelt out)."""

    @property
    def bars(self) -> int:
        """How many bars the block holds."""
        return len(self.record.ts)

    def messages(self, quoted_id: str, published_at: int) -> list[tuple[str, dict]]:
        """What :meth:`runner.bot.Bot.messages` gives for each of the block's bars, in order."""
        record = self.record
        bot_id = record.bot_id
        signals = record.signals
        keys = ("bot_id", "ts", "action", "target", "raw_target", "price", "executed")
        columns = [signals[key] for key in keys[1:]]
        created = signals["created_at"][0] if record.ts else 0
        signal_channel = signals_channel(bot_id)
        fills_by_bar: dict[int, list[dict]] = {}
        for trade in record.trades:
            fills_by_bar.setdefault(trade["bar_ts"], []).append(trade)
        messages: list[tuple[str, dict]] = []
        performance = record.performance
        texts = self.indicator_texts or [None] * len(record.ts)
        prices, raws, targets = (
            number_texts(signals[key]) for key in ("price", "raw_target", "target")
        )
        for i, values in enumerate(zip(*columns)):
            payload = dict(zip(keys, (bot_id, *values)))
            payload["created_at"] = created
            payload["indicators"] = self.indicators[i]
            payload["published_at"] = published_at
            if None in (texts[i], prices[i], raws[i], targets[i]):
                text = signal_json(payload, quoted_id)
            else:
                ts, action, _, _, _, executed = values
                text = SIGNAL_TEMPLATE % (
                    action,
                    quoted_id,
                    created,
                    "true" if executed else "false",
                    texts[i],
                    prices[i],
                    published_at,
                    raws[i],
                    targets[i],
                    ts,
                )
            messages.append((signal_channel, payload if text is None else Encoded(payload, text)))
            fills = fills_by_bar.get(values[0])
            if fills:
                messages.extend((trades_channel(bot_id), trade) for trade in fills)
                messages.append(
                    (
                        status_channel(bot_id),
                        dict(
                            bot_id=bot_id,
                            event="traded",
                            ts=values[0],
                            cash=performance["cash"][i],
                            position=performance["position"][i],
                            equity=performance["equity"][i],
                        ),
                    )
                )
        return messages


def block_record(
    bot, previous: int | None, ts, values, decided_target, indicators: dict[str, list], span
) -> PreparedBlock:
    """The records of the ``span.processed`` first bars of a block, as the per-bar path makes
    them (:meth:`runner.bot.Bot._record`), column by column.

    ``bot`` gives the ids and hashes; ``decided_target`` and ``indicators`` are the
    strategy's decisions at the block's bars (:class:`BlockDecisions`, sliced).
    """
    n = span.processed
    created = now_ms()
    states = span.states_array[:n]
    status = span.statuses[:n]
    pending, ordered = states[:, _PENDING], states[:, _ORDERED]
    halt, reason = states[:, _HALT], states[:, _PENDING_REASON]
    executed = (status >= 0) & ~np.isnan(pending)
    halted = (halt != HALT_NONE) & (reason != REASON_SIGNAL)
    with np.errstate(invalid="ignore"):
        buying = pending > ordered
    action = np.where(
        executed,
        np.where(halted, "halt", np.where(buying, "buy", "sell")),
        np.where(halt != HALT_NONE, "halt", "hold"),
    )
    target = np.where(executed, pending, ordered)
    raw = np.asarray(decided_target[:n], dtype=np.float64)
    raw = np.where(np.isnan(raw), 0.0, raw)
    ts_list = [int(value) for value in ts[:n].tolist()]
    names = list(indicators)
    per_bar = (
        [dict(zip(names, row)) for row in zip(*(indicators[name][:n] for name in names))]
        if names
        else [{} for _ in range(n)]
    )
    texts = indicator_texts({name: indicators[name][:n] for name in names}, n)
    loose, compact = texts if texts is not None else (None, None)
    for i in np.flatnonzero(status == STATUS_BAD_BAR).tolist():
        per_bar[i] = dict(per_bar[i], error=BAD_BAR_NOTE)
        if loose is not None:
            loose[i] = compact[i] = None  # left to the generic encoders
    closes = values[3][:n].tolist()
    cash, position, equity = (states[:, index].tolist() for index in (_CASH, _POSITION, _EQUITY))
    signals = dict(
        bot_id=[bot.bot_id] * n,
        ts=ts_list,
        action=action.tolist(),
        target=target.tolist(),
        raw_target=raw.tolist(),
        price=closes,
        executed=executed.tolist(),
        indicators_json=[
            indicators_json(values_) if loose is None or loose[i] is None else loose[i]
            for i, values_ in enumerate(per_bar)
        ],
        created_at=[created] * n,
        config_hash=[bot.config_hash] * n,
        strategy_hash=[bot.strategy_hash] * n,
    )
    trades = []
    last_bar, seq = None, 0
    for row in fill_rows(span.fills, bot.timeframe_ms):
        seq = seq + 1 if row["bar_ts"] == last_bar else 0
        last_bar = row["bar_ts"]
        trades.append(dict(bot_id=bot.bot_id, seq=seq, **row, created_at=created))
    final = span.state(n - 1)
    record = BlockRecord(
        bot_id=bot.bot_id,
        bar_ts=ts_list[-1],
        ts=ts_list,
        signals=signals,
        trades=trades,
        state=dict(
            bot_id=bot.bot_id,
            cash=float(final.cash),
            position=float(final.position),
            cursor_ts=ts_list[-1],
            state_json=final,
            updated_at=created,
        ),
        performance=dict(
            bot_id=signals["bot_id"],
            ts=ts_list,
            equity=equity,
            cash=cash,
            position=position,
            price=closes,
        ),
        previous_ts=previous,
    )
    return PreparedBlock(record, final, per_bar, compact)
