"""A plain-Python reference of the book's execution model, written from the docstring of
:mod:`research.kernels.portfolio` (not from its code): no Numba, no state arrays, one object per
market, readable rather than fast.

It is the oracle for what vectorbt cannot model the same way: slippage marked on the side of
each fill, flips, stops, risk limits, the minimum order value, drift and calendar rebalancing,
absent markets with pending orders. ``simulate_book`` returns the fills as dicts (with the
market's column) and the per-bar cash, positions and equity lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DAY_MS = 86_400_000
TOLERANCE = 1e-9


@dataclass
class Leg:
    position: float = 0.0
    entry_price: float = math.nan
    extreme: float = math.nan
    pending: tuple | None = None  # (weight, reason)
    ordered: float = 0.0
    stopped: float | None = None
    last_close: float = math.nan


@dataclass
class ReferenceBook:
    cash: float
    n_markets: int
    fee_rate: float = 0.0
    slippage_bps: float = 0.0
    stop_loss: float = math.nan
    take_profit: float = math.nan
    trailing_stop: float = math.nan
    max_weight: float = 1.0
    max_gross: float = 1.0
    daily_loss_limit: float = math.nan
    max_drawdown: float = math.nan
    min_notional: float = 0.0
    every: int = 0
    period: int = 0
    offset: int = 0
    drift: float = math.nan
    legs: list = field(default_factory=list)
    fills: list = field(default_factory=list)
    day: int | None = None
    equity: float = math.nan
    day_start_equity: float = math.nan
    peak: float = math.nan
    halt: str | None = None
    bars: int = 0
    last_ts: int = -1

    def __post_init__(self):
        self.legs = [Leg() for _ in range(self.n_markets)]
        self.equity = self.day_start_equity = self.peak = self.cash

    # ---------------------------------------------------------------- fills
    def _slipped(self, mid, side):
        return mid * (1 + side * self.slippage_bps / 10_000)

    def _trade(self, bar, ts, j, units, mid, reason, at_open):
        leg = self.legs[j]
        side = 1 if units > 0 else -1
        price = self._slipped(mid, side)
        fee = abs(units) * price * self.fee_rate
        pnl = -fee
        old = leg.position
        new = old + units
        if old != 0 and (old > 0) != (units > 0):
            pnl += (price - leg.entry_price) * min(abs(units), abs(old)) * (1 if old > 0 else -1)
            if abs(new) <= 1e-12 * max(abs(old), 1.0):
                new = 0.0
        if new == 0:
            leg.entry_price = leg.extreme = math.nan
        elif old == 0 or (old > 0) != (new > 0):
            leg.entry_price, leg.extreme = price, mid
        elif abs(new) > abs(old):
            leg.entry_price = (leg.entry_price * abs(old) + price * abs(units)) / abs(new)
        self.cash -= units * price + fee
        leg.position = new
        self.fills.append(
            dict(
                bar=bar,
                bar_ts=ts,
                market=j,
                side=side,
                size=abs(units),
                price=price,
                fee=fee,
                reason=reason,
                realized_pnl=pnl,
                at_open=at_open,
                cash_after=self.cash,
                position_after=new,
            )
        )

    def _value(self, marks):
        """Cash plus every position at its mark, added up in column order."""
        value = self.cash
        for leg, mark in zip(self.legs, marks, strict=False):
            if leg.position != 0:
                value += leg.position * mark
        return value

    # ---------------------------------------------------------------- the open
    def _rebalance(self, bar, ts, opens):
        present = [j for j in range(self.n_markets) if not math.isnan(opens[j])]
        todo = {j: self.legs[j].pending for j in present if self.legs[j].pending is not None}
        if not todo:
            return
        for j in present:
            self.legs[j].pending = None
        # flips close first
        for j, (weight, reason) in todo.items():
            leg = self.legs[j]
            if leg.position != 0 and weight != 0 and (weight > 0) != (leg.position > 0):
                self._trade(bar, ts, j, -leg.position, opens[j], reason, True)
        marks = [
            opens[j] if not math.isnan(opens[j]) else self.legs[j].last_close
            for j in range(self.n_markets)
        ]
        equity_mid = self._value(marks)
        sizing = any(weight != 0 for weight, _ in todo.values())
        equity = equity_mid
        if sizing:  # each pending market is marked at its open slipped towards its fill
            for j, (weight, _) in todo.items():
                wanted = weight * equity_mid / (opens[j] * (1 + self.fee_rate))
                marks[j] = self._slipped(opens[j], 1 if wanted > self.legs[j].position else -1)
            equity = self._value(marks)
        ruined = sizing and equity <= 0
        if ruined:
            for j in present:
                todo.setdefault(j, (0.0, "signal"))
        orders = []
        for j, (weight, reason) in todo.items():
            leg = self.legs[j]
            if ruined or weight == 0:
                units, value = -leg.position, -leg.position * marks[j]
            else:
                units = weight * equity / (marks[j] * (1 + self.fee_rate)) - leg.position
                value = weight / (1 + self.fee_rate) * equity - leg.position * marks[j]
            if units != 0 and (weight == 0 or ruined or abs(units) > 1e-12 * abs(leg.position)):
                orders.append((value, j, units, reason))
        orders.sort(key=lambda order: (order[0], order[1]))  # sells first; ties by column
        for _, j, units, reason in orders:
            leg = self.legs[j]
            closing = units == -leg.position
            if units > 0 and leg.position >= 0:
                price = self._slipped(opens[j], 1)
                cost = units * price * (1 + self.fee_rate)
                if cost > self.cash and cost - self.cash > max(
                    TOLERANCE * max(abs(cost), abs(self.cash)), 1e-12
                ):
                    if self.cash <= max(TOLERANCE * cost, 1e-12):
                        continue
                    units = self.cash / (1 + self.fee_rate) / price
            if self.min_notional > 0 and not closing:
                price = self._slipped(opens[j], 1 if units > 0 else -1)
                if abs(units) * price < self.min_notional:
                    continue
            self._trade(bar, ts, j, units, opens[j], reason, True)
        for j, (weight, _) in todo.items():
            self.legs[j].ordered = 0.0 if ruined else weight

    # ---------------------------------------------------------------- stops
    def _protect(self, bar, ts, j, o, h, low):
        leg = self.legs[j]
        if leg.position == 0:
            return
        long = leg.position > 0
        sign = 1 if long else -1
        leg.extreme = max(leg.extreme, o) if long else min(leg.extreme, o)
        stops = []
        if not math.isnan(self.stop_loss):
            stops.append((leg.entry_price * (1 - sign * self.stop_loss), "stop_loss"))
        if not math.isnan(self.trailing_stop):
            stops.append((leg.extreme * (1 - sign * self.trailing_stop), "trailing_stop"))
        stop = None
        for level, reason in stops:
            if stop is None or (long and level > stop[0]) or (not long and level < stop[0]):
                stop = (level, reason)
        take = (
            leg.entry_price * (1 + sign * self.take_profit)
            if not math.isnan(self.take_profit)
            else None
        )

        def past_stop(price):
            return stop is not None and (price <= stop[0] if long else price >= stop[0])

        def past_take(price):
            return take is not None and (price >= take if long else price <= take)

        if past_stop(o):
            exit_ = (o, stop[1])
        elif past_take(o):
            exit_ = (o, "take_profit")
        elif past_stop(low if long else h):
            exit_ = stop
        elif past_take(h if long else low):
            exit_ = (take, "take_profit")
        else:
            return
        leg.stopped, leg.ordered = leg.ordered, 0.0
        self._trade(bar, ts, j, -leg.position, exit_[0], exit_[1], exit_[0] == o)

    # ---------------------------------------------------------------- one grid bar
    def step(self, ts, opens, highs, lows, closes, weights):
        bar = self.bars
        day = (ts - 1) // DAY_MS
        if day != self.day:
            self.day, self.day_start_equity = day, self.equity
            if self.halt == "daily_loss":
                self.halt = None
        self._rebalance(bar, ts, opens)
        for j in range(self.n_markets):
            if not math.isnan(opens[j]):
                self._protect(bar, ts, j, opens[j], highs[j], lows[j])
        for j, leg in enumerate(self.legs):
            if not math.isnan(closes[j]):
                leg.last_close = closes[j]
                if leg.position > 0:
                    leg.extreme = max(leg.extreme, highs[j])
                elif leg.position < 0:
                    leg.extreme = min(leg.extreme, lows[j])
        self.equity = self._value([leg.last_close for leg in self.legs])
        self.peak = max(self.peak, self.equity)
        new_halt = None
        if self.halt != "max_drawdown" and not math.isnan(self.max_drawdown):
            if self.equity <= self.peak * (1 - self.max_drawdown):
                self.halt = new_halt = "max_drawdown"
        if self.halt is None and not math.isnan(self.daily_loss_limit):
            if self.equity <= self.day_start_equity * (1 - self.daily_loss_limit):
                self.halt = new_halt = "daily_loss"
        self._decide(ts, weights, new_halt)
        self.bars += 1
        self.last_ts = ts

    def _decide(self, ts, weights, new_halt):
        levels = [
            0.0 if math.isnan(w) else min(max(w, -self.max_weight), self.max_weight)
            for w in weights
        ]
        gross = sum(abs(level) for level in levels)
        if gross > self.max_gross:
            levels = [level * (self.max_gross / gross) for level in levels]
        reason = "signal"
        if self.halt is not None:
            reason = new_halt or self.halt
        for j, leg in enumerate(self.legs):
            if leg.stopped is not None:
                if levels[j] == leg.stopped:
                    levels[j] = 0.0
                else:
                    leg.stopped = None
            if self.halt is not None:
                levels[j] = 0.0
        triggered = self.every or self.period or not math.isnan(self.drift)
        due = self.halt is not None
        if self.every and self.bars % self.every == 0:
            due = True
        period, offset = self.period, self.offset
        if period and (ts - offset) // period > (self.last_ts - offset) // period:
            due = True
        if not math.isnan(self.drift) and self.equity > 0:
            for j, leg in enumerate(self.legs):
                held = leg.position * leg.last_close / self.equity if leg.position else 0.0
                if abs(held - levels[j]) > self.drift:
                    due = True
        for j, leg in enumerate(self.legs):
            if due:
                leg.pending = (levels[j], reason)
            elif not triggered:
                leg.pending = (levels[j], reason) if levels[j] != leg.ordered else None


def simulate_book(ts, open_, high, low, close, weights, *, cash=10_000.0, **settings):
    """Run the reference book over the rows; return (fills, cash, positions, equity) lists."""
    book = ReferenceBook(cash=cash, n_markets=open_.shape[1], **settings)
    cash_series, positions, equity = [], [], []
    for i in range(len(ts)):
        book.step(
            int(ts[i]),
            *(list(map(float, array[i])) for array in (open_, high, low, close, weights)),
        )
        cash_series.append(book.cash)
        positions.append([leg.position for leg in book.legs])
        equity.append(book.equity)
    return book.fills, cash_series, positions, equity
