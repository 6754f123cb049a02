"""A plain-Python reference of the execution model, written from the docstring of
:mod:`research.kernels.execution` (not from its code): no Numba, no state vector, one object
per account, readable rather than fast.

It is the oracle for what vectorbt and backtesting.py cannot model the same way (stop fill
prices, the stay-flat-after-a-stop rule, daily loss limit with its UTC-midnight reset, the
drawdown kill switch, fractional target levels). ``simulate`` returns the fills as dicts and
the per-bar cash, position and equity lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DAY_MS = 86_400_000


@dataclass
class Fill:
    bar: int
    side: int  # +1 buy, -1 sell
    size: float
    price: float
    fee: float
    reason: str
    realized_pnl: float
    at_open: bool
    cash_after: float
    position_after: float


@dataclass
class ReferenceAccount:
    cash: float
    fee_rate: float = 0.0
    slippage_bps: float = 0.0
    stop_loss: float = math.nan
    take_profit: float = math.nan
    trailing_stop: float = math.nan
    max_position: float = 1.0
    daily_loss_limit: float = math.nan
    max_drawdown: float = math.nan
    position: float = 0.0
    entry_price: float = math.nan
    extreme: float = math.nan
    pending: tuple | None = None  # (level, reason)
    ordered: float = 0.0
    stopped: float | None = None
    day: int | None = None
    equity: float = field(default=math.nan)
    day_start_equity: float = math.nan
    peak: float = math.nan
    halt: str | None = None  # None, "daily_loss", "max_drawdown"
    fills: list = field(default_factory=list)

    def __post_init__(self):
        self.equity = self.cash
        self.day_start_equity = self.cash
        self.peak = self.cash

    # ---------------------------------------------------------------- fills
    def _slipped(self, mid: float, side: int) -> float:
        return mid * (1 + side * self.slippage_bps / 10_000)

    def _trade(self, bar, units, mid, reason, at_open):
        side = 1 if units > 0 else -1
        price = self._slipped(mid, side)
        fee = abs(units) * price * self.fee_rate
        pnl = -fee
        old = self.position
        new = old + units
        reducing = old != 0 and (old > 0) != (units > 0)
        if reducing:
            closed = min(abs(units), abs(old))
            pnl += (price - self.entry_price) * closed * (1 if old > 0 else -1)
            if abs(new) <= 1e-12 * max(abs(old), 1.0):
                new = 0.0
        if new == 0:
            self.entry_price = math.nan
            self.extreme = math.nan
        elif old == 0 or (old > 0) != (new > 0):
            self.entry_price = price
            self.extreme = mid
        elif abs(new) > abs(old):
            self.entry_price = (self.entry_price * abs(old) + price * abs(units)) / abs(new)
        self.cash -= units * price + fee
        self.position = new
        self.fills.append(
            Fill(bar, side, abs(units), price, fee, reason, pnl, at_open, self.cash, self.position)
        )

    def _go_to(self, bar, level, reason, mid):
        self.ordered = level
        if self.position != 0 and (level == 0 or (level > 0) != (self.position > 0)):
            self._trade(bar, -self.position, mid, reason, True)
        if level == 0:
            return
        # slippage of the side the fill will take: buy if the target at the plain open needs
        # more units than held, else sell
        wanted_at_mid = level * (self.cash + self.position * mid) / (mid * (1 + self.fee_rate))
        price = self._slipped(mid, 1 if wanted_at_mid > self.position else -1)
        equity = self.cash + self.position * price
        if equity <= 0:  # ruined: close what is left, open nothing
            if self.position != 0:
                self._trade(bar, -self.position, mid, reason, True)
            self.ordered = 0.0
            return
        units = level * equity / (price * (1 + self.fee_rate))
        if units - self.position != 0:
            self._trade(bar, units - self.position, mid, reason, True)

    def _protect(self, bar, o, h, l):
        if self.position == 0:
            return
        long = self.position > 0
        self.extreme = max(self.extreme, o) if long else min(self.extreme, o)
        sign = 1 if long else -1
        candidates = []  # (level, reason)
        if not math.isnan(self.stop_loss):
            candidates.append((self.entry_price * (1 - sign * self.stop_loss), "stop_loss"))
        if not math.isnan(self.trailing_stop):
            candidates.append((self.extreme * (1 - sign * self.trailing_stop), "trailing_stop"))
        stop = None
        for level, reason in candidates:  # the tighter stop: nearer to the price
            if stop is None or (long and level > stop[0]) or (not long and level < stop[0]):
                stop = (level, reason)
        take = None
        if not math.isnan(self.take_profit):
            take = self.entry_price * (1 + sign * self.take_profit)

        def beyond_stop(price):
            return stop is not None and (price <= stop[0] if long else price >= stop[0])

        def beyond_take(price):
            return take is not None and (price >= take if long else price <= take)

        worst_intrabar = l if long else h
        best_intrabar = h if long else l
        if beyond_stop(o):
            exit_ = (o, stop[1])
        elif beyond_take(o):
            exit_ = (o, "take_profit")
        elif beyond_stop(worst_intrabar):
            exit_ = (stop[0], stop[1])
        elif beyond_take(best_intrabar):
            exit_ = (take, "take_profit")
        else:
            return
        self.stopped = self.ordered
        self.ordered = 0.0
        self._trade(bar, -self.position, exit_[0], exit_[1], exit_[0] == o)

    # ---------------------------------------------------------------- one bar
    def step(self, bar, ts, o, h, l, c, target):
        day = (ts - 1) // DAY_MS
        if day != self.day:
            self.day = day
            self.day_start_equity = self.equity
            if self.halt == "daily_loss":
                self.halt = None
        if self.pending is not None:
            level, reason = self.pending
            self.pending = None
            self._go_to(bar, level, reason, o)
        self._protect(bar, o, h, l)
        self.equity = self.cash + self.position * c
        self.peak = max(self.peak, self.equity)
        if self.position > 0:
            self.extreme = max(self.extreme, h)
        elif self.position < 0:
            self.extreme = min(self.extreme, l)
        new_halt = None
        if self.halt != "max_drawdown" and not math.isnan(self.max_drawdown):
            if self.equity <= self.peak * (1 - self.max_drawdown):
                self.halt = new_halt = "max_drawdown"
        if self.halt is None and not math.isnan(self.daily_loss_limit):
            if self.equity <= self.day_start_equity * (1 - self.daily_loss_limit):
                self.halt = new_halt = "daily_loss"
        level = (
            0.0 if math.isnan(target) else min(max(target, -self.max_position), self.max_position)
        )
        if self.stopped is not None:
            if level == self.stopped:
                level = 0.0
            else:
                self.stopped = None
        reason = "signal"
        if self.halt is not None:
            level = 0.0
            reason = new_halt or self.halt
        if level != self.ordered:
            self.pending = (level, reason)


def simulate(ts, open_, high, low, close, target, *, cash=10_000.0, **settings):
    """Run the reference account over the bars; return (fills, cash, position, equity) lists."""
    account = ReferenceAccount(cash=cash, **settings)
    cash_series, position_series, equity_series = [], [], []
    for i in range(len(ts)):
        account.step(
            i,
            int(ts[i]),
            float(open_[i]),
            float(high[i]),
            float(low[i]),
            float(close[i]),
            float(target[i]),
        )
        cash_series.append(account.cash)
        position_series.append(account.position)
        equity_series.append(account.cash + account.position * float(close[i]))
    return account.fills, cash_series, position_series, equity_series


def synthetic_bars(
    n: int,
    seed: int,
    *,
    timeframe_ms: int = 3_600_000,
    volatility: float = 0.02,
    gap: float = 0.01,
    start_ts: int = 1_600_000_000_000,
):
    """Valid random-walk OHLC bars with gaps between bars (for property tests).

    Returns ``(ts, open, high, low, close)`` numpy arrays; ``ts`` are close times starting at
    ``start_ts`` (an exact multiple of ``timeframe_ms`` so UTC days roll over during the run).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    ts = start_ts - start_ts % timeframe_ms + timeframe_ms * np.arange(1, n + 1, dtype=np.int64)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, volatility, n)))
    previous = np.concatenate([[100.0], close[:-1]])
    open_ = previous * np.exp(rng.normal(0.0, gap, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, volatility, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, volatility, n)))
    return ts, open_, high, low, close


def random_targets(
    n: int,
    seed: int,
    levels=(-1.0, -0.5, 0.0, 0.5, 1.0, float("nan")),
    change_probability: float = 0.15,
):
    """Piecewise-constant random target levels (strategies hold a level for a while)."""
    import numpy as np

    rng = np.random.default_rng(seed + 7919)
    values = np.empty(n)
    current = 0.0
    for i in range(n):
        if rng.random() < change_probability:
            current = float(levels[rng.integers(len(levels))])
        values[i] = current
    return values
