"""``research.backtest``: boundary validation and the contents of :class:`Result`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from reference import random_targets, simulate, synthetic_bars

import research
from research.backtesting import Result, backtest
from research.indicators import sma
from research.kernels import records as rc
from research.kernels.backtest import run_backtest
from research.kernels.trades import closed_trade_arrays_nb
from research.metrics import compute_stats
from research.strategy_model import strategy
from research.types import Bars, Costs, RiskLimits, Stops

HOUR = 3_600_000


def _sma(values, window):
    out = np.full(len(values), np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    out[window - 1 :] = (cumulative[window:] - cumulative[:-window]) / window
    return out


def _target(bars, p):
    """The strategy's rule, written independently (plain numpy, running sums)."""
    fast, slow = _sma(bars.close, p.fast), _sma(bars.close, p.slow)
    out = np.where(fast > slow, 1.0, -1.0)
    out[: p.slow - 1] = np.nan
    return out


@strategy(name="test_sma_long_short", constraints=["fast < slow"], stops=Stops(stop_loss=0.02))
def SPEC(bars, fast: int = 5, slow: int = 20):
    fast_sma, slow_sma = sma(bars.close, fast), sma(bars.close, slow)
    return np.where(fast_sma > slow_sma, 1.0, -1.0), {"price": {"fast": fast_sma, "slow": slow_sma}}


Params = SPEC.params


def levels_strategy(levels, name="levels"):
    """A strategy whose target is a given array (its first ``len(bars)`` values)."""

    @strategy(name=name, lookback=0, history=1)
    def given(bars, fast: int = 5, slow: int = 20):
        return levels[: len(bars)]

    return given


@pytest.fixture(scope="module")
def bars() -> Bars:
    ts, o, h, l, c = synthetic_bars(800, 5)
    return Bars.from_arrays(ts, o, h, l, c, np.ones(800), HOUR)


def spec_returning(value_factory, name="bad_target"):
    @strategy(name=name, lookback=0, history=1)
    def returning(bars, fast: int = 5, slow: int = 20):
        return value_factory(bars)

    return returning


# ----------------------------------------------------------------------------- validation


def test_lazy_entry_point_is_this_function():
    assert research.backtest is backtest and research.Result is Result


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda b: backtest("sma", b), TypeError, "@strategy"),
        (lambda b: backtest(SPEC, b.close), TypeError, "research.types.Bars"),
        (lambda b: backtest(SPEC, b, {"fsat": 3}), ValueError, "did you mean 'fast'"),
        (lambda b: backtest(SPEC, b, {"fast": 30}), ValueError, "constraint 'fast < slow'"),
        (lambda b: backtest(SPEC, b, {"fast": "x"}), ValueError, "must be int"),
        (lambda b: backtest(SPEC, b[:10]), ValueError, "needs at least 20 bars"),
        (lambda b: backtest(SPEC, b, costs=Costs(fee_rate=-0.01)), ValueError, "costs.fee_rate"),
        (lambda b: backtest(SPEC, b, costs=(0.001, 0)), TypeError, "Costs"),
        (lambda b: backtest(SPEC, b, stops=Stops(take_profit=-1.0)), ValueError, "take_profit"),
        (
            lambda b: backtest(SPEC, b, risk=RiskLimits(daily_loss_limit=3)),
            ValueError,
            "daily_loss_limit",
        ),
        (lambda b: backtest(SPEC, b, initial_cash=0), ValueError, "initial_cash"),
        (lambda b: backtest(SPEC, b, costs={"fee": 0.1}), ValueError, "fee_rate"),
        (lambda b: backtest(spec_returning(lambda x: list(x.close)), b), TypeError, "numpy array"),
        (
            lambda b: backtest(spec_returning(lambda x: x.close[1:]), b),
            ValueError,
            "one value per bar",
        ),
        (lambda b: backtest(SPEC, b, start="2030-01-01"), ValueError, "after the last bar"),
        (lambda b: backtest(SPEC, b, start=len(b)), ValueError, "outside the 800 bars"),
        (lambda b: backtest(SPEC, b, start=1.5), TypeError, "bar index"),
        (lambda b: backtest(SPEC, b, start="noon-ish"), ValueError, "cannot read start"),
        (
            lambda b: backtest(spec_returning(lambda x: x.close.astype(str)), b),
            TypeError,
            "float64",
        ),
    ],
)
def test_wrong_input_raises_an_error_that_says_how_to_fix_it(bars, call, error, message):
    with pytest.raises(error, match=message):
        call(bars)


def test_params_as_mapping_namedtuple_or_defaults(bars):
    by_dict = backtest(SPEC, bars, {"fast": 7})
    by_tuple = backtest(SPEC, bars, Params(fast=7))
    assert by_dict.params == by_tuple.params == Params(7, 20)
    pd.testing.assert_series_equal(by_dict.equity, by_tuple.equity)
    assert backtest(SPEC, bars).params == Params()


