"""The execution function (``advance_nb``, the runner's ``step``) and the backtest loop, rule by
rule.

Every rule of the :mod:`research.kernels.execution` docstring has a hand-computed scenario
here; then hypothesis checks the kernel against the plain-Python reference loop
(``reference.py``) on random bars, targets, costs, stops and risk limits, and the properties:
value is conserved net of fees across fills, no fill uses a later bar, equity is never NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import random_targets, simulate, synthetic_bars

from research.kernels import execution as ex
from research.kernels import records as rc
from research.kernels.backtest import run_backtest
from research.types import Costs, RiskLimits, Stops

HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_700_006_400_000  # 2023-11-15 00:00:00 UTC, a UTC midnight
assert T0 % DAY == 0


def run(bars, target, costs=Costs(0.0, 0.0), stops=Stops(), risk=RiskLimits(), cash=10_000.0):
    ts, o, h, l, c = (np.asarray(a) for a in bars)
    state = rc.new_state(cash)
    config = rc.make_config(costs, stops, risk)
    fills, cash_s, pos_s, eq_s, status, state = run_backtest(
        state,
        config,
        ts.astype(np.int64),
        o.astype(float),
        h.astype(float),
        l.astype(float),
        c.astype(float),
        np.asarray(target, dtype=float),
    )
    return fills, cash_s, pos_s, eq_s, status, state


def make_bars(rows, start=T0 + HOUR, step=HOUR):
    """rows of (open, high, low, close) -> (ts, o, h, l, c) with hourly close times."""
    array = np.asarray(rows, dtype=float)
    ts = start + step * np.arange(len(rows), dtype=np.int64)
    return ts, array[:, 0], array[:, 1], array[:, 2], array[:, 3]


FLAT_BARS = make_bars(
    [
        (100, 101, 99, 100),
        (102, 103, 101, 102),
        (104, 105, 103, 104),
        (106, 107, 105, 106),
        (108, 109, 107, 108),
    ]
)


# ----------------------------------------------------------------------------- open fills


def test_decision_at_close_fills_at_next_open():
    fills, *_ = run(FLAT_BARS, [1, 1, 1, 1, 1])
    assert len(fills) == 1
    assert fills[0]["bar"] == 1
    assert fills[0]["price"] == 102.0
    assert fills[0]["at_open"] == 1.0
    assert fills[0]["side"] == 1.0


def test_target_on_last_bar_is_never_filled():
    fills, *_ = run(FLAT_BARS, [0, 0, 0, 0, 1])
    assert len(fills) == 0


def test_slippage_is_against_the_trader_and_fee_is_on_notional():
    costs = Costs(fee_rate=0.002, slippage_bps=25.0)
    fills, cash, *_ = run(FLAT_BARS, [1, 1, 0, 0, 0], costs)
    buy, sell = fills
    assert buy["price"] == pytest.approx(102.0 * 1.0025, rel=1e-15)
    assert sell["price"] == pytest.approx(106.0 * 0.9975, rel=1e-15)
    for fill in (buy, sell):
        assert fill["fee"] == pytest.approx(fill["size"] * fill["price"] * 0.002, rel=1e-14)
    # full equity spent on the entry: value + fee == cash
    assert buy["size"] * buy["price"] + buy["fee"] == pytest.approx(10_000.0, rel=1e-14)
    assert buy["cash_after"] == pytest.approx(0.0, abs=1e-9)
    expected_cash = sell["size"] * sell["price"] * (1 - 0.002)
    assert cash[-1] == pytest.approx(expected_cash, rel=1e-14)
    assert sell["realized_pnl"] == pytest.approx(
        (sell["price"] - buy["price"]) * buy["size"] - sell["fee"], rel=1e-12
    )


def test_fractional_level_sizes_from_equity():
    costs = Costs(fee_rate=0.001)
    fills, cash, pos, eq, *_ = run(FLAT_BARS, [0.5, 0.5, 0.5, 0.5, 0.5], costs)
    (buy,) = fills
    assert buy["size"] == pytest.approx(0.5 * 10_000 / (102.0 * 1.001), rel=1e-14)
    assert cash[1] == pytest.approx(10_000 - 0.5 * 10_000, rel=1e-14)


def test_short_level_sizes_symmetrically():
    costs = Costs(fee_rate=0.001)
    fills, cash, pos, eq, *_ = run(FLAT_BARS, [-1, -1, -1, -1, -1], costs)
    (sell,) = fills
    assert sell["side"] == -1.0
    assert sell["size"] * 102.0 * 1.001 == pytest.approx(10_000.0, rel=1e-14)
    assert pos[1] == pytest.approx(-sell["size"])
    # equity of a short moves against the price: bar 2 closes at 104
    assert eq[2] == pytest.approx(cash[2] + pos[2] * 104.0)
    assert eq[2] < eq[1]


def test_flip_is_a_close_then_an_open_from_the_resulting_cash():
    costs = Costs(fee_rate=0.001, slippage_bps=10)
    fills, cash, pos, *_ = run(FLAT_BARS, [1, -1, -1, -1, -1], costs)
    assert len(fills) == 3
    buy, close, short = fills
    assert close["bar"] == short["bar"] == 2
    assert close["side"] == short["side"] == -1
    assert close["size"] == buy["size"]
    assert close["position_after"] == 0.0
    cash_after_close = close["cash_after"]
    sell_price = 104.0 * (1 - 10e-4)
    assert short["price"] == pytest.approx(sell_price)
    assert short["size"] * sell_price * 1.001 == pytest.approx(cash_after_close, rel=1e-14)
    assert short["realized_pnl"] == pytest.approx(-short["fee"])


def test_nan_target_means_flat_and_max_position_clips():
    fills, *_ = run(
        FLAT_BARS, [np.nan, 3.0, 3.0, np.nan, np.nan], risk=RiskLimits(max_position=0.5)
    )
    buy, sell = fills
    assert buy["bar"] == 2 and sell["bar"] == 4
    assert buy["size"] * 104.0 == pytest.approx(0.5 * 10_000, rel=1e-14)
    fills, *_ = run(FLAT_BARS, [-3.0] * 5, risk=RiskLimits(max_position=0.25))
    assert fills[0]["size"] * 102.0 == pytest.approx(0.25 * 10_000, rel=1e-14)


def test_changing_level_rebalances_with_one_fill():
    fills, *_ = run(FLAT_BARS, [1, 0.5, 0.5, 0.5, 0.5])
    assert len(fills) == 2
    assert fills[1]["side"] == -1 and fills[1]["position_after"] > 0


def test_rebalance_marks_equity_at_its_own_fill_price():
    costs = Costs(fee_rate=0.001, slippage_bps=50.0)
    fills, cash, pos, *_ = run(FLAT_BARS, [1, 0.5, 0.5, 0.5, 0.5], costs)
    buy, sell = fills
    sell_price = 104.0 * (1 - 50e-4)
    assert sell["price"] == pytest.approx(sell_price, rel=1e-15)
    equity = buy["cash_after"] + buy["position_after"] * sell_price
    assert sell["position_after"] == pytest.approx(0.5 * equity / (sell_price * 1.001), rel=1e-12)


# ----------------------------------------------------------------------------- protective exits


def long_then(rows, stops, costs=Costs(0.0, 0.0), target=None):
    """Enter long at bar 1's open (100), then the given bars."""
    bars = make_bars([(100, 100, 100, 100), (100, 100, 100, 100)] + rows)
    target = [1.0] * len(bars[0]) if target is None else target
    return run(bars, target, costs, stops)


