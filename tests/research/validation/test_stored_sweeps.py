"""Stored sweeps on SQLite and PostgreSQL: a sweep killed with SIGKILL resumes without
recomputing a stored row, an identical sweep computes nothing, past sweeps list and load.

The strategy is a real SMA cross that also appends its parameters to a log file each time it
runs on bars (and sleeps a little, so that the sweep can be killed half-way): the log says,
from outside Candela, which rows were computed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import logged_cross_source
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from market_files import read_market_bars

from candela.core.db import connect
from candela.core.schema import sweep_rows
from research.sweeps import sweep
from research.types import Bars, Costs
from research.validation.store import list_sweeps, load_sweep

GRID = {"fast": [2, 4, 6, 8, 10], "slow": [20, 30, 40, 50, 60, 70]}  # 30 combinations
COSTS = Costs(fee_rate=0.0005)
MARKET = {"exchange": "bittrex", "symbol": "XRP/BTC", "timeframe": "5m"}

RUN = """
import sys
import numpy as np
sys.path.insert(0, {folder!r})
from logged_strategy import logged_cross
from research.sweeps import sweep
from research.types import Bars, Costs
data = np.load({bars!r})
bars = Bars(*(data[name] for name in ("ts", "open", "high", "low", "close", "volume")),
            int(data["timeframe_ms"]))
sweep(logged_cross, bars, {grid!r}, Costs(fee_rate=0.0005), store={url!r}, market={market!r},
      batch_size=2, progress=False, keep_best=0)
"""


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """(the logged strategy, its log file, the folder it lives in)."""
    log = tmp_path / "runs.log"
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "logged_strategy.py").write_text(logged_cross_source.source(str(log), 0.05))
    monkeypatch.syspath_prepend(str(folder))
    from logged_strategy import logged_cross

    yield logged_cross, log, folder
    sys.modules.pop("logged_strategy", None)


def runs(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def stored_rows(url: str) -> int:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(sweep_rows)).scalar()
    finally:
        engine.dispose()


def stored_params(url: str) -> set[str]:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            texts = connection.execute(sa.select(sweep_rows.c.params_json)).scalars().all()
    finally:
        engine.dispose()
    return {f"{p['fast']},{p['slow']}" for p in map(json.loads, texts)}


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_recomputing_and_an_identical_one_computes_nothing(
    database_url, logged, tmp_path, repo_root
):
    spec, log, folder = logged
    bars = read_market_bars("bittrex_XRP-BTC_5m.csv.gz")
    saved = tmp_path / "bars.npz"
    np.savez(
        saved,
        timeframe_ms=bars.timeframe_ms,
        **{name: getattr(bars, name) for name in ("ts",) + Bars.COLUMNS},
    )
    script = RUN.format(
        folder=str(folder), bars=str(saved), grid=GRID, url=database_url, market=MARKET
    )
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=repo_root)
    deadline = time.monotonic() + 120
    try:
        while stored_rows(database_url) < 6:
            assert child.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the sweep stored nothing in 2 minutes"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    stored = stored_rows(database_url)
    assert 6 <= stored < 30
    at_kill = stored_params(database_url)
    assert at_kill <= set(runs(log))  # a row is stored only once computed
    log.unlink()

    resumed = sweep(spec, bars, GRID, COSTS, store=database_url, keep_best=0, progress=False)
    recomputed = runs(log)
    assert len(recomputed) == 30 - stored  # every missing row once
    assert not set(recomputed) & at_kill  # no stored row again
    assert stored_rows(database_url) == 30

    log.unlink()
    fresh = sweep(spec, bars, GRID, COSTS, keep_best=0, progress=False)  # no store: all 30
    assert len(runs(log)) == 30
    pd.testing.assert_frame_equal(resumed.frame, fresh.frame)
    assert resumed.overfitting.dsr == fresh.overfitting.dsr
    assert resumed.overfitting.pbo.pbo == fresh.overfitting.pbo.pbo

    log.unlink()
    again = sweep(spec, bars, GRID, COSTS, store=database_url, keep_best=0, progress=False)
    assert runs(log) == []  # an identical sweep computes nothing
    pd.testing.assert_frame_equal(again.frame, fresh.frame)
    assert again.sweep_id == resumed.sweep_id

    engine = connect(database_url)
    try:
        listed = list_sweeps(engine)
        record = listed.set_index("sweep_id").loc[again.sweep_id]
        assert (record["status"], record["n_done"], record["exchange"]) == (
            "complete",
            30,
            "bittrex",
        )
        assert record["dsr"] == pytest.approx(fresh.overfitting.dsr)
        loaded = load_sweep(engine, again.sweep_id[:8])
    finally:
        engine.dispose()
    columns = ["fast", "slow", "sharpe", "total_return", "trade_count"]
    pd.testing.assert_frame_equal(loaded.frame[columns], fresh.frame[columns])
