"""Oracle agreement on real market data: Candela vs vectorbt vs backtesting.py vs a plain loop.

Every shipped strategy (and a numpy SMA cross defined here) runs on several real symbols and
timeframes shipped with the repository (``market_files``), without stops, and must give the
same trades and the same final equity (within 1e-9 relative) as:

* **vectorbt** ``Portfolio.from_signals``, configured to Candela's convention: the target
  decided at bar ``t``'s close becomes a signal on bar ``t+1`` (signals shifted one bar),
  ``price=open``, ``fees=fee_rate``, ``slippage=slippage_bps / 1e4``, ``size=np.inf``,
  ``upon_opposite_entry="reverse"``, ``direction`` long-only or both. vectorbt's one-order
  reversal sizes the new position from the cash left after closing, with fees, exactly like
  Candela's close-then-open; its positions (flat to flat) are Candela's trades. Its
  ``Portfolio.stats()`` is also compared with :func:`research.metrics.compute_stats` where the
  definitions coincide (see ``test_stats_agree_with_vectorbt``), with vectorbt's year set to
  Candela's ``bars_per_year`` bars (vectorbt annualises by bar count, Candela by calendar time).
* **backtesting.py** with ``trade_on_close=False`` (market orders fill at the next open),
  ``commission=fee_rate``, ``exclusive_orders=True`` and ``FractionalBacktest``.

Convention differences that cannot be matched exactly, and what is done about them:

* backtesting.py sizes relative orders in **whole units**: ``floor(margin * size /
  (price * (1 + commission)))`` with ``size < 1``. ``FractionalBacktest`` makes the unit tiny:
  here ``fractional_unit = cash / (max price * 1e12)``, so rounding costs < 1e-12 of equity per
  trade, and ``size = 1 - 1e-15`` stands for "all equity". That keeps the final equity within
  1e-9; the sizes are equal to ~1e-12.
* backtesting.py's ``spread`` is paid once, on the entry price (exits fill at the raw open),
  while Candela's slippage is paid on every fill; so backtesting.py runs without slippage.
* backtesting.py leaves the last open trade out of its trade list
  (``finalize_trades=False``); Candela lists it with ``exit_reason="open"`` and no exit time.
  vectorbt lists it as an open position.
* backtesting.py labels a trade with the bar of the fill; vectorbt likewise. Candela's
  ``entry_time`` is the fill's own time, the **open** of that bar (``bar close - timeframe``),
  so the comparisons use the fills' ``bar_ts``.
* Stops: backtesting.py's SL/TP orders fill at the stop price or the bar's open with its own
  same-bar rules, and vectorbt's ``sl_stop``/``tsl_stop`` trail from the bar's close or high
  differently; neither matches "stop level from the slipped entry price, trailing extreme over
  completed bars and the current open, worse case first". Stops, the stay-flat-after-a-stop
  rule and the risk limits are therefore checked against ``reference.py``, a plain-Python loop
  written from the execution docstring, on the same real data.
* Ruin: once equity is at or below zero Candela closes and opens nothing more; vectorbt
  cannot cover such a short and keeps it. The data sets here are chosen without multi-month
  holes (``coinbase_BTC-USD_1m`` jumps 11 months, enough for a short to lose everything).
* Statistics: vectorbt's *Max Drawdown Duration* is the length of the deepest drawdown (peak
  to recovery); Candela's ``max_drawdown_duration_ms`` is the longest time under water of any
  drawdown. vectorbt's *Total Trades* counts the open position; ``trade_count`` does not.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from market_files import market_file, read_ohlcv_csv
from reference import simulate

from research.backtesting import backtest
from research.kernels import records as rc
from research.strategy_model import StrategySpec, strategy
from research.types import Bars, Costs, RiskLimits, Stops

pytestmark = pytest.mark.slow

DATASETS = [
    "binance_BTC-USDT_1h",
    "binance_ETH-USDT_4h",
    "bittrex_ADA-BTC_5m",
    "bittrex_ETH-BTC_1m",
]
INITIAL_CASH = 10_000.0


# ----------------------------------------------------------------------------- a local strategy


def _sma(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    cumulative = np.cumsum(values)
    out[window - 1 :] = cumulative[window - 1 :] - np.concatenate([[0.0], cumulative[:-window]])
    return out / window


@strategy(name="local_sma_long_short", lookback=lambda p: p.slow, history=lambda p: p.slow + 1)
def LOCAL_SMA(bars, fast: int = 10, slow: int = 30):
    """Plain numpy (running sums), its look-back declared."""
    fast_sma, slow_sma = _sma(np.asarray(bars.close), fast), _sma(np.asarray(bars.close), slow)
    return np.where(fast_sma > slow_sma, 1.0, -1.0)


def strategies_under_test() -> dict[str, StrategySpec]:
    from strategies.registry import all_specs

    specs = dict(all_specs())
    specs[LOCAL_SMA.name] = LOCAL_SMA
    return specs


STRATEGY_NAMES = [
    "bollinger_breakout",
    "donchian_breakout",
    "ema_cross",
    "macd_rsi",
    "rsi_reversion",
    "sma_cross",
    LOCAL_SMA.name,
]


# ----------------------------------------------------------------------------- data


@functools.cache
def load(path: str) -> Bars:
    return read_ohlcv_csv(path)


@pytest.fixture(params=DATASETS)
def bars(request) -> Bars:
    return load(str(market_file(f"ohlcv/{request.param}.csv.gz")))


@pytest.fixture(scope="module")
def vbt():
    import vectorbt  # a dev dependency: a missing oracle must fail, not skip

    return vectorbt


def run_ours(spec, bars, costs, **kwargs):
    result = backtest(spec, bars, costs=costs, stops=Stops(), initial_cash=INITIAL_CASH, **kwargs)
    assert result.status == rc.STATUS_OK
    levels = set(np.unique(np.nan_to_num(result.target)))
    assert levels <= {-1.0, 0.0, 1.0}, f"{spec.name}: signal oracles need levels -1/0/1"
    return result


def index_of(bars: Bars) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(bars.ts, unit="ms", utc=True))


def vectorbt_portfolio(vbt, spec, bars, level, costs):
    index = index_of(bars)
    signal = pd.Series(np.concatenate([[0.0], level[:-1]]), index=index)  # fills next open
    common = dict(
        price=pd.Series(bars.open, index=index),
        fees=costs.fee_rate,
        slippage=costs.slippage_bps / 1e4,
        size=np.inf,
        init_cash=INITIAL_CASH,
        freq=pd.Timedelta(milliseconds=bars.timeframe_ms),
    )
    close = pd.Series(bars.close, index=index)
    if spec.long_only:
        return vbt.Portfolio.from_signals(
            close, entries=signal > 0, exits=signal <= 0, direction="longonly", **common
        )
    return vbt.Portfolio.from_signals(
        close,
        entries=signal > 0,
        exits=signal == 0,
        short_entries=signal < 0,
        short_exits=signal == 0,
        upon_opposite_entry="reverse",
        **common,
    )


def entry_exit_bars(result) -> tuple[np.ndarray, np.ndarray]:
    """Close times (ms) of the bars in which each trade was entered / exited (-1 if open).

    Without stops every fill is at a bar's open, so the bar closes one timeframe later."""
    tf = result.timeframe_ms
    entries = as_ms(result.trades["entry_time"]) + tf
    exit_time = result.trades["exit_time"]
    exits = np.full(len(exit_time), -1, dtype=np.int64)
    done = exit_time.notna().to_numpy()
    exits[done] = as_ms(exit_time[done]) + tf
    return entries, exits


