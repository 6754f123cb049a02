"""The book's execution function (``advance_book_nb``, the runner's ``step_book``) and its
backtest loop, rule by rule.

Every rule of the :mod:`research.kernels.portfolio` docstring has a hand-computed scenario here.
Then: a book of one market with weight 1 equals the single-market kernel **bit for bit** (fills,
cash, position, equity) on real data and on random bars, costs, stops and limits; hypothesis
checks the kernel against the plain-Python reference book (``book_reference.py``) on random
panels with absent markets, and the properties: value is conserved net of fees across every
fill, no fill uses a later bar, a missing bar never trades.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from book_helpers import CASH, book_config, random_weights, run_book, synthetic_panel
from book_reference import simulate_book as reference_book
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_files import read_market_bars
from reference import random_targets, synthetic_bars

from research.kernels import portfolio_records as pr
from research.kernels import records as rc
from research.kernels.backtest import run_backtest
from research.kernels.portfolio import step_book
from research.kernels.portfolio_backtest import simulate_book
from research.types import Costs, RiskLimits, Stops

HOUR = 3_600_000
T0 = 1_700_006_400_000  # a UTC midnight
NAN = math.nan


def panel_of(*markets, start=T0 + HOUR):
    """Each market is a list of (open, high, low, close) rows or None (absent)."""
    n, m = len(markets[0]), len(markets)
    arrays = np.full((4, n, m), np.nan)
    for j, rows in enumerate(markets):
        for i, row in enumerate(rows):
            if row is not None:
                arrays[:, i, j] = row
    ts = start + HOUR * np.arange(n, dtype=np.int64)
    return (ts, *arrays)


def flat(price, n):
    return [(price, price, price, price)] * n


def fills_of(fills, market):
    return fills[fills["market"] == market]


# ----------------------------------------------------------------------------- the open


def test_weights_decided_at_close_fill_at_next_open_with_shared_cash():
    panel = panel_of(flat(100.0, 3), flat(50.0, 3))
    fills, cash, pos, eq, status, *_ = run_book(panel, [[0.5, 0.5]] * 3)
    assert status == rc.STATUS_OK
    assert list(fills["bar"]) == [1, 1] and list(fills["market"]) == [0, 1]
    np.testing.assert_allclose(fills["size"], [50.0, 100.0])
    np.testing.assert_allclose(pos[1], [50.0, 100.0])
    assert cash[1] == pytest.approx(0.0, abs=1e-9) and eq[2] == pytest.approx(CASH)


def test_sells_come_before_buys_and_a_purchase_is_cut_to_the_cash_at_hand():
    """A full rotation with a 1 % fee: the sale pays its fee, so the purchase sized from the
    equity before the orders needs more cash than there is; it is cut to the cash (fee
    included), as vectorbt's partial fill."""
    panel = panel_of(flat(100.0, 4), flat(50.0, 4))
    weights = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    fills, cash, pos, eq, *_ = run_book(panel, weights, {"fee_rate": 0.01})
    buy_a, sell_a, buy_b = fills
    assert buy_a["size"] == pytest.approx(CASH / 101.0)
    assert (sell_a["market"], sell_a["side"], sell_a["bar"]) == (0, -1, 2)
    assert (buy_b["market"], buy_b["side"], buy_b["bar"]) == (1, 1, 2)
    equity = buy_a["cash_after"] + buy_a["size"] * 100.0  # the book at bar 2's open
    assert buy_b["size"] < equity / (50.0 * 1.01)  # it wanted E / (p (1 + fee)) units
    assert buy_b["size"] == pytest.approx(sell_a["cash_after"] / 1.01 / 50.0, rel=1e-12)
    assert buy_b["cash_after"] == pytest.approx(0.0, abs=1e-9)


