"""``compute_stats`` against independent pandas computations on real equity curves.

The comparison with vectorbt's ``Portfolio.stats()`` lives in ``test_oracles.py``
(``test_stats_agree_with_vectorbt``): total return, max drawdown, Sharpe, Sortino, Calmar,
win rate, profit factor, expectancy and fees coincide with vectorbt's definitions when
vectorbt's ``year_freq`` is 365 days. They differ on the drawdown duration (vectorbt: the
deepest drawdown's peak to recovery; here: the longest time under water of any drawdown) and
on the trade count (vectorbt's *Total Trades* includes the open position; ``trade_count`` counts
closed round trips, as do the trade statistics of both).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_files import read_market_bars

from research.backtesting import backtest
from research.kernels.stats import equity_stats_nb
from research.metrics import compute_stats, periods_per_year
from research.types import Costs

HOUR = 3_600_000


def pandas_stats(
    equity: pd.Series,
    position: pd.Series,
    initial: float,
    timeframe_ms: int,
    trades: pd.DataFrame,
    bars=None,
) -> dict:
    """The same statistics, written with pandas idioms from their textbook definitions:
    calendar years from the first bar's open to the last close, gaps included; moments
    annualised by the bars present per calendar year."""
    bar = pd.Timedelta(milliseconds=timeframe_ms)
    elapsed = equity.index[-1] - equity.index[0] + bar
    years = elapsed / pd.Timedelta(days=365)
    per_year = len(equity) / years
    with_start = pd.concat([pd.Series([initial]), equity.reset_index(drop=True)])
    returns = with_start.pct_change().iloc[1:]
    steps = pd.Series(equity.index).diff().iloc[1:]
    gap_steps = steps[steps > bar]
    held_before_gap = position.reset_index(drop=True).shift(1).iloc[1:][steps > bar]
    peak = with_start.cummax().iloc[1:]
    drawdown = 1 - equity.reset_index(drop=True) / peak.reset_index(drop=True)
    # longest time under water: group bars by the peak they are below
    times = pd.Series(equity.index).reset_index(drop=True)
    new_peak = equity.reset_index(drop=True) >= peak.reset_index(drop=True)
    peak_time = (
        times.where(new_peak)
        .ffill()
        .fillna(times.iloc[0] - pd.Timedelta(milliseconds=timeframe_ms))
    )
    underwater = (times - peak_time).where(~new_peak, pd.Timedelta(0))
    closed = trades[trades["exit_reason"] != "open"]
    pnl = closed["pnl"]
    cagr = (equity.iloc[-1] / initial) ** (1 / years) - 1
    max_dd = drawdown.max()
    expected = {
        "elapsed_ms": elapsed / pd.Timedelta(milliseconds=1),
        "bars_per_year": per_year,
        "missing_bars": int(sum(step // bar - 1 for step in gap_steps)),
        "gaps": len(gap_steps),
        "longest_gap_ms": (
            (gap_steps.max() - bar) / pd.Timedelta(milliseconds=1) if len(gap_steps) else 0
        ),
        "gaps_held": int((held_before_gap != 0).sum()),
        "total_return": equity.iloc[-1] / initial - 1,
        "cagr": cagr,
        "annual_volatility": returns.std() * math.sqrt(per_year),
        "sharpe": returns.mean() / returns.std() * math.sqrt(per_year),
        "sortino": returns.mean()
        / math.sqrt((returns.clip(upper=0) ** 2).mean())
        * math.sqrt(per_year),
        "max_drawdown": max_dd,
        "calmar": cagr / max_dd,
        "max_drawdown_duration_ms": underwater.max() / pd.Timedelta(milliseconds=1),
        "trade_count": len(closed),
        "win_rate": (pnl > 0).mean(),
        "profit_factor": pnl[pnl > 0].sum() / -pnl[pnl < 0].sum(),
        "expectancy": pnl.mean(),
        "average_holding_ms": (closed["duration"].mean()) / pd.Timedelta(milliseconds=1),
        "exposure": (position != 0).mean(),
    }
    if bars is not None:  # bought at the first open, no costs
        holding = pd.Series(bars.close / bars.open[0])
        held_returns = pd.concat([pd.Series([1.0]), holding]).pct_change().iloc[1:]
        expected["buy_hold_return"] = holding.iloc[-1] - 1
        expected["buy_hold_sharpe"] = held_returns.mean() / held_returns.std() * math.sqrt(per_year)
        expected["buy_hold_max_drawdown"] = (1 - holding / holding.clip(lower=1.0).cummax()).max()
        expected["excess_return"] = expected["total_return"] - expected["buy_hold_return"]
    return expected


@pytest.mark.parametrize(
    "dataset, timeframe_ms",
    [
        ("binance_BTC-USDT_1h", HOUR),
        ("binance_ETH-USDT_4h", 4 * HOUR),
        ("bittrex_ETH-BTC_5m", 300_000),
    ],
)
@pytest.mark.parametrize("strategy", ["sma_cross", "ema_cross"])
def test_stats_match_pandas_on_real_backtests(dataset, timeframe_ms, strategy):
    from strategies.registry import get_strategy

    bars = read_market_bars(f"{dataset}.csv.gz", timeframe_ms)
    result = backtest(get_strategy(strategy), bars, costs=Costs(0.001, 2.0))
    assert result.stats["trade_count"] >= 3
    expected = pandas_stats(
        result.equity, result.position, 10_000.0, timeframe_ms, result.trades, bars
    )
    for key, value in expected.items():
        assert result.stats[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_hand_computed_drawdown_and_ratios():
    equity = np.array([100.0, 110.0, 105.0, 100.0, 111.0, 90.0])
    position = np.array([0.0, 1.0, 1.0, 0.0, 2.0, 2.0])
    ts = HOUR * np.arange(1, 7, dtype=np.int64)
    stats = compute_stats(
        equity,
        position,
        ts,
        HOUR,
        np.array([10.0, -5.0, 20.0]),
        np.array([HOUR, 2 * HOUR, 3 * HOUR]),
        100.0,
        1.5,
    )
    assert stats["max_drawdown"] == pytest.approx(1 - 90 / 111)
    assert stats["max_drawdown_duration_ms"] == 2 * HOUR  # peak at bar 1, below until bar 3
    assert stats["total_return"] == pytest.approx(-0.1)
    assert stats["cagr"] == pytest.approx(0.9 ** (8760 / 6) - 1)
    assert stats["win_rate"] == pytest.approx(2 / 3)
    assert stats["profit_factor"] == pytest.approx(30 / 5)
    assert stats["expectancy"] == pytest.approx(25 / 3)
    assert stats["average_holding_ms"] == 2 * HOUR
    assert stats["exposure"] == pytest.approx(4 / 6)
    assert stats["total_fees"] == 1.5 and stats["n_bars"] == 6
    assert periods_per_year(HOUR) == 8760


def test_duration_counts_from_the_initial_cash_when_the_first_bar_loses():
    ts = HOUR * np.arange(1, 4, dtype=np.int64)
    stats = compute_stats(
        np.array([99.0, 98.0, 97.0]), np.ones(3), ts, HOUR, np.empty(0), np.empty(0), 100.0
    )
    assert stats["max_drawdown_duration_ms"] == 3 * HOUR
    assert stats["sortino"] < 0 and stats["sharpe"] < 0


def test_degenerate_inputs_give_nan_not_errors():
    ts = HOUR * np.arange(1, 5, dtype=np.int64)
    flat = compute_stats(np.full(4, 100.0), np.zeros(4), ts, HOUR, np.empty(0), np.empty(0), 100.0)
    assert flat["total_return"] == 0 and flat["max_drawdown"] == 0
    assert flat["max_drawdown_duration_ms"] == 0
    for key in (
        "sharpe",
        "sortino",
        "calmar",
        "win_rate",
        "profit_factor",
        "expectancy",
        "average_holding_ms",
    ):
        assert math.isnan(flat[key]), key
    assert flat["trade_count"] == 0 and flat["exposure"] == 0
    rising = compute_stats(
        np.array([101.0, 102.0, 103.0, 104.0]),
        np.ones(4),
        ts,
        HOUR,
        np.array([4.0]),
        np.array([HOUR]),
        100.0,
    )
    assert rising["sortino"] == math.inf and rising["profit_factor"] == math.inf
    assert math.isnan(rising["calmar"])
    ruined = compute_stats(
        np.array([50.0, -5.0]), np.ones(2), ts[:2], HOUR, np.empty(0), np.empty(0), 100.0
    )
    assert ruined["cagr"] == -1.0 and ruined["max_drawdown"] == pytest.approx(1.05)
    one = compute_stats(np.array([100.0]), np.zeros(1), ts[:1], HOUR, np.empty(0), np.empty(0), 100)
    assert math.isnan(one["sharpe"]) and math.isnan(one["annual_volatility"])


def test_bad_inputs_raise():
    ts = HOUR * np.arange(1, 3, dtype=np.int64)
    with pytest.raises(ValueError, match="timeframe_ms must be positive"):
        compute_stats(np.ones(2), np.zeros(2), ts, 0, np.empty(0), np.empty(0), 1.0)
    with pytest.raises(ValueError, match="same length"):
        compute_stats(np.ones(2), np.zeros(3), ts, HOUR, np.empty(0), np.empty(0), 1.0)
    with pytest.raises(ValueError, match="at least one bar"):
        compute_stats(np.empty(0), np.empty(0), ts[:0], HOUR, np.empty(0), np.empty(0), 1.0)


# ----------------------------------------------------------------------------- equity_stats_nb


def reference_equity_stats(equity, ts, timeframe_ms, initial):
    """:func:`equity_stats_nb` bar by bar from its docstring: exact sums (``math.fsum``), a
    two-pass standard deviation, and the drawdown and time under water of every bar."""
    previous = [initial, *equity[:-1]]
    returns = [v / p - 1.0 for v, p in zip(equity, previous)]
    n = len(returns)
    mean = math.fsum(returns) / n
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in returns) / (n - 1)) if n > 1 else math.nan
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / n)
    peak, peak_ts, max_drawdown, underwater = initial, ts[0] - timeframe_ms, -math.inf, 0
    for value, t in zip(equity, ts):
        if value >= peak:
            peak, peak_ts = value, t
        else:  # a nan equity counts as under water
            underwater = max(underwater, t - peak_ts)
        if math.isnan(value):
            max_drawdown = math.nan
        elif not math.isnan(max_drawdown):
            max_drawdown = max(max_drawdown, 1.0 - value / peak)
    return mean, std, downside, max_drawdown, int(underwater)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.sampled_from([1, 2, 7, 2047, 2048, 2049, 5000]),
    drift=st.sampled_from([-1e-3, 0.0, 2e-4, 1e-3]),
    volatility=st.sampled_from([0.0, 1e-4, 1e-2]),
    nan_at=st.one_of(st.none(), st.floats(0.0, 1.0)),
    hold=st.sampled_from([1, 50, 300]),
)
def test_equity_stats_match_a_bar_by_bar_reference(seed, n, drift, volatility, nan_at, hold):
    """Blocks, lanes, the skipped blocks and parts of blocks of the drawdown pass and the
    one-pass variance give the textbook numbers: rising curves (a new peak in most blocks),
    falling ones (none), flat ones, curves held for stretches (flat at a peak, as an account
    out of the market), and a nan anywhere."""
    rng = np.random.default_rng(seed)
    steps = 1.0 + drift + volatility * rng.standard_normal(n // hold + 1)
    equity = 100.0 * np.repeat(np.cumprod(steps), hold)[:n]
    if nan_at is not None:
        equity[int(nan_at * (n - 1))] = math.nan
    ts = HOUR * np.arange(1, n + 1, dtype=np.int64)
    got = equity_stats_nb(equity, ts, HOUR, 100.0)
    expected = reference_equity_stats(equity.tolist(), ts.tolist(), HOUR, 100.0)
    for name, a, b in zip(("mean", "std", "downside"), got[:3], expected[:3]):
        if math.isnan(b):
            assert math.isnan(a), name
        else:
            # equal returns (volatility 0) have a std of pure rounding noise, ~1e-16 * mean
            assert a == pytest.approx(b, rel=1e-12, abs=1e-13 * abs(expected[0])), name
    if math.isnan(expected[3]):
        assert math.isnan(got[3])
    else:
        assert got[3] == expected[3]
    assert got[4] == expected[4]


def test_time_under_water_counts_from_the_last_bar_of_a_flat_peak():
    """An account out of the market sits at its peak for whole blocks (each bar a new peak of
    equal value); the time under water after it counts from its last bar, as bar by bar."""
    for flat in (64, 2048, 3000, 4100):
        equity = np.concatenate([np.full(flat, 120.0), np.full(100, 90.0), [130.0]])
        ts = HOUR * np.arange(1, len(equity) + 1, dtype=np.int64)
        got = equity_stats_nb(equity, ts, HOUR, 100.0)
        expected = reference_equity_stats(equity.tolist(), ts.tolist(), HOUR, 100.0)
        assert got[3:] == expected[3:] == (0.25, 100 * HOUR)


# ----------------------------------------------------------------------------- calendar time, gaps


def test_gaps_coverage_and_calendar_annualisation_by_hand():
    # bars at hours 1, 2, 3, then 7, 8 (3 missing), then 10 (1 missing): 6 bars over 10 hours
    ts = HOUR * np.array([1, 2, 3, 7, 8, 10], dtype=np.int64)
    equity = np.array([100.0, 101.0, 102.0, 99.0, 100.0, 103.0])
    position = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])  # held across the first gap only
    opens = np.array([10.0, 10.0, 10.5, 11.0, 10.0, 10.0])
    closes = np.array([10.0, 10.5, 11.0, 10.0, 10.0, 12.0])
    stats = compute_stats(
        equity, position, ts, HOUR, np.empty(0), np.empty(0), 100.0, open_=opens, close=closes
    )
    assert stats["elapsed_ms"] == 10 * HOUR  # first open (hour 0) to last close (hour 10)
    assert stats["missing_bars"] == 4 and stats["gaps"] == 2
    assert stats["coverage"] == pytest.approx(6 / 10)
    assert stats["longest_gap_ms"] == 3 * HOUR
    assert stats["gaps_held"] == 1
    years = 10 * HOUR / (365 * 86_400_000)
    assert stats["bars_per_year"] == pytest.approx(6 / years)
    assert stats["cagr"] == pytest.approx(1.03 ** (1 / years) - 1)
    returns = equity / np.concatenate([[100.0], equity[:-1]]) - 1
    assert stats["annual_volatility"] == pytest.approx(returns.std(ddof=1) * math.sqrt(6 / years))
    assert stats["buy_hold_return"] == pytest.approx(0.2)
    assert stats["buy_hold_max_drawdown"] == pytest.approx(1 - 10 / 11)
    assert stats["excess_return"] == pytest.approx(0.03 - 0.2)
    no_prices = compute_stats(equity, position, ts, HOUR, np.empty(0), np.empty(0), 100.0)
    assert math.isnan(no_prices["buy_hold_return"]) and math.isnan(no_prices["excess_return"])


def test_gaps_held_from_the_fills_equal_those_from_the_positions():
    """A backtest counts the gaps crossed in a position from its fills (it has no position
    series); on the gappy Bittrex sample that must equal the count from the positions."""
    from strategies.registry import get_strategy

    bars = read_market_bars("bittrex_ADA-BTC_1m.csv.gz")
    result = backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 50}, Costs(0.001))
    from_positions = compute_stats(
        result.equity.to_numpy(),
        result.position.to_numpy(),
        bars.ts,
        bars.timeframe_ms,
        np.empty(0),
        np.empty(0),
        10_000.0,
        open_=bars.open,
        close=bars.close,
    )
    assert result.stats["gaps"] == 1436 and result.stats["missing_bars"] == 237_753
    assert 0 < result.stats["gaps_held"] == from_positions["gaps_held"] < 1436
    for name in ("bars_per_year", "cagr", "sharpe", "buy_hold_sharpe", "coverage"):
        assert result.stats[name] == from_positions[name], name