def test_stop_loss_fills_at_the_level_when_the_low_reaches_it():
    fills, *_ = long_then([(99, 99.5, 94, 97)], Stops(stop_loss=0.05))
    buy, stop = fills
    assert stop["reason"] == rc.REASON_STOP_LOSS
    assert stop["price"] == pytest.approx(95.0)
    assert stop["at_open"] == 0.0 and stop["bar"] == 2


def test_stop_not_reached_does_not_fire():
    fills, *_ = long_then([(99, 99.5, 95.01, 97)], Stops(stop_loss=0.05))
    assert len(fills) == 1


def test_gap_through_the_stop_fills_at_the_open():
    fills, *_ = long_then([(90, 92, 89, 91)], Stops(stop_loss=0.05))
    assert fills[1]["price"] == 90.0 and fills[1]["at_open"] == 1.0


def test_take_profit_and_its_gap():
    fills, *_ = long_then([(101, 111, 100, 105)], Stops(take_profit=0.1))
    assert fills[1]["reason"] == rc.REASON_TAKE_PROFIT and fills[1]["price"] == pytest.approx(110)
    fills, *_ = long_then([(115, 116, 91, 95)], Stops(stop_loss=0.05, take_profit=0.1))
    assert fills[1]["reason"] == rc.REASON_TAKE_PROFIT and fills[1]["price"] == 115.0