def test_an_absent_market_does_not_trade_and_is_valued_at_its_last_close():
    a = [(100, 101, 99, 100)] * 6
    b = [(50, 51, 49, 50), (50, 51, 49, 50), (60, 61, 59, 60), None, None, (70, 71, 69, 70)]
    panel = panel_of(a, b)
    weights = [[0.5, 0.5]] * 3 + [[0.2, 0.8]] * 3
    fills, cash, pos, eq, *_ = run_book(panel, weights)
    b_fills = fills_of(fills, 1)
    # decided at bar 3's close; B has no bar at 4 (nor 3): it fills at its next open, bar 5
    assert list(b_fills["bar"]) == [1, 5]
    assert b_fills[1]["price"] == 70.0
    assert list(fills_of(fills, 0)["bar"]) == [1, 4]
    # bars 3 and 4: B's position is marked at its last close, 60
    for i in (3, 4):
        assert eq[i] == pytest.approx(cash[i] + pos[i, 0] * 100.0 + pos[i, 1] * 60.0, rel=1e-15)


def test_on_change_trades_only_the_market_whose_weight_changed():
    panel = panel_of(
        [(100 + i, 102 + i, 99 + i, 101 + i) for i in range(5)],
        [(50 - i, 51 - i, 48 - i, 49 - i) for i in range(5)],
    )
    weights = [[0.4, 0.4], [0.4, 0.4], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4]]
    fills, *_ = run_book(panel, weights)
    assert [(f["bar"], f["market"]) for f in fills] == [(1, 0), (1, 1), (3, 0)]


def test_every_n_bars_resizes_every_market_back_to_its_weight():
    panel = panel_of([(100 * 1.1**i,) * 4 for i in range(7)], flat(50.0, 7))
    weights = [[0.5, 0.5]] * 7
    fills, cash, pos, eq, *_ = run_book(panel, weights, {"every": 2})
    assert sorted({int(f["bar"]) for f in fills}) == [1, 3, 5]
    for i in (3, 5):  # right after each rebalance both hold half the equity at the open
        value = pos[i] * np.array([100 * 1.1**i, 50.0])
        np.testing.assert_allclose(value / eq[i], [0.5, 0.5], rtol=1e-12)
    on_change, *_ = run_book(panel, weights)
    assert {int(f["bar"]) for f in on_change} == {1}


def test_a_calendar_period_rebalances_at_the_first_decision_at_or_after_each_boundary():
    n = 12
    panel = panel_of([(100 * 1.05**i,) * 4 for i in range(n)], flat(50.0, n))
    # 4-hour boundaries at T0 + 4h, 8h, 12h (offset 0); the bars close at T0 + 1h ... 12h
    fills, *_ = run_book(panel, [[0.5, 0.5]] * n, {"period": 4 * HOUR})
    decisions = sorted({int(f["bar"]) - 1 for f in fills})
    assert decisions == [0, 3, 7]  # the first bar, then the closes at T0 + 4h and T0 + 8h
    # with a missing bar at the boundary, the next decision rebalances
    rows = [(100 * 1.05**i,) * 4 for i in range(n)]
    rows[3] = None
    panel = panel_of(rows, [None if i == 3 else (50.0,) * 4 for i in range(n)])
    panel = tuple(np.delete(a, 3, axis=0) for a in panel)  # T0 + 4h is not on the grid
    fills, *_ = run_book(panel, [[0.5, 0.5]] * (n - 1), {"period": 4 * HOUR})
    assert sorted({int(panel[0][int(f["bar"]) - 1]) for f in fills}) == [
        T0 + HOUR,
        T0 + 5 * HOUR,
        T0 + 8 * HOUR,
    ]


def test_a_drift_past_the_threshold_rebalances_the_whole_book():
    rise = [(100 * 1.1**i,) * 4 for i in range(6)]
    panel = panel_of(rise, flat(50.0, 6))
    fills, cash, pos, eq, *_ = run_book(panel, [[0.5, 0.5]] * 6, {"drift": 0.04})
    # A rises 10 % a bar: its weight drifts above 0.54 two bars after the first fill, and the
    # next open rebalances both markets
    by_bar = {}
    for f in fills:
        by_bar.setdefault(int(f["bar"]), []).append(int(f["market"]))
    assert by_bar[1] == [0, 1]
    first_drift = min(bar for bar in by_bar if bar > 1)
    held = pos[first_drift - 2, 0] * rise[first_drift - 2][3] / eq[first_drift - 2]
    held_next = pos[first_drift - 1, 0] * rise[first_drift - 1][3] / eq[first_drift - 1]
    assert abs(held - 0.5) <= 0.04 < abs(held_next - 0.5)
    assert sorted(by_bar[first_drift]) == [0, 1]


