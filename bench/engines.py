"""The engine-vs-engine workloads, and one runner per engine for each.

A **workload** is a strategy with its parameters and costs: :class:`SmaCross` (a moving-average
cross, no stops) or :class:`BollingerTrail` (a Bollinger breakout held until the close falls
below the middle band, with a trailing stop). :func:`prepare` returns, for an engine and a
workload on some bars, a function of no arguments that runs the whole backtest from the
prices (the engine's own indicators, signals, simulation and the numbers it reports) and
returns an :class:`Outcome`: the closed trades and the final equity. The benchmarks time that
function, and :mod:`bench.gate` compares the outcomes of the very calls it timed.

Every engine is configured to Candela's convention: the target decided at bar ``t``'s close
is traded at bar ``t+1``'s open, long only, all equity in (the position plus the fee spends
the cash), a fee on the notional of every fill, no slippage. How each peer is brought to it,
and what cannot be matched, is written in docs/benchmarks.md and below.

**vectorbt** (``Portfolio.from_signals``): the signals are shifted one bar and filled at
``price=open``, ``size=inf``. For the trailing stop: ``sl_stop`` with ``sl_trail=True``,
``stop_entry_price="price"`` (the trail starts at the entry's open, not at the entry bar's
close, vectorbt's default), ``stop_exit_price="stopmarket"`` (the stop fills at its level,
or at the open if the open gapped through it, and pays slippage like Candela's protective
fills), ``upon_stop_exit="close"``. Three differences remain in vectorbt's own stop loop:

1. vectorbt trails from the highs of the bars *after* the entry bar, checked before the
   current bar's high is added; Candela's extreme also holds the entry bar's high and the
   current open. An ``adjust_sl_func_nb`` (:func:`candela_trail_nb`) gives vectorbt the same
   level at every bar, as a fraction of vectorbt's own trailing price; it cannot when the
   level lies *above* that price (the entry bar rose more than the trail): the stop is then
   left at vectorbt's price, and the bars where the low reaches Candela's level (where the
   two could exit differently) are counted in ``Outcome.unmatched``.
2. vectorbt checks a stop before the bar's signals, across the whole bar; Candela fills a
   signal exit at the open first, and then has no position left to stop. The adjustment
   disables the stop on a bar whose open carries an exit signal.
3. vectorbt does not check stops on the entry bar (the position is opened by that bar's
   order); Candela does. This cannot be adjusted: a workload must use a trail that no entry
   bar reaches, and the agreement gate shows it when one does.

After a stop, Candela stays flat until the target changes; vectorbt would re-enter on the
next entry signal, so its entries and exits are the cleaned crossings of the level
(``signals.clean``), which is what the level's changes are.

**raptorbt** (``run_single_backtest``, ``fill_timing="next_bar_open"``, ``weight=1``,
``set_trailing_stop``): sizes all-in net of the fee, trails from the entry's open and every
completed bar's high, checks the stop from the entry bar on and fills a gap at the open, as
Candela does; after a stop it does not re-enter before the exit signal (observed, and checked
by the tests). It takes the raw entry and exit conditions and its own indicators. One
difference remains: its trailing extreme leaves out the current bar's open, so a bar that
opens above every high since the entry and falls to Candela's level within the bar stops
Candela out a bar earlier. It cannot happen on the synthetic series (each bar opens at the
previous close, at most the previous high); on real data the gate shows it.

**backtesting.py** (SMA cross only): ``FractionalBacktest`` with ``trade_on_close=False``
(market orders fill at the next open), ``commission=fee``, ``exclusive_orders=True``,
``finalize_trades=False``; it sizes in whole units, so the unit is made tiny
(``cash / (max price * 1e12)``) and ``buy(size=1 - 1e-15)`` stands for all equity: rounding
then costs < 1e-12 of equity per trade. Its stop orders fill by other same-bar rules than
Candela's (tests/research/test_oracles.py), so it does not run the stop workload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

CASH = 10_000.0
# 1 bp per fill: at 0.1 % the ~14,000 round trips of these workloads on 1M bars ruin the
# account (equity ~1e-8 of the start), after which vectorbt refuses orders while Candela
# keeps trading a dust balance; the engines would then not do the same work
FEE = 0.0001
ENGINES = ("candela", "vectorbt", "raptorbt", "backtesting")
PACKAGES = {"vectorbt": "vectorbt", "raptorbt": "raptorbt", "backtesting": "backtesting"}


class Outcome(NamedTuple):
    """What an engine's run is compared by.

    Attributes
    ----------
    trades : int
        Closed round trips (flat to flat; an open position at the end is not counted).
    final_equity : float
        Cash plus the position marked at the last close.
    unmatched : int
        Bars at which the engine could not be given Candela's convention (see the module
        docstring); 0 for Candela and for a matched peer.
    """

    trades: int
    final_equity: float
    unmatched: int = 0


@dataclass(frozen=True)
class SmaCross:
    """Long while the ``fast``-bar simple moving average of closes is above the ``slow`` one."""

    fast: int = 10
    slow: int = 50
    fee: float = FEE
    cash: float = CASH
    name: str = "SMA cross"

    def describe(self) -> str:
        return f"SMA cross {self.fast}/{self.slow}, long only, fee {self.fee:.2%}"


@dataclass(frozen=True)
class BollingerTrail:
    """Long from a close above the upper Bollinger band (``window`` closes, ``num_std``
    population standard deviations) until a close below the middle band, with a trailing
    stop ``trailing_stop`` below the highest price since the entry."""

    window: int = 20
    num_std: float = 2.0
    trailing_stop: float = 0.005
    fee: float = FEE
    cash: float = CASH
    name: str = "Bollinger breakout + trailing stop"

    def describe(self) -> str:
        return (
            f"Bollinger breakout {self.window}/{self.num_std:g} held to the middle band, "
            f"trailing stop {self.trailing_stop:.2%}, long only, fee {self.fee:.2%}"
        )


Workload = SmaCross | BollingerTrail


def prepare(engine: str, workload: Workload, bars, conditions=None) -> Callable[[], Outcome]:
    """The run of ``workload`` on ``bars`` by ``engine`` (one of :data:`ENGINES`), as a
    function of no arguments returning its :class:`Outcome`.

    ``conditions`` (vectorbt and raptorbt only), from :func:`candela_conditions`, replaces
    the engine's own indicators with Candela's: the tests use it on real data, where flat
    prices put a close exactly on a moving average, which the engines' rolling sums round to
    either side (an indicator difference, not an execution one). The benchmarks leave it out.

    Raises
    ------
    ValueError
        For an unknown engine.
    NotImplementedError
        For backtesting.py and a workload with stops (see the module docstring).
    ImportError
        When the engine's package is not installed.
    """
    if engine == "candela":
        return _candela(workload, bars)
    if engine == "vectorbt":
        return _vectorbt(workload, bars, conditions)
    if engine == "raptorbt":
        return _raptorbt(workload, bars, conditions)
    if engine == "backtesting":
        return _backtesting_py(workload, bars)
    raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")


def candela_conditions(workload: Workload, bars) -> tuple[np.ndarray, ...]:
    """The workload's conditions from Candela's indicators: ``(fast SMA > slow SMA,)`` for
    :class:`SmaCross`, ``(close > upper band, close < middle band)`` for
    :class:`BollingerTrail` (boolean arrays; ``nan`` compares False)."""
    from research.indicators import bollinger, sma

    if isinstance(workload, SmaCross):
        return (sma(bars.close, workload.fast) > sma(bars.close, workload.slow),)
    bands = bollinger(bars.close, workload.window, workload.num_std)
    return bars.close > bands.upper, bars.close < bands.middle


def available(engine: str) -> bool:
    """Whether ``engine``'s package can be imported."""
    import importlib.util

    return engine == "candela" or importlib.util.find_spec(PACKAGES[engine]) is not None