def test_both_reachable_in_one_bar_assumes_the_stop():
    fills, *_ = long_then([(100, 120, 80, 100)], Stops(stop_loss=0.05, take_profit=0.1))
    assert fills[1]["reason"] == rc.REASON_STOP_LOSS and fills[1]["price"] == pytest.approx(95)


def test_short_stops_mirror_the_long_ones():
    bars = make_bars([(100, 100, 100, 100), (100, 100, 100, 100), (101, 106, 99, 103)])
    fills, *_ = run(bars, [-1.0] * 3, stops=Stops(stop_loss=0.05, take_profit=0.1))
    assert fills[1]["reason"] == rc.REASON_STOP_LOSS and fills[1]["side"] == 1
    assert fills[1]["price"] == pytest.approx(105)
    bars = make_bars([(100, 100, 100, 100), (100, 100, 100, 100), (99, 100, 85, 95)])
    fills, *_ = run(bars, [-1.0] * 3, stops=Stops(stop_loss=0.05, take_profit=0.1))
    assert fills[1]["reason"] == rc.REASON_TAKE_PROFIT and fills[1]["price"] == pytest.approx(90)


def test_trailing_stop_follows_the_high_of_completed_bars_and_the_open():
    rows = [
        (100, 120, 100, 118),  # extreme becomes 120 at this close -> stop 108
        (117, 119, 109, 110),  # low 109 > 108: holds
        (111, 112, 107, 108),
    ]  # low 107 <= 108: out at 108
    fills, *_ = long_then(rows, Stops(trailing_stop=0.1))
    assert len(fills) == 2
    assert fills[1]["reason"] == rc.REASON_TRAILING_STOP
    assert fills[1]["price"] == pytest.approx(108.0)
    assert fills[1]["bar"] == 4
    # the tighter of stop-loss and trailing stop wins
    fills, *_ = long_then(rows, Stops(stop_loss=0.02, trailing_stop=0.1))
    assert fills[1]["reason"] == rc.REASON_TRAILING_STOP


def test_stop_fill_pays_slippage_and_fee():
    costs = Costs(fee_rate=0.001, slippage_bps=20)
    fills, *_ = long_then([(99, 99.5, 90, 97)], Stops(stop_loss=0.05), costs)
    buy, stop = fills
    level = buy["price"] * 0.95  # from the entry price, which includes slippage
    assert stop["price"] == pytest.approx(level * (1 - 20e-4), rel=1e-14)
    assert stop["fee"] == pytest.approx(stop["size"] * stop["price"] * 0.001, rel=1e-14)


def test_after_a_stop_stay_flat_until_the_target_changes():
    rows = [(99, 99.5, 94, 97)] + [(97, 98, 96, 97)] * 4
    target = [1, 1, 1, 1, 0, 1, 1]
    fills, cash, pos, *_ = long_then(rows, Stops(stop_loss=0.05), target=target)
    assert [int(f["bar"]) for f in fills] == [1, 2, 6]  # re-entry only after 1 -> 0 -> 1
    assert pos[3] == pos[4] == pos[5] == 0.0
    # a change to another non-zero level also re-enters
    fills, *_ = long_then(rows, Stops(stop_loss=0.05), target=[1, 1, 1, 0.5, 0.5, 0.5, 0.5])
    assert [int(f["bar"]) for f in fills] == [1, 2, 4]


# ----------------------------------------------------------------------------- risk limits