def test_max_weight_clips_and_the_gross_weight_is_scaled_down():
    panel = panel_of(flat(100.0, 3), flat(50.0, 3), flat(20.0, 3))
    fills, cash, pos, eq, *_ = run_book(
        panel, [[0.9, 0.6, -0.3]] * 3, {"max_weight": 0.5, "max_gross": 1.0}
    )
    value = pos[1] * np.array([100.0, 50.0, 20.0])
    np.testing.assert_allclose(value / CASH, np.array([0.5, 0.5, -0.3]) / 1.3, rtol=1e-12)


def test_orders_below_the_minimum_are_not_sent_but_closes_are():
    panel = panel_of(flat(100.0, 5), flat(50.0, 5))
    weights = [[0.5, 0.0], [0.5004, 0.0], [0.5004, 0.0], [0.0, 0.0], [0.0, 0.0]]
    fills, *_ = run_book(panel, weights, {"min_notional": 10.0})
    # bar 2: the change to 0.5004 is worth about 4: not sent; bar 4: the close is sent
    assert [int(f["bar"]) for f in fills] == [1, 4]
    assert fills[-1]["position_after"] == 0.0
    without, *_ = run_book(panel, weights)
    assert [int(f["bar"]) for f in without] == [1, 2, 4]


def test_a_flip_closes_first_then_sizes_from_the_cash_left():
    panel = panel_of(flat(100.0, 4), flat(50.0, 4))
    fills, cash, pos, eq, *_ = run_book(
        panel, [[0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5]], {"fee_rate": 0.001}
    )
    close_long, open_short = fills_of(fills, 0)[1:]
    assert close_long["position_after"] == 0.0 and open_short["side"] == -1
    equity_after_close = close_long["cash_after"] + pos[1, 1] * 50.0
    assert open_short["size"] == pytest.approx(
        0.5 * equity_after_close / (100.0 * 1.001), rel=1e-12
    )


def test_a_stop_closes_one_market_which_stays_flat_until_its_weight_changes():
    a = [
        (100, 100, 100, 100),
        (100, 101, 99, 100),
        (100, 100, 90, 95),
        (95, 96, 94, 95),
        (95, 96, 94, 95),
        (95, 96, 94, 95),
    ]
    panel = panel_of(a, flat(50.0, 6))
    weights = [[0.5, 0.5]] * 4 + [[0.4, 0.5]] * 2
    fills, cash, pos, eq, *_ = run_book(panel, weights, {"stop_loss": 0.05})
    stop = fills_of(fills, 0)[1]
    assert (stop["bar"], rc.REASON_NAMES[stop["reason"]], stop["price"]) == (2, "stop_loss", 95.0)
    assert not stop["at_open"]
    assert pos[3, 0] == 0.0 and pos[3, 1] == 100.0  # B untouched
    assert int(fills_of(fills, 0)[2]["bar"]) == 5  # re-entered once the weight changed


def test_the_drawdown_limit_closes_every_market_at_the_next_open():
    a = [(100,) * 4, (100,) * 4, (70, 70, 60, 60), (60,) * 4, (60,) * 4]
    panel = panel_of(a, flat(50.0, 5))
    fills, cash, pos, eq, *_ = run_book(panel, [[0.5, 0.5]] * 5, {"max_drawdown": 0.1})
    exits = fills[fills["bar"] == 3]
    assert sorted(exits["market"]) == [0, 1]
    assert {rc.REASON_NAMES[r] for r in exits["reason"]} == {"max_drawdown"}
    assert (pos[3:] == 0.0).all() and len(fills[fills["bar"] > 3]) == 0