# --------------------------------------------------------------------------- Candela


def bollinger_hold_spec():
    """The :class:`BollingerTrail` target as a Candela strategy (the stop is passed to
    ``research.backtest`` as ``stops``)."""
    from research.indicators import bollinger, event_position
    from research.strategy_model import strategy

    @strategy(long_only=True, name="bollinger_hold")
    def bollinger_hold(bars, window: int = 20, num_std: float = 2.0):
        """Long from a close above the upper band until a close below the middle band."""
        bands = bollinger(bars.close, window, num_std)
        # max_hold longer than any series: no time stop
        return event_position(
            bars.close > bands.upper, bars.close < bands.middle, max_hold=1_000_000_000
        )

    return bollinger_hold


def _candela(workload: Workload, bars) -> Callable[[], Outcome]:
    # each engine is imported where it runs: ``python -m bench`` imports every benchmark
    # module to list them, which should not load three backtesting libraries
    from research.backtesting import backtest
    from research.types import Costs, Stops
    from strategies.registry import get_strategy

    costs = Costs(fee_rate=workload.fee, slippage_bps=0.0)
    if isinstance(workload, SmaCross):
        spec, params, stops = (
            get_strategy("sma_cross"),
            {"fast": workload.fast, "slow": workload.slow},
            Stops(),
        )
    else:
        spec = bollinger_hold_spec()
        params = {"window": workload.window, "num_std": workload.num_std}
        stops = Stops(trailing_stop=workload.trailing_stop)

    def run() -> Outcome:
        result = backtest(spec, bars, params, costs, stops=stops, initial_cash=workload.cash)
        return Outcome(int(result.stats["trade_count"]), float(result.stats["final_equity"]))

    return run


