"""``candela warmup`` compiles, once and with progress, everything a first backtest, sweep or
paper-trading run needs; the CLI says so when it has to compile instead of staying silent."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import pytest

from candela.cli.commands.warmup import compile_notice, synthetic_bars, warmup_steps

# A fresh process that runs what a user runs first (on bars as research.load_bars gives them):
# every strategy's default backtest, then every combination of stops and risk limits, a start
# date, the runner's step and replay span, and a sweep; it reports, per kernel, how many signatures it had to compile
# instead of loading them from the cache, and how many it loaded.
FIRST_RUN = r"""
import gc, json, sys
import research
from research.kernels.execution import step
from research.kernels.records import make_config, new_fills, new_state
from research.types import Costs, RiskLimits, Stops
from strategies.registry import all_specs

bars = research.load_bars(sys.argv[1], "binance", "BTC/USDT", "1h")
for spec in all_specs().values():
    result = research.backtest(spec, bars)  # the default: the strategy's stops, no limits
    result.stats, result.trades, result.fills, result.position, result.cash, result.equity
    for stops in (Stops(), Stops(stop_loss=0.03, trailing_stop=0.05)):
        for risk in (RiskLimits(), RiskLimits(max_drawdown=0.6)):
            result = research.backtest(spec, bars, None, Costs(0.001, 2.0), stops=stops,
                                       risk=risk)
            result.trades, result.fills, result.position
    research.backtest(spec, bars, start=len(bars) // 2).trades  # a bar index
config = make_config(Costs(0.001), Stops(), RiskLimits())
step(new_state(1000.0), config, int(bars.ts[0]), 1.0, 1.0, 1.0, 1.0, 1.0, new_fills(3))
import numpy as np
from research.kernels.execution import step_span
from research.kernels.records import State
target = np.ones(4)
step_span(new_state(1000.0), config, bars.ts[:4], bars.open[:4], bars.high[:4], bars.low[:4],
          bars.close[:4], target, np.zeros((4, len(State._fields))), np.zeros(4, dtype=np.int64),
          new_fills(12))  # the runner's replay
research.sweep(all_specs()["sma_cross"], bars, {"fast": [5, 8], "slow": [20, 30]},
               Costs(0.001), progress=False)  # rows without stops or limits: the fused loop

from numba.core.dispatcher import Dispatcher
misses, hits = {}, {}
for item in gc.get_objects():
    if isinstance(item, Dispatcher) and item.py_func.__module__.split(".")[0] == "research":
        for counts, table in ((item.stats.cache_misses, misses), (item.stats.cache_hits, hits)):
            if sum(counts.values()):
                table[item.py_func.__qualname__] = sum(counts.values())
# loading cached kernels needs Numba's runtime, not its compiler's registries (kernels.prepare)
registries = "numba.np.arraymath" in sys.modules
print(json.dumps({"misses": misses, "hits": hits, "registries": registries}))
"""


def child_environment(cache_dir) -> dict:
    environment = dict(os.environ)
    environment["NUMBA_CACHE_DIR"] = str(cache_dir)
    return environment


@pytest.mark.slow
def test_after_warmup_a_first_run_compiles_nothing(tmp_path, repo_root):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    warm = subprocess.run(
        [sys.executable, "-m", "candela.cli", "warmup"],
        capture_output=True,
        text=True,
        env=child_environment(cache),
        timeout=900,
        check=False,
    )
    assert warm.returncode == 0, warm.stderr[-2000:]
    lines = warm.stdout.splitlines()
    steps = len(warmup_steps())
    assert lines[0].startswith(f"compiling Candela's kernels for this machine ({steps} steps")
    assert [line.split("]")[0].strip() for line in lines[1:-1]] == [
        f"[{number}/{steps}" for number in range(1, steps + 1)
    ]
    assert all(line.endswith(" s") for line in lines[1:])
    assert lines[-1].startswith("kernels ready in ")
    assert any(path.suffix == ".nbc" for path in cache.rglob("*"))

    database = f"sqlite:///{tmp_path / 'first.db'}"
    from candela.core.db import connect, upgrade
    from data_pipeline.importer import import_candles

    engine = connect(database, require_schema=False)
    upgrade(engine)
    import_candles(
        engine,
        repo_root / "data" / "sample" / "ohlcv" / "binance_BTC-USDT_1h.csv.gz",
        "binance",
        "BTC/USDT",
        "1h",
    )
    engine.dispose()
    first = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, database],
        capture_output=True,
        text=True,
        env=child_environment(cache),
        timeout=600,
        check=False,
        cwd=repo_root,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["misses"] == {}  # nothing was compiled: everything came from the cache ...
    assert report["registries"] is False  # ... without initialising Numba's compiler ...
    # ... and that includes the loop in each of its four variants (stops on/off x limits on/off),
    # the statistics, the trade tables, the moving averages and the runner's step
    assert report["hits"]["simulate_span_nb"] == 4
    assert {
        "equity_stats_nb",
        "gaps_nb",
        "closed_trade_arrays_nb",
        "round_trips_nb",
        "account_from_fills_nb",
        "fixed_point_sums_nb",
        "step_nb",
        "step_span_nb",
        "sweep_row_nb",
        "cscv_nb",
    } <= set(report["hits"])

    again = subprocess.run(
        [sys.executable, "-m", "candela.cli", "warmup", "--quiet"],
        capture_output=True,
        text=True,
        env=child_environment(cache),
        timeout=600,
        check=False,
    )
    assert again.returncode == 0 and again.stdout.startswith("kernels ready in ")
    assert again.stdout.count("\n") == 1


def test_the_synthetic_bars_have_the_types_load_bars_gives():
    bars = synthetic_bars(500)
    assert len(bars) == 500 and bars.timeframe_ms == 3_600_000
    for name in ("ts", "open", "high", "low", "close", "volume"):
        array = getattr(bars, name)
        assert array.flags.writeable and array.flags.c_contiguous, name
    assert (bars.high >= bars.open).all() and (bars.high >= bars.close).all()
    assert (bars.low <= bars.open).all() and (bars.low <= bars.close).all()
    assert (bars.low > 0).all()


class _Stream(io.StringIO):
    """A stream that tells when something was written to it."""

    def __init__(self):
        super().__init__()
        self.written = threading.Event()

    def write(self, text):
        self.written.set()
        return super().write(text)


def test_a_long_compilation_is_announced_and_its_end_reported():
    stream = _Stream()
    with compile_notice(after=0.01, stream=stream):
        assert stream.written.wait(timeout=30)  # still inside the block when the notice shows
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("compiling Candela's kernels") and "candela warmup" in lines[0]
    assert lines[1].startswith("... done in ")


def test_a_quick_block_prints_nothing():
    stream = _Stream()
    with compile_notice(after=600.0, stream=stream):
        pass
    assert stream.getvalue() == ""