def test_a_ruined_book_closes_what_is_present_and_opens_nothing():
    b = [(50,) * 4] * 5
    panel = panel_of([(100,) * 4, (100,) * 4, (300,) * 4, (300,) * 4, (300,) * 4], b)
    fills, cash, pos, eq, *_ = run_book(panel, [[-1.0, 0.0]] * 2 + [[-1.0, 0.5]] * 3)
    assert eq[2] < 0
    closes = fills[fills["bar"] == 3]
    assert list(closes["market"]) == [0] and closes[0]["position_after"] == 0.0
    assert (pos[3:] == 0.0).all() and len(fills[fills["bar"] > 3]) == 0


@pytest.mark.parametrize(
    "row, status",
    [
        ((100.0, 99.0, 98.0, 100.0), rc.STATUS_BAD_BAR),  # high below the open
        ((100.0, 101.0, 99.0, np.inf), rc.STATUS_BAD_BAR),
        ((-1.0, 101.0, -2.0, 100.0), rc.STATUS_BAD_BAR),
    ],
)
def test_a_bad_bar_of_a_present_market_leaves_the_book_untouched(row, status):
    panel = panel_of([(100.0,) * 4, row, (100.0,) * 4], flat(50.0, 3))
    fills, cash, pos, eq, got, book, legs = run_book(panel, [[0.5, 0.5]] * 3)
    assert got == status
    assert np.isnan(eq[1:]).all()
    assert book.bars == 1.0 and (legs[:, pr.L_POSITION] == 0.0).all()


def test_a_bar_out_of_order_is_refused_by_step_book():
    book, legs = pr.new_book(CASH, 2)
    config = book_config({})
    fills = pr.new_book_fills(6)
    row = np.array([100.0, 50.0])
    k, book = step_book(book, legs, config, T0 + HOUR, row, row, row, row, row / 200, fills)
    assert k == 0 and book.bars == 1.0
    legs_before = legs.copy()
    got, after = step_book(book, legs, config, T0 + HOUR, row, row, row, row, row / 200, fills)
    assert got == rc.STATUS_OUT_OF_ORDER and after == book
    np.testing.assert_array_equal(legs, legs_before)


def test_step_book_bar_by_bar_equals_the_loop():
    panel = synthetic_panel(400, 4, 11)
    weights = random_weights(400, 4, 11)
    s = dict(
        fee_rate=0.001,
        slippage_bps=5.0,
        stop_loss=0.05,
        trailing_stop=0.08,
        daily_loss_limit=0.05,
        max_drawdown=0.5,
        min_notional=5.0,
    )
    fills, cash, pos, eq, status, final_book, final_legs = run_book(panel, weights, s)
    config = book_config(s)
    book, legs = pr.new_book(CASH, 4)
    out = pr.new_book_fills(pr.MAX_FILLS_PER_MARKET * 4)
    collected = []
    for i in range(400):
        # persisted as plain floats (JSON), as the runner stores them
        book = pr.BookState(*[float(x) for x in book])
        legs = np.array([[float(x) for x in row] for row in legs])
        k, book = step_book(
            book, legs, config, int(panel[0][i]), *(a[i] for a in panel[1:]), weights[i], out
        )
        assert k >= 0
        collected.extend(out[:k].copy())
    np.testing.assert_array_equal(np.array(collected, dtype=pr.BOOK_FILL_DTYPE), fills)
    np.testing.assert_array_equal(book, final_book)
    np.testing.assert_array_equal(legs, final_legs)


# ----------------------------------------------------------------------------- one market


SINGLE = st.fixed_dictionaries(
    {
        "fee_rate": st.sampled_from([0.0, 0.001, 0.0075]),
        "slippage_bps": st.sampled_from([0.0, 2.5, 10.0]),
        "stop_loss": st.sampled_from([NAN, 0.02, 0.05]),
        "take_profit": st.sampled_from([NAN, 0.02, 0.05]),
        "trailing_stop": st.sampled_from([NAN, 0.02, 0.05]),
        "max_position": st.sampled_from([1.0, 0.5]),
        "daily_loss_limit": st.sampled_from([NAN, 0.02, 0.05]),
        "max_drawdown": st.sampled_from([NAN, 0.1, 0.3]),
    }
)