# --------------------------------------------------------------------------- vectorbt


def candela_trail_nb(c, open_, high, low, exit_now, trail, unmatched):
    """vectorbt ``adjust_sl_func_nb``: the stop fraction that puts vectorbt's trailing stop at
    Candela's level (see the module docstring, points 1 and 2).

    ``c.curr_price`` is vectorbt's trailing price: the entry price and the highs of the bars
    after the entry bar before this one. Candela's extreme adds the entry bar's high and this
    bar's open; its level is ``extreme * (1 - trail)``, returned as ``1 - level /
    c.curr_price``. A level above ``c.curr_price`` cannot be expressed (vectorbt refuses a
    negative stop): the stop is then set at ``c.curr_price``, and if the bar's low reaches
    Candela's level (where the two could exit differently) ``unmatched[0]`` counts the bar.
    On a bar whose open carries an exit signal the stop is disabled (``nan``).
    """
    if c.position_now <= 0.0 or c.init_i < 0:
        return c.curr_stop, c.curr_trail
    if exit_now[c.i]:
        return np.nan, False
    extreme = max(c.curr_price, high[c.init_i], open_[c.i])
    level = extreme * (1.0 - trail)
    fraction = 1.0 - level / c.curr_price
    if fraction < 0.0:
        if low[c.i] <= level:
            unmatched[0] += 1
        fraction = 0.0
    return fraction, True


_candela_trail_nb = None


def _trail_function():
    """:func:`candela_trail_nb` compiled with Numba (once per process)."""
    global _candela_trail_nb
    if _candela_trail_nb is None:
        from numba import njit

        _candela_trail_nb = njit(cache=True)(candela_trail_nb)
    return _candela_trail_nb


def _vectorbt(workload: Workload, bars, conditions=None) -> Callable[[], Outcome]:
    import pandas as pd
    import vectorbt as vbt

    # tz-naive UTC index: vectorbt converts a tz-aware index to an object array of Timestamps
    # on every call (seconds per million bars), which would not be a fair comparison
    index = pd.to_datetime(bars.ts, unit="ms")
    close = pd.Series(bars.close, index=index)
    open_ = pd.Series(bars.open, index=index)
    common = dict(price=open_, fees=workload.fee, size=np.inf, init_cash=workload.cash)

    if isinstance(workload, SmaCross):

        def run() -> Outcome:
            if conditions is None:
                fast = vbt.MA.run(close, workload.fast).ma
                slow = vbt.MA.run(close, workload.slow).ma
                level = fast > slow  # nan (warm-up) compares False: flat, as in Candela
            else:
                level = pd.Series(conditions[0], index=index)
            entries = level.shift(1, fill_value=False)  # decided at t's close, filled at t+1
            exits = (~level).shift(1, fill_value=False)
            portfolio = vbt.Portfolio.from_signals(close, entries, exits, **common, freq="1min")
            return Outcome(int(portfolio.trades.closed.count()), float(portfolio.final_value()))

        return run

    high = pd.Series(bars.high, index=index)
    low = pd.Series(bars.low, index=index)
    adjust = _trail_function()

    def run() -> Outcome:
        if conditions is None:
            bands = vbt.BBANDS.run(close, window=workload.window, alpha=workload.num_std)
            above, below = close > bands.upper, close < bands.middle
        else:
            above, below = (pd.Series(c, index=index) for c in conditions)
        entries, exits = above.vbt.signals.clean(below)
        entries = entries.shift(1, fill_value=False)
        exits = exits.shift(1, fill_value=False)
        unmatched = np.zeros(1, dtype=np.int64)
        portfolio = vbt.Portfolio.from_signals(
            close,
            entries,
            exits,
            open=open_,
            high=high,
            low=low,
            **common,
            sl_stop=workload.trailing_stop,
            sl_trail=True,
            stop_entry_price="price",
            stop_exit_price="stopmarket",
            upon_stop_exit="close",
            adjust_sl_func_nb=adjust,
            adjust_sl_args=(
                bars.open,
                bars.high,
                bars.low,
                exits.to_numpy(),
                workload.trailing_stop,
                unmatched,
            ),
            freq="1min",
        )
        return Outcome(
            int(portfolio.trades.closed.count()), float(portfolio.final_value()), int(unmatched[0])
        )

    return run