def test_daily_loss_halts_until_the_next_utc_day():
    # hourly bars from 01:00; the position loses 10% on the day by 03:00's close
    rows = [(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 88, 89)] + [
        (89, 90, 88, 89)
    ] * 30
    bars = make_bars(rows)
    fills, cash, pos, eq, status, state = run(
        bars, [1.0] * len(rows), risk=RiskLimits(daily_loss_limit=0.1)
    )
    reasons = [int(f["reason"]) for f in fills]
    bar_of = [int(f["bar"]) for f in fills]
    assert reasons[:2] == [rc.REASON_SIGNAL, rc.REASON_DAILY_LOSS]
    assert bar_of[1] == 3
    # the bar closing at 24:00 still belongs to the halted day; the first bar of the new day
    # (close 01:00) lifts the halt and its close decides the re-entry, filled at 02:00's open
    ts = bars[0]
    first_new_day = int(np.flatnonzero((ts - 1) // DAY > (ts[0] - 1) // DAY)[0])
    assert bar_of[2] == first_new_day + 1 and reasons[2] == rc.REASON_SIGNAL
    assert np.all(pos[4 : first_new_day + 1] == 0.0)


def test_daily_loss_not_reached_keeps_trading():
    rows = [(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 91, 91)] + [(91, 92, 90, 91)] * 3
    fills, *_ = run(make_bars(rows), [1.0] * len(rows), risk=RiskLimits(daily_loss_limit=0.1))
    assert len(fills) == 1


def test_max_drawdown_kill_switch_is_permanent():
    rows = [(100, 100, 100, 100), (100, 130, 100, 130), (130, 131, 100, 101)] + [
        (101, 102, 100, 101)
    ] * 60
    bars = make_bars(rows)
    target = [1.0, 1.0, 1.0] + [0.0, 1.0] * 30
    fills, cash, pos, eq, status, state = run(bars, target, risk=RiskLimits(max_drawdown=0.2))
    assert len(fills) == 2
    assert fills[1]["reason"] == rc.REASON_MAX_DRAWDOWN and fills[1]["bar"] == 3
    assert state.halt == rc.HALT_MAX_DRAWDOWN
    assert np.all(pos[3:] == 0.0)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bar",
    [
        (100, 101, 99, np.nan),
        (0, 101, 99, 100),
        (100, 99, 98, 100),
        (100, 101, 100.5, 100),
        (-1, 1, -2, 0.5),
        (100, np.inf, 99, 100),
    ],
)
def test_bad_bar_returns_status_and_leaves_state_unchanged(bar):
    state = rc.new_state(1000.0)
    config = rc.make_config(Costs(), Stops(), RiskLimits())
    fills = rc.new_fills(rc.MAX_FILLS_PER_BAR)
    status, state = ex.step(state, config, T0 + HOUR, 100.0, 101.0, 99.0, 100.0, 1.0, fills)
    assert status == 0
    before = state
    status, state = ex.step(state, config, T0 + 2 * HOUR, *map(float, bar), 1.0, fills)
    assert status == rc.STATUS_BAD_BAR
    np.testing.assert_array_equal(state, before)
    status, state = ex.step(state, config, T0 + HOUR, 100.0, 101.0, 99.0, 100.0, 1.0, fills)
    assert status == rc.STATUS_OUT_OF_ORDER
    np.testing.assert_array_equal(state, before)


def test_backtest_loop_stops_at_the_first_bad_bar():
    ts, o, h, l, c = (a.copy() for a in FLAT_BARS)
    c[3] = np.nan
    fills, cash, pos, eq, status, _ = run((ts, o, h, l, c), [1.0] * 5)
    assert status == rc.STATUS_BAD_BAR
    assert np.isfinite(eq[:3]).all() and np.isnan(eq[3:]).all()


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("costs.fee_rate", dict(costs=Costs(fee_rate=-0.1))),
        ("costs.slippage_bps", dict(costs=Costs(slippage_bps=float("nan")))),
        ("stops.stop_loss", dict(stops=Stops(stop_loss=0.0))),
        ("stops.trailing_stop", dict(stops=Stops(trailing_stop=1.5))),
        ("risk.max_position", dict(risk=RiskLimits(max_position=-1))),
        ("risk.max_drawdown", dict(risk=RiskLimits(max_drawdown=2.0))),
    ],
)
def test_make_config_names_the_bad_field(field, kwargs):
    arguments = dict(costs=Costs(), stops=Stops(), risk=RiskLimits()) | kwargs
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        rc.make_config(**arguments)


# ----------------------------------------------------------------------------- properties

SETTINGS = st.fixed_dictionaries(
    {
        "fee_rate": st.sampled_from([0.0, 0.0005, 0.001, 0.01]),
        "slippage_bps": st.sampled_from([0.0, 1.0, 10.0]),
        "stop_loss": st.sampled_from([math.nan, 0.01, 0.03, 0.1]),
        "take_profit": st.sampled_from([math.nan, 0.02, 0.05]),
        "trailing_stop": st.sampled_from([math.nan, 0.02, 0.05]),
        "max_position": st.sampled_from([1.0, 0.5, 2.0]),
        "daily_loss_limit": st.sampled_from([math.nan, 0.02, 0.05]),
        "max_drawdown": st.sampled_from([math.nan, 0.1, 0.3]),
    }
)


def kernel_run(bars, target, s, cash=10_000.0):
    return run(
        bars,
        target,
        Costs(s["fee_rate"], s["slippage_bps"]),
        Stops(s["stop_loss"], s["take_profit"], s["trailing_stop"]),
        RiskLimits(s["max_position"], s["daily_loss_limit"], s["max_drawdown"]),
        cash,
    )