def assert_one_market_book_equals_the_single_kernel(bars, target, s):
    ts, o, h, low, c = bars
    config = rc.make_config(
        Costs(s["fee_rate"], s["slippage_bps"]),
        Stops(s["stop_loss"], s["take_profit"], s["trailing_stop"]),
        RiskLimits(s["max_position"], s["daily_loss_limit"], s["max_drawdown"]),
    )
    fills, cash, pos, eq, status, state = run_backtest(
        rc.new_state(CASH), config, ts, o, h, low, c, target
    )
    book_s = dict(s, max_weight=s["max_position"], max_gross=1.0)
    panel = (ts, o[:, None], h[:, None], low[:, None], c[:, None])
    for general in (True, False):  # the book loop, and the single-market loop it dispatches to
        b_fills, b_cash, b_pos, b_eq, b_status, book, legs = run_book(
            panel, target[:, None], book_s, general=general
        )
        assert b_status == status == rc.STATUS_OK
        assert len(b_fills) == len(fills)
        for name in rc.FILL_DTYPE.names:
            np.testing.assert_array_equal(b_fills[name], fills[name], err_msg=name)
        assert (b_fills["market"] == 0).all()
        np.testing.assert_array_equal(b_cash, cash)
        np.testing.assert_array_equal(b_pos[:, 0], pos)
        np.testing.assert_array_equal(b_eq, eq)
        assert book == (
            state.cash,
            state.day,
            state.day_start_equity,
            state.peak_equity,
            state.halt,
            state.equity,
            state.last_ts,
            state.bars,
        )
        expected_leg = [
            state.position,
            state.entry_price,
            state.trail_extreme,
            state.pending_target,
            state.pending_reason,
            state.ordered_target,
            state.stopped_target,
            c[-1],
        ]
        np.testing.assert_array_equal(legs[0], expected_leg)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n=st.integers(2, 300), s=SINGLE)
def test_one_market_with_weight_one_is_the_single_market_kernel_bit_for_bit(seed, n, s):
    bars = synthetic_bars(n, seed, volatility=0.04)
    target = random_targets(n, seed, levels=(-1.0, -0.5, 0.0, 0.5, 1.0, NAN))
    assert_one_market_book_equals_the_single_kernel(bars, target, s)


@pytest.mark.parametrize(
    "name",
    ["bittrex_ADA-BTC_1m", "binance_BTC-USDT_1h", "bittrex_ETH-BTC_5m", "binance_ETH-USDT_4h"],
)
def test_one_market_book_equals_the_single_market_kernel_on_real_data(name):
    bars = read_market_bars(f"{name}.csv.gz")
    columns = (bars.ts, bars.open, bars.high, bars.low, bars.close)
    target = random_targets(
        len(bars), 5, levels=(-1.0, 0.0, 0.5, 1.0, NAN), change_probability=0.02
    )
    for s in (
        dict(
            fee_rate=0.001,
            slippage_bps=5.0,
            stop_loss=NAN,
            take_profit=NAN,
            trailing_stop=NAN,
            max_position=1.0,
            daily_loss_limit=NAN,
            max_drawdown=NAN,
        ),
        dict(
            fee_rate=0.001,
            slippage_bps=5.0,
            stop_loss=0.02,
            take_profit=0.04,
            trailing_stop=0.03,
            max_position=1.0,
            daily_loss_limit=0.03,
            max_drawdown=0.4,
        ),
    ):
        assert_one_market_book_equals_the_single_kernel(columns, target, s)


# ----------------------------------------------------------------------------- reference book