def as_ms(values) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ms").asi8


# ----------------------------------------------------------------------------- vectorbt


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_trades_and_equity_agree_with_vectorbt(vbt, bars, name):
    spec = strategies_under_test()[name]
    costs = Costs(fee_rate=0.001, slippage_bps=5.0)
    ours = run_ours(spec, bars, costs)
    portfolio = vectorbt_portfolio(vbt, spec, bars, np.nan_to_num(ours.target), costs)
    positions = portfolio.positions.records_readable
    assert len(positions) == len(ours.trades)
    entries, exits = entry_exit_bars(ours)
    np.testing.assert_array_equal(as_ms(positions["Entry Timestamp"]), entries)
    closed = (positions["Status"] == "Closed").to_numpy()
    np.testing.assert_array_equal(as_ms(positions["Exit Timestamp"])[closed], exits[closed])
    assert (exits[~closed] == -1).all()
    np.testing.assert_array_equal(
        np.where(positions["Direction"] == "Long", "long", "short"), ours.trades["side"].to_numpy()
    )
    np.testing.assert_allclose(positions["Size"], ours.trades["size"], rtol=1e-9)
    np.testing.assert_allclose(positions["Avg Entry Price"], ours.trades["entry_price"], rtol=1e-12)
    np.testing.assert_allclose(
        positions["PnL"][closed], ours.trades["pnl"][closed], rtol=1e-7, atol=1e-9 * INITIAL_CASH
    )
    value = portfolio.value().to_numpy()
    assert ours.equity.iloc[-1] == pytest.approx(value[-1], rel=1e-9)
    np.testing.assert_allclose(ours.equity.to_numpy(), value, rtol=1e-9)