COMMON = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 300), s=SETTINGS)
def test_kernel_agrees_with_the_reference_loop(seed, n, s):
    bars = synthetic_bars(n, seed, volatility=0.04)
    target = random_targets(n, seed, levels=(-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, math.nan))
    fills, cash, pos, eq, status, _ = kernel_run(bars, target, s)
    ref_fills, ref_cash, ref_pos, ref_eq = simulate(*bars, target, **s)
    assert status == rc.STATUS_OK
    assert len(fills) == len(ref_fills)
    for fill, ref in zip(fills, ref_fills):
        assert int(fill["bar"]) == ref.bar
        assert fill["side"] == ref.side
        assert rc.REASON_NAMES[int(fill["reason"])] == ref.reason
        assert bool(fill["at_open"]) == ref.at_open
        np.testing.assert_allclose(
            [fill[name] for name in ("size", "price", "fee", "cash_after", "position_after")],
            [ref.size, ref.price, ref.fee, ref.cash_after, ref.position_after],
            rtol=1e-9,
            atol=1e-9,
        )
        assert fill["realized_pnl"] == pytest.approx(ref.realized_pnl, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(eq, ref_eq, rtol=1e-9)
    np.testing.assert_allclose(pos, ref_pos, rtol=1e-9, atol=1e-12)


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 200), s=SETTINGS)
def test_value_is_conserved_net_of_fees_across_every_fill(seed, n, s):
    bars = synthetic_bars(n, seed)
    fills, cash, pos, eq, status, _ = kernel_run(bars, random_targets(n, seed), s)
    cash_before, position_before = 10_000.0, 0.0
    for fill in fills:
        price = fill["price"]
        before = cash_before + position_before * price
        after = fill["cash_after"] + fill["position_after"] * price
        assert after == pytest.approx(before - fill["fee"], rel=1e-12, abs=1e-8)
        delta = fill["position_after"] - position_before
        assert np.sign(delta) == fill["side"]
        assert abs(delta) == pytest.approx(fill["size"], rel=1e-12)
        cash_before, position_before = fill["cash_after"], fill["position_after"]
    # and between fills, equity is exactly cash + position * close
    np.testing.assert_allclose(eq, np.asarray(cash) + np.asarray(pos) * bars[4], rtol=1e-14)
    assert np.isfinite(eq).all()
    total_fees = fills["fee"].sum() if len(fills) else 0.0
    realized = fills["realized_pnl"].sum() if len(fills) else 0.0
    if pos[-1] == 0.0:  # flat at the end: the P&L of all fills is the change in cash
        assert cash[-1] - 10_000.0 == pytest.approx(realized, rel=1e-9, abs=1e-6)
        assert total_fees >= 0


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(3, 200), cut=st.floats(0.0, 1.0), s=SETTINGS)
def test_no_fill_uses_a_later_bar(seed, n, cut, s):
    bars = synthetic_bars(n, seed)
    target = random_targets(n, seed)
    t = int(cut * (n - 1))
    fills, _, _, eq, _, _ = kernel_run(bars, target, s)
    other = synthetic_bars(n, seed + 1)
    scale = bars[4][t] / other[1][t + 1] if t + 1 < n else 1.0
    perturbed = [bars[0]] + [
        np.concatenate([a[: t + 1], b[t + 1 :] * scale]) for a, b in zip(bars[1:], other[1:])
    ]
    other_target = np.concatenate([target[: t + 1], random_targets(n, seed + 1)[t + 1 :]])
    fills2, _, _, eq2, _, _ = kernel_run(perturbed, other_target, s)
    upto = fills[fills["bar"] <= t]
    upto2 = fills2[fills2["bar"] <= t]
    np.testing.assert_array_equal(upto, upto2)
    np.testing.assert_array_equal(eq[: t + 1], eq2[: t + 1])
    # every fill price lies within its own bar's range (widened by slippage)
    for fill in fills:
        i = int(fill["bar"])
        slip = s["slippage_bps"] * 1e-4
        assert bars[3][i] * (1 - slip) * (1 - 1e-12) <= fill["price"]
        assert fill["price"] <= bars[2][i] * (1 + slip) * (1 + 1e-12)
        if fill["at_open"]:
            assert fill["price"] == pytest.approx(bars[1][i] * (1 + fill["side"] * slip))


