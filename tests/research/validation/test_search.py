"""Optuna search with its study in the project's database (SQLite and PostgreSQL): a search
killed with SIGKILL resumes its study without recomputing a stored trial; trials, timeout and
pruning; the trials count for the deflated Sharpe ratio; Candela's own schema is untouched."""

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
import pytest
import sqlalchemy as sa
from market_files import read_market_bars

from candela.core.db import connect, current_revision, head_revision
from candela.core.schema import sweep_rows
from research.types import Bars, Costs
from research.validation.search import search, search_space
from strategies.registry import get_strategy

optuna = pytest.importorskip("optuna")

SPACE = {"fast": range(2, 12), "slow": range(20, 80, 10)}

RUN = """
import sys
import numpy as np
sys.path.insert(0, {folder!r})
from logged_strategy import logged_cross
from research.types import Bars, Costs
from research.validation.search import search
data = np.load({bars!r})
bars = Bars(*(data[name] for name in ("ts", "open", "high", "low", "close", "volume")),
            int(data["timeframe_ms"]))
search(logged_cross, bars, {space!r}, Costs(fee_rate=0.0005), n_trials=25, pruning=False,
       database_url={url!r}, study_name="resumable", progress=False, min_trades=0)
"""


@pytest.fixture
def logged(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    folder = tmp_path / "strategies"
    folder.mkdir()
    (folder / "logged_strategy.py").write_text(logged_cross_source.source(str(log), 0.1))
    monkeypatch.syspath_prepend(str(folder))
    from logged_strategy import logged_cross

    yield logged_cross, log, folder
    sys.modules.pop("logged_strategy", None)


def stored(url: str) -> set[str]:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            texts = connection.execute(sa.select(sweep_rows.c.params_json)).scalars().all()
    finally:
        engine.dispose()
    return {f"{p['fast']},{p['slow']}" for p in map(json.loads, texts)}


@pytest.mark.slow
def test_a_killed_search_resumes_its_study_and_recomputes_no_stored_trial(
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
        folder=str(folder),
        bars=str(saved),
        space={"fast": (2, 11), "slow": [20, 40, 60]},
        url=database_url,
    )
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=repo_root)
    deadline = time.monotonic() + 180
    try:
        while len(stored(database_url)) < 5:
            assert child.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search stored nothing in 3 minutes"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    at_kill = stored(database_url)
    log.unlink()

    result = search(
        spec,
        bars,
        {"fast": (2, 11), "slow": [20, 40, 60]},
        Costs(fee_rate=0.0005),
        n_trials=25,
        pruning=False,
        database_url=database_url,
        study_name="resumable",
        progress=False,
        min_trades=0,
    )
    recomputed = log.read_text().splitlines() if log.exists() else []
    assert not set(recomputed) & at_kill  # a stored trial is never computed again
    assert len(recomputed) == len(set(recomputed))
    assert result.n_complete + result.n_pruned >= 25
    numbers = result.frame["number"]
    assert numbers.is_unique and numbers.min() == 0  # the trials before the kill are there
    assert result.overfitting.n_trials == int((result.frame["state"] == "complete").sum())
    engine = connect(database_url)
    try:
        assert current_revision(engine) == head_revision()  # Candela's schema untouched
        if engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                tables = (
                    connection.execute(
                        sa.text(
                            "SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = 'optuna'"
                        )
                    )
                    .scalars()
                    .all()
                )
            assert {"studies", "trials", "alembic_version"} <= set(tables)
    finally:
        engine.dispose()


def test_pruning_timeout_and_the_trials_of_the_dsr(database_url):
    bars = read_market_bars("bittrex_XRP-BTC_5m.csv.gz")
    spec = get_strategy("sma_cross")
    result = search(
        spec,
        bars,
        SPACE,
        Costs(fee_rate=0.0005),
        n_trials=40,
        database_url=database_url,
        progress=False,
        min_trades=5,
    )
    assert result.n_complete + result.n_pruned >= 40
    assert result.n_pruned > 0  # constraint breaches, and the median pruner at work
    complete = result.frame[result.frame["state"] == "complete"]
    assert result.overfitting.n_trials == len(complete) == len(result.moments)
    assert result.best["trade_count"] >= 5
    assert result.best["sharpe"] == complete[complete["trade_count"] >= 5]["sharpe"].max()
    started = time.monotonic()
    more = search(
        spec,
        bars,
        SPACE,
        Costs(fee_rate=0.0005),
        n_trials=10_000,
        timeout=2.0,
        database_url=database_url,
        progress=False,
        study_name="timed",
    )
    assert time.monotonic() - started < 60
    assert 0 < more.n_complete + more.n_pruned < 10_000


def test_search_spaces_and_their_errors():
    spec = get_strategy("sma_cross")
    space = search_space(spec, {"fast": range(2, 20, 2), "slow": (20, 200)})
    assert (space["fast"].low, space["fast"].high, space["fast"].step) == (2, 18, 2)
    assert (space["slow"].low, space["slow"].high) == (20, 200)
    with pytest.raises(ValueError, match="did you mean 'fast'"):
        search_space(spec, {"fats": range(2, 5)})
    with pytest.raises(ValueError, match="low must be below high"):
        search_space(spec, {"fast": (10, 2)})


def test_an_in_memory_database_cannot_keep_a_study():
    from research.validation.study import StudyError, study_storage

    engine = sa.create_engine("sqlite://")
    with pytest.raises(StudyError, match="in-memory SQLite database cannot keep a study"):
        study_storage(engine)