@pytest.mark.parametrize("name", ["sma_cross", "ema_cross", LOCAL_SMA.name])
def test_stats_agree_with_vectorbt(vbt, bars, name):
    spec = strategies_under_test()[name]
    costs = Costs(fee_rate=0.001)
    ours = run_ours(spec, bars, costs)
    portfolio = vectorbt_portfolio(vbt, spec, bars, np.nan_to_num(ours.target), costs)
    s = ours.stats
    # vectorbt annualises by bar count (factor ``year_freq / freq``); Candela by the bars the
    # data holds per calendar year (``bars_per_year``, research.metrics). A year of
    # ``bars_per_year`` bars makes the factors equal, and with them Sharpe, Sortino and the
    # CAGR under Calmar; on bars without gaps it is 365 days.
    year = pd.Timedelta(milliseconds=bars.timeframe_ms * s["bars_per_year"])
    theirs = portfolio.stats(settings=dict(year_freq=year))
    assert s["total_return"] * 100 == pytest.approx(theirs["Total Return [%]"], rel=1e-9)
    assert s["max_drawdown"] * 100 == pytest.approx(theirs["Max Drawdown [%]"], rel=1e-9)
    assert s["total_fees"] == pytest.approx(theirs["Total Fees Paid"], rel=1e-9)
    for ours_key, their_key in [
        ("sharpe", "Sharpe Ratio"),
        ("sortino", "Sortino Ratio"),
        ("calmar", "Calmar Ratio"),
    ]:
        assert s[ours_key] == pytest.approx(theirs[their_key], rel=1e-7), ours_key
    assert s["trade_count"] == theirs["Total Closed Trades"]
    if s["trade_count"]:
        assert s["win_rate"] * 100 == pytest.approx(theirs["Win Rate [%]"], rel=1e-12)
        assert s["expectancy"] == pytest.approx(theirs["Expectancy"], rel=1e-7)
        if math.isfinite(s["profit_factor"]):
            assert s["profit_factor"] == pytest.approx(theirs["Profit Factor"], rel=1e-7)
    # exposure: vectorbt's gross exposure is a value share; ours is the share of bars in a
    # position, which equals the share of bars where vectorbt's position is non-zero
    held = portfolio.assets().to_numpy() != 0
    assert s["exposure"] == pytest.approx(held.mean(), rel=1e-12)


# ----------------------------------------------------------------------------- backtesting.py