BOOK = st.fixed_dictionaries(
    {
        "fee_rate": st.sampled_from([0.0, 0.001, 0.01]),
        "slippage_bps": st.sampled_from([0.0, 5.0, 20.0]),
        "stop_loss": st.sampled_from([NAN, 0.03, 0.08]),
        "take_profit": st.sampled_from([NAN, 0.05]),
        "trailing_stop": st.sampled_from([NAN, 0.05]),
        "max_weight": st.sampled_from([1.0, 0.4]),
        "max_gross": st.sampled_from([1.0, 0.8, 1.5]),
        "daily_loss_limit": st.sampled_from([NAN, 0.05]),
        "max_drawdown": st.sampled_from([NAN, 0.2]),
        "min_notional": st.sampled_from([0.0, 50.0]),
        "every": st.sampled_from([0, 0, 5]),
        "period": st.sampled_from([0, 0, 6 * HOUR]),
        "drift": st.sampled_from([NAN, NAN, 0.05]),
    }
)
COMMON = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 150), m=st.integers(1, 5), s=BOOK)
def test_kernel_agrees_with_the_reference_book(seed, n, m, s):
    panel = synthetic_panel(n, m, seed)
    weights = random_weights(n, m, seed)
    fills, cash, pos, eq, status, *_ = run_book(panel, weights, s)
    ref_fills, ref_cash, ref_pos, ref_eq = reference_book(*panel, weights, **s)
    assert status == rc.STATUS_OK
    assert len(fills) == len(ref_fills)
    for fill, ref in zip(fills, ref_fills, strict=False):
        assert (int(fill["bar"]), int(fill["market"]), int(fill["side"])) == (
            ref["bar"],
            ref["market"],
            ref["side"],
        )
        assert rc.REASON_NAMES[int(fill["reason"])] == ref["reason"]
        assert bool(fill["at_open"]) == ref["at_open"]
        np.testing.assert_allclose(
            [fill[name] for name in ("size", "price", "fee", "cash_after", "position_after")],
            [ref[name] for name in ("size", "price", "fee", "cash_after", "position_after")],
            rtol=1e-9,
            atol=1e-9,
        )
    np.testing.assert_allclose(eq, ref_eq, rtol=1e-9)
    np.testing.assert_allclose(pos, ref_pos, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- properties


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 150), m=st.integers(1, 5), s=BOOK)
def test_value_is_conserved_net_of_fees_across_every_fill(seed, n, m, s):
    panel = synthetic_panel(n, m, seed)
    fills, cash, pos, eq, status, *_ = run_book(panel, random_weights(n, m, seed), s)
    held = np.zeros(m)
    cash_before = CASH
    for fill in fills:
        j, price = int(fill["market"]), fill["price"]
        before = cash_before + held[j] * price
        after = fill["cash_after"] + fill["position_after"] * price
        assert after == pytest.approx(before - fill["fee"], rel=1e-12, abs=1e-8)
        delta = fill["position_after"] - held[j]
        assert np.sign(delta) == fill["side"]
        assert abs(delta) == pytest.approx(fill["size"], rel=1e-12)
        held[j], cash_before = fill["position_after"], fill["cash_after"]
    # between fills the equity is cash plus each position at its market's last close
    last_close = np.full(m, np.nan)
    for i in range(n):
        present = ~np.isnan(panel[4][i])
        last_close[present] = panel[4][i][present]
        marked = np.where(pos[i] != 0.0, pos[i] * last_close, 0.0).sum()
        assert eq[i] == pytest.approx(cash[i] + marked, rel=1e-12, abs=1e-9)
    assert np.isfinite(eq).all()