def test_runner_style_bar_by_bar_equals_the_loop():
    """Calling step per bar with the persisted state reproduces run_backtest exactly."""
    bars = synthetic_bars(500, 3)
    target = random_targets(500, 3)
    s = dict(
        fee_rate=0.001,
        slippage_bps=5.0,
        stop_loss=0.03,
        take_profit=math.nan,
        trailing_stop=0.05,
        max_position=1.0,
        daily_loss_limit=0.05,
        max_drawdown=0.5,
    )
    fills, cash, pos, eq, status, final = kernel_run(bars, target, s)
    config = rc.make_config(
        Costs(0.001, 5.0), Stops(0.03, math.nan, 0.05), RiskLimits(1.0, 0.05, 0.5)
    )
    state = rc.new_state(10_000.0)
    out = rc.new_fills(rc.MAX_FILLS_PER_BAR)
    collected = []
    for i in range(500):
        persisted = [float(value) for value in state]  # plain floats, as a database holds them
        k, state = ex.step(
            rc.State(*persisted),
            config,
            bars[0][i],
            bars[1][i],
            bars[2][i],
            bars[3][i],
            bars[4][i],
            target[i],
            out,
        )
        collected.extend(out[:k].copy())
    np.testing.assert_array_equal(np.array(collected, dtype=rc.FILL_DTYPE), fills)
    np.testing.assert_array_equal(state, final)


def test_ruined_account_closes_and_opens_nothing():
    bars = make_bars([(100, 100, 100, 100), (100, 100, 60, 60), (60, 61, 59, 60), (60, 61, 59, 60)])
    fills, cash, pos, eq, *_ = run(bars, [3.0, 2.0, 2.0, 2.0], risk=RiskLimits(max_position=3.0))
    buy, close = fills
    assert buy["size"] == pytest.approx(300.0)
    assert eq[1] == pytest.approx(-2_000.0)
    assert close["bar"] == 2 and close["side"] == -1 and close["position_after"] == 0.0
    assert pos[-1] == 0.0 and cash[-1] == pytest.approx(-2_000.0)


@pytest.mark.parametrize("stops_off", [True, False], ids=["no_stops", "stops"])
@pytest.mark.parametrize("limits_off", [True, False], ids=["no_limits", "limits"])
@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 300), s=SETTINGS)
def test_compiled_out_steps_change_nothing(stops_off, limits_off, seed, n, s):
    """The loop compiles out the protective exits and the risk-limit checks that the
    configuration disables (``feature_switches``); the runner's ``step`` always runs them.
    Bar by bar they give the same fills, equity and state (trailing extreme and day start
    included), bit for bit, in each of the four combinations."""
    stop_keys = ("stop_loss", "take_profit", "trailing_stop")
    limit_keys = ("daily_loss_limit", "max_drawdown")
    s = dict(s)
    for keys, off, fallback in (
        (stop_keys, stops_off, ("stop_loss", 0.03)),
        (limit_keys, limits_off, ("max_drawdown", 0.3)),
    ):
        if off:
            s.update({key: math.nan for key in keys})
        elif all(math.isnan(s[key]) for key in keys):
            s[fallback[0]] = fallback[1]
    bars = synthetic_bars(n, seed, volatility=0.04)
    target = random_targets(n, seed, levels=(-2.0, -1.0, 0.0, 0.5, 1.0, math.nan))
    fills, _, _, eq, status, final = kernel_run(bars, target, s)
    config = rc.make_config(
        Costs(s["fee_rate"], s["slippage_bps"]),
        Stops(s["stop_loss"], s["take_profit"], s["trailing_stop"]),
        RiskLimits(s["max_position"], s["daily_loss_limit"], s["max_drawdown"]),
    )
    stops_on, limits_on = rc.feature_switches(config)
    assert (stops_on is None) == stops_off and (limits_on is None) == limits_off
    state = rc.new_state(10_000.0)
    out = rc.new_fills(rc.MAX_FILLS_PER_BAR)
    collected, equity = [], []
    for i in range(n):
        k, state = ex.step(
            state,
            config,
            bars[0][i],
            bars[1][i],
            bars[2][i],
            bars[3][i],
            bars[4][i],
            target[i],
            out,
        )
        assert k >= 0
        collected.extend(out[:k].copy())
        equity.append(state.equity)
    assert status == rc.STATUS_OK
    np.testing.assert_array_equal(np.array(collected, dtype=rc.FILL_DTYPE), fills)
    np.testing.assert_array_equal(np.array(equity), eq)
    np.testing.assert_array_equal(state, final)