# --------------------------------------------------------------------------- raptorbt


def _raptorbt(workload: Workload, bars, conditions=None) -> Callable[[], Outcome]:
    import raptorbt

    timestamps = bars.ts * 1_000_000  # ns
    prices = dict(
        open=bars.open, high=bars.high, low=bars.low, close=bars.close, volume=bars.volume
    )

    def config():
        made = raptorbt.BacktestConfig(
            initial_capital=workload.cash,
            fees=workload.fee,
            slippage=0.0,
            fill_timing="next_bar_open",
        )
        if isinstance(workload, BollingerTrail):
            made.set_trailing_stop(workload.trailing_stop)
        return made

    def signals():
        if isinstance(workload, SmaCross):
            if conditions is None:
                level = raptorbt.sma(bars.close, workload.fast) > raptorbt.sma(
                    bars.close, workload.slow
                )
            else:
                (level,) = conditions
            before = np.concatenate(([False], level[:-1]))
            return level & ~before, before & ~level  # the level's changes
        if conditions is not None:
            return conditions
        upper, middle, _lower = raptorbt.bollinger_bands(
            bars.close, workload.window, workload.num_std
        )
        return bars.close > upper, bars.close < middle

    def run() -> Outcome:
        entries, exits = signals()
        result = raptorbt.run_single_backtest(
            timestamps=timestamps,
            **prices,
            entries=entries,
            exits=exits,
            direction=1,
            weight=1.0,
            symbol="BENCH",
            config=config(),
        )
        return Outcome(int(result.metrics.total_closed_trades), float(result.metrics.end_value))

    return run


# --------------------------------------------------------------------------- backtesting.py


def _backtesting_py(workload: Workload, bars) -> Callable[[], Outcome]:
    import warnings

    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    if not isinstance(workload, SmaCross):
        raise NotImplementedError("backtesting.py's stop orders cannot be matched to Candela's")
    frame = pd.DataFrame(
        {
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        },
        index=pd.to_datetime(bars.ts, unit="ms"),
    )
    unit = workload.cash / (float(bars.high.max()) * 1e12)

    class SmaCrossStrategy(Strategy):
        # plain arrays, not ``self.I``: backtesting.py first calls ``next`` one bar after its
        # indicators' warm-up, a bar after Candela's first decision
        def init(self):
            close = pd.Series(self.data.Close)
            self.fast = close.rolling(workload.fast).mean().to_numpy()
            self.slow = close.rolling(workload.slow).mean().to_numpy()

        def next(self):
            t = len(self.data) - 1
            if self.fast[t] > self.slow[t]:  # nan compares False: flat, as in Candela
                if not self.position:
                    self.buy(size=1 - 1e-15)
            elif self.position:
                self.position.close()

    def run() -> Outcome:
        engine = FractionalBacktest(
            frame,
            SmaCrossStrategy,
            cash=workload.cash,
            commission=workload.fee,
            trade_on_close=False,
            exclusive_orders=True,
            fractional_unit=unit,
            finalize_trades=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = engine.run()
        return Outcome(int(stats["# Trades"]), float(stats["Equity Final [$]"]))

    return run
