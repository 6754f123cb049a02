"""The benchmarks' agreement checks: the engines of ``bench.engines`` compute the same closed
trades and final equity as Candela, and ``bench.gate`` refuses to time them when they do not.

Tolerance: the closed trade counts are equal and the final equities within 1e-9 relative
(``bench.gate.RTOL``), not bit for bit: vectorbt's stop level is Candela's expressed as a
fraction of vectorbt's own trailing price (``curr_price * (1 - (1 - level / curr_price))``
rounds to a neighbouring float), and each engine sizes and charges fees in its own order of
floating-point operations, so equities drift apart by a few units in the last place per trade
(observed: 1e-16 to 1e-13 relative), far below what a different fill would make (1e-4 and up).

On the synthetic series every engine uses its own indicators, as in the benchmarks. On real
data (the repository's candles) the peers get Candela's conditions
(``bench.engines.candela_conditions``): flat prices there put a close exactly on a moving
average, which the engines' rolling sums round to either side (coinbase BTC-USD 1m, bars
5552-5557), an indicator difference that is not what these tests are about. The real data
has what the synthetic series lacks: opens away from the previous close (gaps).
"""

from __future__ import annotations

import functools
import importlib.util

import pytest
from availability import unavailable
from market_files import market_file, read_ohlcv_csv

from bench.engines import BollingerTrail, Outcome, SmaCross, candela_conditions, prepare
from bench.gate import Disagreement, agree, gated_report, measure
from bench.synthetic import synthetic_bars

SYNTHETIC_BARS = 30_000


@functools.cache
def synthetic():
    return synthetic_bars(SYNTHETIC_BARS)


@functools.cache
def real(name: str):
    return read_ohlcv_csv(market_file(f"ohlcv/{name}.csv.gz"))


def require(engine: str) -> None:
    if importlib.util.find_spec(engine) is None:
        unavailable(f"{engine} is not installed (the oracles extra)")


def trailing_exits(workload: BollingerTrail, bars) -> tuple[int, int]:
    """Candela's trailing-stop exits on ``bars``, and how many of them on their entry bar."""
    from bench.engines import bollinger_hold_spec
    from research.backtesting import backtest
    from research.types import Costs, Stops

    fills = backtest(
        bollinger_hold_spec(),
        bars,
        {"window": workload.window, "num_std": workload.num_std},
        Costs(fee_rate=workload.fee),
        stops=Stops(trailing_stop=workload.trailing_stop),
        initial_cash=workload.cash,
    ).fills
    stops = fills["reason"].to_numpy() == "trailing_stop"
    bar = fills["bar_ts"].to_numpy()
    same_bar = stops[1:] & (bar[1:] == bar[:-1])
    return int(stops.sum()), int(same_bar.sum())


@pytest.mark.parametrize("engine", ["vectorbt", "raptorbt"])
@pytest.mark.parametrize("workload", [SmaCross(), BollingerTrail()], ids=["sma", "stop"])
def test_engines_agree_on_the_synthetic_series(engine, workload):
    require(engine)
    bars = synthetic()
    if isinstance(workload, BollingerTrail):
        stops, on_entry_bar = trailing_exits(workload, bars)
        assert stops >= 50  # the stop decides many exits, so its convention is exercised
        assert on_entry_bar == 0  # vectorbt cannot stop on the entry bar (bench.engines)
    ours = prepare("candela", workload, bars)()
    theirs = prepare(engine, workload, bars)()
    assert ours.trades > 100
    assert agree(ours, theirs) is None


def test_backtesting_py_agrees_on_the_sma_cross():
    require("backtesting")
    bars = synthetic_bars(5_000)
    ours = prepare("candela", SmaCross(), bars)()
    assert agree(ours, prepare("backtesting", SmaCross(), bars)()) is None
    assert ours.trades > 50


REAL = ["binance_NEO-BTC_1h", "bittrex_XRP-BTC_5m", "coinbase_BTC-USD_1m", "bittrex_XVG-BTC_1d"]


@pytest.mark.parametrize("engine", ["vectorbt", "raptorbt"])
@pytest.mark.parametrize("dataset", REAL)
def test_sma_cross_agrees_on_real_data(engine, dataset):
    require(engine)
    bars = real(dataset)
    workload = SmaCross()
    ours = prepare("candela", workload, bars)()
    theirs = prepare(engine, workload, bars, candela_conditions(workload, bars))()
    assert ours.trades >= 10
    assert agree(ours, theirs) is None


# (dataset, trailing stop): trails at which Candela's stop fires on real data. For raptorbt
# 0.5 %, with entry-bar stops; for vectorbt a trail that no entry bar reaches (it cannot stop
# on the entry bar). bittrex XRP-BTC 5m is left out for raptorbt: see the next test.
RAPTORBT_STOPS = [("binance_NEO-BTC_1h", 0.005), ("coinbase_BTC-USD_1m", 0.005)]
RAPTORBT_STOPS += [("bittrex_XVG-BTC_1d", 0.005)]
VECTORBT_STOPS = [("binance_NEO-BTC_1h", 0.05)]


