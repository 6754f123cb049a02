"""Oracle agreement of the book kernel on real multi-market data: Candela vs vectorbt.

Several real Binance pairs over their common grid (the bundled 1h sample: BTC, ETH, NEO and
XRP against USDT, which list at different times, so the panel has absent markets; and, from
the wider collection, BTC-quoted pairs that list and stop within the span) are traded as one
book with shared cash, and must give the **same fills in the same order** and the same equity
at every bar, within 1e-9 relative (a fill's size within 1e-9 of the position it leaves: a
resize is the difference of two near-equal unit counts), as vectorbt ``Portfolio.from_orders`` with
``size_type='targetpercent'``, ``cash_sharing=True``, ``group_by=True``, ``call_seq='auto'``,
configured to Candela's convention:

* the weight decided at bar ``t``'s close is an order on the market's next bar (``t+1``, or
  its next present bar when it is absent), ``price=open``; on-change books send a market's
  order only when its weight changed (the order cells are computed here from the documented
  rule), scheduled books every market at each rebalance;
* ``size = w / (1 + fee)``: vectorbt's target value is ``size * value`` with no room for the
  fee; Candela sizes ``w * E / (p * (1 + fee))`` so that position value plus fee is ``w * E``;
* ``val_price``: the open for a present market, the last close for an absent one (vectorbt
  otherwise carries forward the last *order* price), and with slippage, the open slipped
  towards the side of the market's fill in that bar (taken from Candela's fill: vectorbt has
  one valuation price per cell, Candela marks each trading market at its own fill side's
  price, so this part of the configuration is not independent);
* cells without an order get ``size=0`` with ``size_type='amount'`` (an ignored order), not
  ``nan``: vectorbt's insertion sort stops at a ``nan`` order value, which would put a
  purchase before a sale;
* ``direction='longonly'``; ``close`` is carried forward over absent bars for the valuation;
  ``min_size=0`` (vectorbt's default refuses orders below 1e-8 units, such as the resize of a
  weight that drifted only by the fee of the previous one; Candela sends them).

Convention differences (what vectorbt cannot be configured to do, covered by the reference
book ``book_reference.py`` in ``test_portfolio_kernel.py`` instead):

* flips: Candela closes a position whose weight changes sign, then values the book and opens
  the other side from the cash left (the single-market rule); vectorbt sizes the reversal as
  one order from the value before it. The oracle books are long only.
* stops, risk limits, the stay-flat-after-a-stop rule: ``from_orders`` has none.
* the minimum order: vectorbt's ``min_size`` is in units, Candela's ``min_notional`` in quote
  currency, and Candela always lets a whole position close.
* drift rebalancing is decided inside the kernel from its own positions; the oracle would need
  Candela's state to place the orders.
* rounding dust: rebalancing an unchanged weight leaves a difference of a few ulps between
  target and position; vectorbt sends it when it is above 1e-12 units, Candela when it is
  above 1e-12 of the position. Fills worth less than 1e-9 of the book are therefore left out of
  the fill-by-fill comparison (equity and positions are still compared at every bar).
* the cash check of a purchase: both cut a purchase to the cash at hand, both with a tolerance
  of 1e-9 relative (vectorbt's ``is_close``); Candela leaves cash at the rounding residue where
  vectorbt sets it to exactly 0.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from book_helpers import CASH, run_book
from market_files import read_market_bars

from research.panel import align, forward_fill

pytestmark = pytest.mark.slow

USDT_1H = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]  # bundled: runs in any clone
BTC_1H = ["ETH-BTC", "NEO-BTC", "ICX-BTC", "VEN-BTC", "XRB-BTC"]  # wider collection
END_2018 = 1_531_785_600_000  # 2018-07-17: leaves ETH-BTC's 2020 segment out


@functools.cache
def load_panel(names: tuple[str, ...], end: int | None = None):
    bars = {name.replace("-", "/"): read_market_bars(f"binance_{name}_1h.csv.gz") for name in names}
    return align(bars, end=end)


def arrays(panel):
    return panel.ts, panel.open, panel.high, panel.low, panel.close


@pytest.fixture(scope="module")
def vbt():
    import vectorbt  # a dev dependency: a missing oracle must fail, not skip

    return vectorbt


# ----------------------------------------------------------------------------- weights


def momentum_weights(panel, lookback: int, top: int) -> np.ndarray:
    """Equal weights on the ``top`` markets of highest trailing return over ``lookback`` grid
    bars (last closes), 0 elsewhere and while the return is unknown (a plain numpy rule)."""
    last = forward_fill(panel.close)
    past = np.full_like(last, np.nan)
    past[lookback:] = last[:-lookback]
    trailing = last / past - 1.0
    score = np.where(np.isnan(trailing), -np.inf, trailing)
    rank = np.argsort(np.argsort(-score, axis=1, kind="stable"), axis=1, kind="stable")
    return np.where((rank < top) & ~np.isnan(trailing), 1.0 / top, 0.0)


def changing_weights(panel, seed: int) -> np.ndarray:
    """Long-only weights (sum <= 1) that change now and then, market by market."""
    rng = np.random.default_rng(seed)
    n, m = panel.close.shape
    out = np.zeros((n, m))
    current = np.zeros(m)
    for i in range(n):
        change = rng.random(m) < 0.03
        current = np.where(change, rng.choice([0.0, 0.1, 0.2, 0.3], size=m), current)
        out[i] = current * min(1.0, 1.0 / max(current.sum(), 1e-300))
    return out


# ----------------------------------------------------------------------------- the oracle


def order_cells(weights, present, every: int) -> dict[tuple[int, int], float]:
    """``{(row, column): weight}`` of the orders Candela's documented rule sends: a weight
    decided at row ``t`` is ordered at the market's first present row after ``t``; on change
    (``every == 0``) only when it differs from the market's last ordered weight, else at each
    rebalance decision (rows 0, every, 2 every, ...), a later decision replacing a waiting one."""
    n, m = weights.shape
    cells = {}
    if every:
        for decision in range(0, n - 1, every):
            for j in range(m):
                later = np.flatnonzero(present[decision + 1 :, j])
                if len(later):
                    cells[(decision + 1 + int(later[0]), j)] = float(weights[decision, j])
        return cells
    ordered = np.zeros(m)
    pending = [None] * m
    for i in range(n):
        for j in range(m):
            if present[i, j] and pending[j] is not None:
                cells[(i, j)] = ordered[j] = pending[j]
                pending[j] = None
        for j in range(m):
            level = 0.0 if np.isnan(weights[i, j]) else float(weights[i, j])
            pending[j] = level if level != ordered[j] else None
    return cells


def vectorbt_book(vbt, panel, weights, fee, slippage_bps, every, our_fills):
    n, m = panel.close.shape
    present = panel.present
    size = np.zeros((n, m))
    size_type = np.zeros((n, m), dtype=np.int64)  # SizeType.Amount: size 0 is no order
    for (i, j), weight in order_cells(weights, present, every).items():
        size[i, j] = weight / (1.0 + fee)
        size_type[i, j] = vbt.portfolio.enums.SizeType.TargetPercent
    last_close = forward_fill(panel.close)
    previous_close = np.vstack([np.full((1, m), np.nan), last_close[:-1]])
    val_price = np.where(present, panel.open, previous_close)
    slip = slippage_bps * 1e-4
    if slip:
        side = {(int(f["bar"]), int(f["market"])): int(f["side"]) for f in our_fills}
        for (i, j), s in side.items():
            val_price[i, j] = panel.open[i, j] * (1.0 + s * slip)
    index = pd.DatetimeIndex(pd.to_datetime(panel.ts, unit="ms", utc=True))
    return vbt.Portfolio.from_orders(
        pd.DataFrame(last_close, index=index, columns=list(panel.markets)),
        size=size,
        size_type=size_type,
        price=panel.open,
        val_price=val_price,
        fees=fee,
        slippage=slip,
        init_cash=CASH,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        min_size=0.0,
        direction="longonly",
        freq=pd.Timedelta(milliseconds=panel.timeframe_ms),
    )


def assert_same_book(vbt, panel, weights, *, fee, slippage_bps=0.0, every=0):
    settings = {"fee_rate": fee, "slippage_bps": slippage_bps, "every": every}
    fills, cash, positions, equity, status, *_ = run_book(arrays(panel), weights, settings)
    assert status == 0 and len(fills) > 20
    portfolio = vectorbt_book(vbt, panel, weights, fee, slippage_bps, every, fills)
    orders = portfolio.orders.records  # in execution order, as Candela's fills
    # rounding dust (worth less than 1e-9 of the book) is left out of the fill-by-fill check
    orders = orders[orders["size"] * orders["price"] >= 1e-9 * CASH]
    fills = fills[fills["size"] * fills["price"] >= 1e-9 * CASH]
    assert len(orders) == len(fills)
    np.testing.assert_array_equal(orders["idx"], fills["bar"])
    np.testing.assert_array_equal(orders["col"], fills["market"])
    np.testing.assert_array_equal(np.where(orders["side"] == 0, 1, -1), fills["side"])
    # a resize is the difference of two near-equal unit counts: its error is relative to the
    # position it resizes, not to itself
    scale = np.maximum(fills["size"], np.abs(fills["position_after"]))
    assert_within(orders["size"], fills["size"], 1e-9 * scale)
    np.testing.assert_allclose(orders["price"], fills["price"], rtol=1e-12)
    assert_within(orders["fees"], fills["fee"], 1e-9 * scale * fills["price"] * fee + 1e-12)
    value = portfolio.value().to_numpy()
    np.testing.assert_allclose(equity, value, rtol=1e-9)
    assert equity[-1] == pytest.approx(value[-1], rel=1e-9)
    np.testing.assert_allclose(positions, portfolio.assets().to_numpy(), rtol=1e-9, atol=1e-9)
    return fills


def assert_within(actual, desired, tolerance):
    worst = np.argmax(np.abs(actual - desired) - tolerance)
    assert (np.abs(actual - desired) <= tolerance).all(), (
        f"fill {worst}: {actual[worst]!r} vs {desired[worst]!r} (tolerance {tolerance[worst]!r})"
    )


def test_the_bundled_pairs_have_absent_markets():
    panel = load_panel(tuple(USDT_1H))
    counts = panel.coverage_counts()
    assert len(panel.markets) == 4 and (counts["bars"] < len(panel)).all()


@pytest.mark.parametrize("every, lookback, top", [(24, 24, 2), (6, 48, 1), (1, 12, 3)])
@pytest.mark.parametrize("fee", [0.001, 0.0])
def test_momentum_rotation_matches_vectorbt(vbt, every, lookback, top, fee):
    panel = load_panel(tuple(USDT_1H))
    weights = momentum_weights(panel, lookback, top)
    fills = assert_same_book(vbt, panel, weights, fee=fee, every=every)
    assert len(np.unique(fills["market"])) == 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weights_changing_market_by_market_match_vectorbt(vbt, seed):
    panel = load_panel(tuple(USDT_1H))
    assert_same_book(vbt, panel, changing_weights(panel, seed), fee=0.00075)


@pytest.mark.parametrize("every", [0, 24])
def test_slippage_matches_vectorbt_valued_at_each_fills_side(vbt, every):
    panel = load_panel(tuple(USDT_1H))
    weights = momentum_weights(panel, 24, 2) if every else changing_weights(panel, 4)
    assert_same_book(vbt, panel, weights, fee=0.001, slippage_bps=5.0, every=every)


@pytest.mark.shared_data
@pytest.mark.parametrize("every", [0, 12])
def test_btc_quoted_pairs_that_list_and_stop_within_the_span_match_vectorbt(vbt, every):
    panel = load_panel(tuple(BTC_1H), END_2018)
    counts = panel.coverage_counts()
    assert (counts["before"] > 0).any() and (counts["after"] > 0).any()
    weights = momentum_weights(panel, 24, 2) if every else changing_weights(panel, 5)
    assert_same_book(vbt, panel, weights, fee=0.001, every=every)