@COMMON
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(3, 150),
    m=st.integers(1, 4),
    cut=st.floats(0.0, 1.0),
    s=BOOK,
)
def test_no_fill_uses_a_later_bar(seed, n, m, cut, s):
    panel = synthetic_panel(n, m, seed)
    weights = random_weights(n, m, seed)
    t = int(cut * (n - 1))
    fills, cash, pos, eq, *_ = run_book(panel, weights, s)
    other = synthetic_panel(n, m, seed + 1)
    changed = tuple(
        np.concatenate([a[: t + 1], b[t + 1 :]]) for a, b in zip(panel, other, strict=True)
    )
    changed = (panel[0],) + changed[1:]
    other_weights = np.concatenate([weights[: t + 1], random_weights(n, m, seed + 1)[t + 1 :]])
    fills2, cash2, pos2, eq2, *_ = run_book(changed, other_weights, s)
    np.testing.assert_array_equal(fills[fills["bar"] <= t], fills2[fills2["bar"] <= t])
    np.testing.assert_array_equal(eq[: t + 1], eq2[: t + 1])
    slip = s["slippage_bps"] * 1e-4
    for fill in fills:  # every fill price lies within its own bar's range (widened by slippage)
        i, j = int(fill["bar"]), int(fill["market"])
        assert panel[3][i, j] * (1 - slip) * (1 - 1e-12) <= fill["price"]
        assert fill["price"] <= panel[2][i, j] * (1 + slip) * (1 + 1e-12)
        if fill["at_open"]:
            assert fill["price"] == pytest.approx(panel[1][i, j] * (1 + fill["side"] * slip))


@COMMON
@given(seed=st.integers(0, 2**31), n=st.integers(2, 150), m=st.integers(1, 5), s=BOOK)
def test_a_missing_bar_never_trades(seed, n, m, s):
    panel = synthetic_panel(n, m, seed, absent=0.3)
    weights = random_weights(n, m, seed, change_probability=0.3)
    fills, cash, pos, eq, *_ = run_book(panel, weights, s)
    present = ~np.isnan(panel[1])
    assert present[fills["bar"], fills["market"]].all()
    # an absent market's position does not move
    for i in range(1, n):
        absent = ~present[i]
        np.testing.assert_array_equal(pos[i, absent], pos[i - 1, absent])


@pytest.mark.parametrize("stops_off", [True, False], ids=["no_stops", "stops"])
@pytest.mark.parametrize("limits_off", [True, False], ids=["no_limits", "limits"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n=st.integers(2, 150), m=st.integers(1, 4), s=BOOK)
def test_compiled_out_steps_change_nothing(stops_off, limits_off, seed, n, m, s):
    """The loop compiles out the stops and limits a configuration disables; ``step_book``
    always runs them: bar by bar they give the same fills and book, bit for bit."""
    s = dict(s)
    if stops_off:
        s.update(stop_loss=NAN, take_profit=NAN, trailing_stop=NAN)
    if limits_off:
        s.update(daily_loss_limit=NAN, max_drawdown=NAN)
    panel = synthetic_panel(n, m, seed)
    weights = random_weights(n, m, seed)
    fills, cash, pos, eq, status, final_book, final_legs = run_book(panel, weights, s)
    config = book_config(s)
    assert (pr.book_switches(config)[0] is None) == (
        stops_off or all(math.isnan(s[k]) for k in ("stop_loss", "take_profit", "trailing_stop"))
    )
    book, legs = pr.new_book(CASH, m)
    out = pr.new_book_fills(pr.MAX_FILLS_PER_MARKET * m)
    collected = []
    for i in range(n):
        k, book = step_book(
            book, legs, config, int(panel[0][i]), *(a[i] for a in panel[1:]), weights[i], out
        )
        collected.extend(out[:k].copy())
    np.testing.assert_array_equal(np.array(collected, dtype=pr.BOOK_FILL_DTYPE), fills)
    np.testing.assert_array_equal(book, final_book)
    np.testing.assert_array_equal(legs, final_legs)


def test_the_fill_table_grows_without_losing_records():
    panel = synthetic_panel(3000, 3, 5, absent=0.0)
    weights = random_weights(3000, 3, 5, change_probability=0.5)
    book, legs = pr.new_book(CASH, 3)
    small = pr.new_book_fills(pr.MAX_FILLS_PER_MARKET * 3)
    equity = np.empty(3000)
    grown = simulate_book(book, legs, book_config({}), *panel, weights, equity, fills=small)
    fills, *_ = run_book(panel, weights)
    assert len(grown.fills) > len(small)
    np.testing.assert_array_equal(grown.fills, fills)
