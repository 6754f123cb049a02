"""Candela's statistics against an independent library, empyrical-reloaded, on real bars.

empyrical computes its figures from a series of periodic returns; we give it the bar returns of
the backtest's equity and the annualisation Candela uses, and compare every figure both define.

Convention differences, all of them (each is bridged explicitly below, nowhere silently):

* **Returns.** Candela's first bar return is measured from the initial cash
  (``equity[0] / initial_cash - 1``); empyrical takes whatever returns it is given, so it gets
  exactly these.
* **Annualisation.** empyrical scales by a fixed ``annualization`` (252 for daily data by
  default: trading days). Candela uses ``bars_per_year = n_bars / years`` with ``years`` the
  calendar time the bars span (first open to last close, gaps included, 365-day years): we pass
  that number as ``annualization``. With it, empyrical's CAGR (``ending_value ** (1 /
  (n / annualization)) - 1``) compounds over the same calendar years as Candela's.
* **Drawdown sign.** empyrical's ``max_drawdown`` is negative (``-0.25``); Candela's is the
  positive fraction (``0.25``). Both anchor the running peak at the starting value (the initial
  cash counts as a peak).
* **Calmar.** Both ``CAGR / |max drawdown|``; empyrical returns ``nan`` where Candela does too
  (no drawdown).
* **Sortino.** Both use the downside deviation ``sqrt(mean(min(r, 0) ** 2))`` over *all* bars
  with a required return of 0.
* **Buy and hold.** empyrical has no benchmark of its own: we give it the returns of
  ``close / open[0]`` (bought at the first open, no costs, Candela's definition).
* **Monthly and yearly returns.** ``empyrical.aggregate_returns`` compounds the returns of the
  bars in each calendar month (by the bars' close times, UTC): the same as Candela's month-end
  equity over the previous month-end's. empyrical skips months without a bar, where Candela
  shows ``nan``.
* **Rolling Sharpe.** ``empyrical.roll_sharpe_ratio`` uses a window of a fixed *number* of
  returns; Candela's uses a *calendar* window (``"7D"``). They coincide on bars without gaps,
  where a 7-day window of 1h bars is 168 returns; Candela shows a value only once a whole
  window lies inside the run.
* Not compared (empyrical does not define them): the trade statistics, exposure, coverage and
  gaps, the drawdown's duration.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from research.backtesting import backtest
from research.metrics import buy_and_hold
from research.tearsheet import monthly_returns, rolling_sharpe
from research.types import Costs
from strategies.registry import get_strategy

empyrical = pytest.importorskip("empyrical")

CASES = [  # (sample file, strategy, parameters): complete and gappy data, long and short
    ("binance_BTC-USDT_1h", "sma_cross", {"fast": 10, "slow": 50}),
    ("binance_ETH-USDT_4h", "ema_cross", {}),
    ("bittrex_ADA-BTC_1m", "sma_cross", {"fast": 10, "slow": 50}),
    ("bittrex_ADA-BTC_5m", "rsi_reversion", {}),
    ("binance_NEO-USDT_1h", "bollinger_breakout", {}),
]


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def run(request):
    name, strategy, params = request.param
    bars = read_market_bars(f"{name}.csv.gz")
    return backtest(get_strategy(strategy), bars, params, Costs(0.001, 2.0))


def bar_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    previous = np.concatenate([[initial_cash], equity[:-1]])
    return equity / previous - 1.0


def test_return_and_risk_figures_agree_with_empyrical(run):
    stats = run.stats
    returns = bar_returns(run.equity.to_numpy(), run.initial_cash)
    per_year = stats["bars_per_year"]
    assert stats["trade_count"] > 0
    expected = {
        "total_return": empyrical.cum_returns_final(returns),
        "cagr": empyrical.cagr(returns, annualization=per_year),
        "annual_volatility": empyrical.annual_volatility(returns, annualization=per_year),
        "sharpe": empyrical.sharpe_ratio(returns, annualization=per_year),
        "sortino": empyrical.sortino_ratio(returns, annualization=per_year),
        "max_drawdown": -empyrical.max_drawdown(returns),
        "calmar": empyrical.calmar_ratio(returns, annualization=per_year),
    }
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_buy_and_hold_agrees_with_empyrical(run):
    bars = run.bars
    holding = buy_and_hold(bars.open, bars.close, run.initial_cash)
    returns = bar_returns(holding, run.initial_cash)
    per_year = run.stats["bars_per_year"]
    assert run.stats["buy_hold_return"] == pytest.approx(
        bars.close[-1] / bars.open[0] - 1, rel=1e-12
    )
    assert run.stats["buy_hold_return"] == pytest.approx(
        empyrical.cum_returns_final(returns), rel=1e-9
    )
    assert run.stats["buy_hold_sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=per_year), rel=1e-9
    )
    assert run.stats["buy_hold_max_drawdown"] == pytest.approx(
        -empyrical.max_drawdown(returns), rel=1e-9
    )
    assert run.stats["excess_return"] == pytest.approx(
        run.stats["total_return"] - run.stats["buy_hold_return"], rel=1e-12
    )


def test_calendar_annualisation_is_the_bars_present_per_calendar_year(run):
    """On gappy bars the annualisation factor is below the nominal one; CAGR compounds over
    calendar time, so a -52 % run over half a year is about -77 % a year, not -100 %."""
    stats = run.stats
    elapsed_years = (run.ts[-1] - run.ts[0] + run.timeframe_ms) / (365 * 86_400_000)
    assert stats["bars_per_year"] == pytest.approx(len(run.ts) / elapsed_years, rel=1e-12)
    nominal = 365 * 86_400_000 / run.timeframe_ms
    if stats["missing_bars"] == 0:
        assert stats["bars_per_year"] == pytest.approx(nominal, rel=1e-12)
    else:
        assert stats["bars_per_year"] < nominal
    growth = stats["final_equity"] / stats["initial_cash"]
    assert stats["cagr"] == pytest.approx(growth ** (1 / elapsed_years) - 1, rel=1e-9)


def test_monthly_and_yearly_returns_agree_with_empyrical(run):
    returns = pd.Series(
        bar_returns(run.equity.to_numpy(), run.initial_cash),
        index=run.equity.index.tz_localize(None),
    )
    table = monthly_returns(run)
    theirs = empyrical.aggregate_returns(returns, "monthly")
    for (year, month), value in theirs.items():
        ours = table.loc[year].iloc[month - 1]
        assert ours == pytest.approx(value, rel=1e-9, abs=1e-12), (year, month)
    months = table.drop(columns="year").stack()
    assert len(months.dropna()) == len(theirs)  # empyrical skips the months without a bar
    yearly = empyrical.aggregate_returns(returns, "yearly")
    for year, value in yearly.items():
        assert table.loc[year, "year"] == pytest.approx(value, rel=1e-9, abs=1e-12), year


def test_rolling_sharpe_agrees_with_empyrical_on_bars_without_gaps():
    bars = read_market_bars("binance_NEO-USDT_1h.csv.gz")
    assert np.all(np.diff(bars.ts) == bars.timeframe_ms)
    result = backtest(get_strategy("sma_cross"), bars, {"fast": 5, "slow": 20}, Costs(0.001))
    ours = rolling_sharpe(result, "7D")["strategy"].to_numpy()
    returns = bar_returns(result.equity.to_numpy(), result.initial_cash)
    theirs = empyrical.roll_sharpe_ratio(
        returns, window=168, annualization=result.stats["bars_per_year"]
    )
    assert np.isnan(ours[:167]).all()  # no value before a whole window lies in the run
    np.testing.assert_allclose(ours[167:], np.asarray(theirs), rtol=1e-7, atol=1e-9)
    assert math.isfinite(ours[-1])