def test_stops_default_to_the_strategy_own_and_can_be_disabled(bars):
    own = backtest(SPEC, bars)
    assert own.stops == SPEC.stops
    assert (own.fills["reason"] == "stop_loss").any()
    none = backtest(SPEC, bars, stops=Stops())
    assert (none.fills["reason"] == "signal").all()


# ----------------------------------------------------------------------------- result contents


@pytest.fixture(scope="module")
def result(bars) -> Result:
    return backtest(
        SPEC, bars, costs=Costs(0.001, 5.0), risk=RiskLimits(max_position=0.8), initial_cash=2_500.0
    )


def test_series_are_on_a_utc_close_time_index(result, bars):
    for series in (result.equity, result.cash, result.position):
        assert isinstance(series.index, pd.DatetimeIndex) and str(series.index.tz) == "UTC"
        np.testing.assert_array_equal(series.index.as_unit("ms").asi8, bars.ts)
    np.testing.assert_allclose(
        result.equity, result.cash + result.position * bars.close, rtol=1e-12
    )
    assert result.status == 0 and result.status_name == "ok"
    assert set(result.indicators) == {"fast", "slow"}
    assert result.panes == {"price": ["fast", "slow"]}
    np.testing.assert_array_equal(result.target, _target(bars, result.params))


def test_fills_table(result, bars):
    fills = result.fills
    assert result.orders is fills
    assert list(fills.columns) == [
        "ts",
        "bar_ts",
        "side",
        "size",
        "price",
        "fee",
        "reason",
        "realized_pnl",
        "cash_after",
        "position_after",
    ]
    at_open = fills["reason"] == "signal"
    assert (fills.loc[at_open, "ts"] == fills.loc[at_open, "bar_ts"] - pd.Timedelta(hours=1)).all()
    stops = fills["reason"] == "stop_loss"
    assert stops.any()
    intrabar = stops & (fills["ts"] == fills["bar_ts"])
    assert intrabar.any()  # stop fills inside a bar are stamped with its close
    assert set(fills["side"]) == {"buy", "sell"}
    np.testing.assert_allclose(fills["fee"], fills["size"] * fills["price"] * 0.001, rtol=1e-12)
    # the last fill's account equals the series at that bar
    last = fills.iloc[-1]
    assert result.position[last["bar_ts"]] == last["position_after"]


def test_trades_table_adds_up(result, bars):
    trades = result.trades
    fills = result.fills
    assert list(trades.columns) == [
        "entry_time",
        "exit_time",
        "side",
        "size",
        "entry_price",
        "exit_price",
        "fees",
        "pnl",
        "return",
        "exit_reason",
        "duration",
    ]
    assert set(trades["side"]) == {"long", "short"}
    assert trades["fees"].sum() == pytest.approx(fills["fee"].sum(), rel=1e-12)
    assert (
        trades["duration"].dropna() == (trades["exit_time"] - trades["entry_time"]).dropna()
    ).all()
    np.testing.assert_allclose(
        trades["return"],  # a fraction, like every stat
        trades["pnl"] / (trades["entry_price"] * trades["size"]),
    )
    # accounting identity: realised P&L of all trades plus the open position's mark-to-market
    # equals the change in equity
    open_value = 0.0
    if result.position.iloc[-1] != 0:
        last = trades.iloc[-1]
        assert last["exit_reason"] == "open" and pd.isna(last["exit_time"])
        open_value = result.position.iloc[-1] * (bars.close[-1] - last["entry_price"])
    assert trades["pnl"].sum() + open_value == pytest.approx(
        result.equity.iloc[-1] - 2_500.0, rel=1e-9, abs=1e-9
    )
    closed = trades[trades["exit_reason"] != "open"]
    assert result.stats["trade_count"] == len(closed)
    assert result.stats["expectancy"] == pytest.approx(closed["pnl"].mean())
    assert set(closed["exit_reason"]) <= {"signal", "stop_loss"}
    assert (closed["exit_reason"] == "stop_loss").any()


def test_round_trip_sizes_respect_max_position(result):
    first = result.fills.iloc[0]
    # 0.8 of the initial cash, fee included
    assert first["size"] * first["price"] * 1.001 == pytest.approx(0.8 * 2_500.0, rel=1e-12)


def test_bad_bar_stops_the_run_with_a_status(bars):
    high = bars.high.copy()
    high[500] = bars.low[500] * 0.5  # high below low
    broken = Bars(bars.ts, bars.open, high, bars.low, bars.close, bars.volume, HOUR)
    result = backtest(SPEC, broken)
    assert result.status == -1 and result.status_name == "bad_bar"
    assert result.equity.iloc[:500].notna().all() and result.equity.iloc[500:].isna().all()
    assert result.stats["n_bars"] == 500


def test_timeframe_is_inferred_when_unknown(bars):
    unknown = Bars(bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, 0)
    result = backtest(SPEC, unknown)
    assert result.timeframe_ms == HOUR
    assert result.stats["sharpe"] == backtest(SPEC, bars).stats["sharpe"]