def backtesting_py_run(spec, bars, level, fee_rate):
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    class FollowTarget(Strategy):
        def init(self):
            pass

        def next(self):
            wanted = level[len(self.data) - 1]
            held = np.sign(self.position.size)
            if wanted == held:
                return
            if wanted == 0:
                self.position.close()
            elif wanted > 0:
                self.buy(size=1 - 1e-15)
            else:
                self.sell(size=1 - 1e-15)

    index = index_of(bars).tz_localize(None)
    data = pd.DataFrame(
        {
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        },
        index=index,
    )
    unit = INITIAL_CASH / (bars.high.max() * 1e12)
    engine = FractionalBacktest(
        data,
        FollowTarget,
        cash=INITIAL_CASH,
        commission=fee_rate,
        trade_on_close=False,
        exclusive_orders=True,
        fractional_unit=unit,
        finalize_trades=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.run()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_trades_and_equity_agree_with_backtesting_py(bars, name):
    spec = strategies_under_test()[name]
    costs = Costs(fee_rate=0.001, slippage_bps=0.0)
    ours = run_ours(spec, bars, costs)
    stats = backtesting_py_run(spec, bars, np.nan_to_num(ours.target), costs.fee_rate)
    theirs = stats["_trades"]
    closed = ours.trades[ours.trades["exit_reason"] != "open"]
    assert len(theirs) == len(closed)
    entries, exits = entry_exit_bars(ours)
    n = len(closed)
    np.testing.assert_array_equal(as_ms(theirs["EntryTime"].dt.tz_localize("UTC")), entries[:n])
    np.testing.assert_array_equal(as_ms(theirs["ExitTime"].dt.tz_localize("UTC")), exits[:n])
    np.testing.assert_array_equal(
        np.where(theirs["Size"] > 0, "long", "short"), closed["side"].to_numpy()
    )
    np.testing.assert_allclose(theirs["Size"].abs(), closed["size"], rtol=1e-9)
    np.testing.assert_allclose(theirs["PnL"], closed["pnl"], rtol=1e-6, atol=1e-9 * INITIAL_CASH)
    assert ours.equity.iloc[-1] == pytest.approx(stats["Equity Final [$]"], rel=1e-9)
    # the open trade at the end, if any, is the one backtesting.py leaves out
    assert len(ours.trades) - n == (1 if ours.position.iloc[-1] != 0 else 0)


# ----------------------------------------------------------------------------- reference loop

STOP_CASES = {
    "stops": dict(stops=Stops(0.03, 0.06, math.nan), risk=RiskLimits()),
    "trailing": dict(stops=Stops(math.nan, math.nan, 0.04), risk=RiskLimits(max_position=0.5)),
    "risk": dict(
        stops=Stops(0.05, math.nan, 0.08),
        risk=RiskLimits(max_position=1.0, daily_loss_limit=0.02, max_drawdown=0.15),
    ),
}


@pytest.mark.parametrize("case", sorted(STOP_CASES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_stops_and_risk_limits_agree_with_the_reference_loop(bars, name, case):
    spec = strategies_under_test()[name]
    costs = Costs(fee_rate=0.001, slippage_bps=5.0)
    stops, risk = STOP_CASES[case]["stops"], STOP_CASES[case]["risk"]
    ours = backtest(spec, bars, costs=costs, stops=stops, risk=risk, initial_cash=INITIAL_CASH)
    fills, _, positions, equity = simulate(
        bars.ts,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        ours.target,
        cash=INITIAL_CASH,
        fee_rate=costs.fee_rate,
        slippage_bps=costs.slippage_bps,
        stop_loss=stops.stop_loss,
        take_profit=stops.take_profit,
        trailing_stop=stops.trailing_stop,
        max_position=risk.max_position,
        daily_loss_limit=risk.daily_loss_limit,
        max_drawdown=risk.max_drawdown,
    )
    table = ours.fills
    assert len(table) == len(fills)
    assert list(table["reason"]) == [f.reason for f in fills]
    assert list(as_ms(table["bar_ts"])) == [int(bars.ts[f.bar]) for f in fills]
    np.testing.assert_allclose(table["price"], [f.price for f in fills], rtol=1e-12)
    np.testing.assert_allclose(table["size"], [f.size for f in fills], rtol=1e-9)
    np.testing.assert_allclose(ours.equity.to_numpy(), equity, rtol=1e-9)