@pytest.mark.parametrize(
    ("engine", "dataset", "trail"),
    [("raptorbt", *case) for case in RAPTORBT_STOPS]
    + [("vectorbt", *case) for case in VECTORBT_STOPS],
)
def test_trailing_stop_agrees_on_real_data(engine, dataset, trail):
    require(engine)
    bars = real(dataset)
    workload = BollingerTrail(trailing_stop=trail)
    stops, on_entry_bar = trailing_exits(workload, bars)
    assert stops >= 3
    if engine == "vectorbt":
        assert on_entry_bar == 0
    ours = prepare("candela", workload, bars)()
    theirs = prepare(engine, workload, bars, candela_conditions(workload, bars))()
    assert agree(ours, theirs) is None


def test_raptorbt_trails_without_the_current_open():
    """A written-down difference: raptorbt's trailing extreme leaves out the current bar's
    open, so a bar that opens above every high since the entry and falls to Candela's level
    within the bar stops Candela out there, raptorbt a bar later (bittrex XRP-BTC 5m, bar
    5605). The gate must see it."""
    require("raptorbt")
    bars = real("bittrex_XRP-BTC_5m")
    workload = BollingerTrail(trailing_stop=0.005)
    conditions = candela_conditions(workload, bars)
    why = agree(
        prepare("candela", workload, bars)(), prepare("raptorbt", workload, bars, conditions)()
    )
    assert why is not None and "final equity" in why


class Counted:
    """A prepared run that counts its calls."""

    def __init__(self, run):
        self.run, self.calls = run, 0

    def __call__(self) -> Outcome:
        self.calls += 1
        return self.run()


def stopped_on_entry_bar_runs():
    """Candela and vectorbt on real data where Candela's stop fires on entry bars, which
    vectorbt cannot do (bench.engines, point 3): a real disagreement."""
    bars = real("binance_NEO-BTC_1h")
    workload = BollingerTrail(trailing_stop=0.005)
    assert trailing_exits(workload, bars)[1] > 0
    conditions = candela_conditions(workload, bars)
    return {
        "candela": Counted(prepare("candela", workload, bars)),
        "vectorbt": Counted(prepare("vectorbt", workload, bars, conditions)),
    }


def test_gate_refuses_to_time_disagreeing_engines():
    require("vectorbt")
    runs = stopped_on_entry_bar_runs()
    with pytest.raises(Disagreement, match="vectorbt disagrees with candela"):
        measure(runs, repeats=3)
    assert [run.calls for run in runs.values()] == [1, 1]  # the first calls only: none timed


def test_gated_report_prints_no_timing_and_exits_non_zero(capsys):
    require("vectorbt")
    with pytest.raises(SystemExit) as exit_info:
        gated_report(stopped_on_entry_bar_runs(), repeats=3)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "engines disagree" in captured.err and "vectorbt" in captured.err


def test_gate_times_agreeing_engines_interleaved():
    order = []

    def run(name):
        def call():
            order.append(name)
            return Outcome(3, 100.0)

        return call

    measurement = measure({"a": run("a"), "b": run("b")}, repeats=3)
    assert order == ["a", "b"] * 4  # first calls, then interleaved
    assert [len(timing.wall) for timing in measurement.timings.values()] == [3, 3]


def test_gate_refuses_an_engine_that_changes_its_result():
    outcomes = iter([Outcome(3, 100.0), Outcome(3, 100.0), Outcome(3, 100.0), Outcome(4, 99.0)])
    with pytest.raises(Disagreement, match="timed call"):
        measure({"a": lambda: Outcome(3, 100.0), "b": lambda: next(outcomes)}, repeats=3)


@pytest.mark.parametrize(
    ("other", "agrees"),
    [
        (Outcome(10, 1000.0 * (1 + 5e-10)), True),
        (Outcome(10, 1000.0 * (1 + 2e-9)), False),
        (Outcome(11, 1000.0), False),
        (Outcome(10, float("nan")), False),
        (Outcome(10, 1000.0, unmatched=1), False),
    ],
)
def test_agree_tolerance(other, agrees):
    assert (agree(Outcome(10, 1000.0), other) is None) is agrees


def test_sweep_rows_agree_with_vectorbt():
    require("vectorbt")
    from bench.sweep_speed import sweep_agreement

    problems, checked = sweep_agreement(4, bars=synthetic_bars(20_000))
    assert checked == 4
    assert problems == []


def test_sweep_benchmark_times_nothing_when_a_row_disagrees(monkeypatch, capsys):
    import bench.sweep_speed as sweep_speed

    def disagreeing(check):
        return ["fast=5 slow=20: vectorbt closed trades 3 vs 4"], check

    def timed(*args):
        raise AssertionError("a child was timed despite the disagreement")

    monkeypatch.setattr(sweep_speed, "sweep_agreement", disagreeing)
    monkeypatch.setattr(sweep_speed, "measure", timed)
    with pytest.raises(SystemExit) as exit_info:
        sweep_speed.main(["--sample", "4"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "fast=5 slow=20" in captured.err
    assert "combinations " not in captured.out and " s " not in captured.out