def test_result_matches_a_fresh_kernel_run_with_random_levels(bars):
    """Fractional targets go through unchanged (the oracle tests cover only -1/0/1)."""
    levels = random_targets(len(bars), 9, levels=(-0.7, 0.0, 0.3, 1.0, math.nan))
    result = backtest(levels_strategy(levels), bars, costs=Costs(0.002, 1.0))
    fills, cash, position, equity = simulate(
        bars.ts,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        levels,
        fee_rate=0.002,
        slippage_bps=1.0,
    )
    assert len(result.fills) == len(fills)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-9)


def test_plot_delegates_to_the_chart_module(result):
    figure = result.plot()
    assert type(figure).__name__ == "Figure"


@pytest.mark.parametrize("broken_bar", [None, 600])
@pytest.mark.parametrize(
    "stops", [Stops(), Stops(stop_loss=0.01, take_profit=0.03, trailing_stop=0.015)]
)
def test_result_series_and_stats_equal_the_recording_kernel_bit_for_bit(bars, stops, broken_bar):
    """``research.backtest`` records only the equity, and cash and position come from the
    fills: all must equal what the kernel that records every series produces, and the stats
    what ``compute_stats`` gives on those series."""
    high = bars.high.copy()
    if broken_bar is not None:
        high[broken_bar] = np.nan
    run_bars = Bars(bars.ts, bars.open, high, bars.low, bars.close, bars.volume, HOUR)
    levels = random_targets(len(bars), 4, levels=(-1.0, 0.0, 0.5, 1.0, math.nan))
    spec = levels_strategy(levels)
    costs = Costs(0.001, 2.0)
    result = backtest(spec, run_bars, costs=costs, stops=stops, initial_cash=5_000.0)
    fills, cash, position, equity, status, _ = run_backtest(
        rc.new_state(5_000.0),
        rc.make_config(costs, stops, RiskLimits()),
        run_bars.ts,
        run_bars.open,
        run_bars.high,
        run_bars.low,
        run_bars.close,
        levels,
    )
    assert result.status == status
    np.testing.assert_array_equal(result.fill_rows, fills)
    for ours, kernel in ((result.equity, equity), (result.cash, cash), (result.position, position)):
        np.testing.assert_array_equal(ours.to_numpy(), kernel)
    processed = len(bars) if broken_bar is None else broken_bar
    pnls, durations = closed_trade_arrays_nb(fills, HOUR)
    expected = compute_stats(
        equity[:processed],
        position[:processed],
        run_bars.ts[:processed],
        HOUR,
        pnls,
        durations,
        5_000.0,
        float(fills["fee"].sum()),
        open_=run_bars.open[:processed],
        close=run_bars.close[:processed],
    )
    assert len(expected) == len(result.stats)
    for name, value in expected.items():
        assert result.stats[name] == value or (
            math.isnan(value) and math.isnan(result.stats[name])
        ), name


# ----------------------------------------------------------------------------- trading from a start


@pytest.mark.parametrize("start", [300, "start-as-time"])
def test_a_start_trades_from_there_with_the_earlier_bars_as_history(bars, start):
    """From bar 300 on: the decisions are the full-history ones (the history window before
    the start is evaluated too), the account starts there, flat, and the result covers only the
    bars from there: exactly a backtest of those decisions over ``bars[300:]``."""
    if start == "start-as-time":  # the close time of bar 300, as a tz-naive ISO string (UTC)
        start = pd.Timestamp(int(bars.ts[300]), unit="ms").isoformat()
    result = backtest(SPEC, bars, start=start, costs=Costs(0.001, 2.0))
    full = SPEC.target(bars)
    np.testing.assert_array_equal(result.ts, bars.ts[300:])
    np.testing.assert_array_equal(result.target, full[300:])
    np.testing.assert_array_equal(result.indicators["slow"], SPEC.indicators(bars)["slow"][300:])
    same_decisions = backtest(
        levels_strategy(full[300:]), bars[300:], costs=Costs(0.001, 2.0), stops=SPEC.stops
    )
    np.testing.assert_array_equal(result.fill_rows, same_decisions.fill_rows)
    pd.testing.assert_series_equal(result.stats, same_decisions.stats, check_names=False)
    assert result.equity.iloc[0] == pytest.approx(10_000.0)


def test_a_start_within_the_lookback_stays_flat_until_the_lookback_ends(bars):
    result = backtest(SPEC, bars, start=5)
    assert np.isnan(result.target[: 19 - 5]).all() and not np.isnan(result.target[19 - 5])
    assert result.fills["bar_ts"].min() > pd.Timestamp(int(bars.ts[19]), unit="ms", tz="UTC")


def test_a_start_needs_only_the_history_window_before_it(bars):
    """Cutting the bars at ``start - history_window`` changes nothing: that is all the runner
    loads."""
    from strategies.registry import get_strategy

    spec = get_strategy("ema_cross")
    params = spec.make_params(fast=5, slow=12)
    window = spec.history_window(params)
    start = len(bars) - 100
    assert window < start
    whole = backtest(spec, bars, params, start=start)
    cut = backtest(spec, bars[start - window + 1 :], params, start=window - 1)
    np.testing.assert_array_equal(whole.target, cut.target)
    np.testing.assert_array_equal(whole.fill_rows, cut.fill_rows)
