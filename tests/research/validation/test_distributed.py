"""The Dask engine on a real LocalCluster with separate worker processes (nothing mocked).

Same rows as local processes, bit for bit; the bars reach each worker once however many tasks
it runs (each worker counts how often it unpickled them); an unreachable scheduler is one
clear error.
"""

from __future__ import annotations

import counted_bars
import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from research.sweeps import normalize_grid, valid_combinations
from research.types import Costs, RiskLimits
from research.validation.distributed import connect_cluster
from research.validation.engine import evaluate
from research.validation.moments import block_cuts
from strategies.registry import get_strategy

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

GRID = {"fast": range(3, 30, 3), "slow": range(20, 200, 20)}
SETTINGS = (Costs(fee_rate=0.0005), None, RiskLimits(), 10_000.0)


@pytest.fixture(scope="module")
def client():
    client = connect_cluster(None, n_workers=2)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


def test_dask_rows_equal_local_processes_and_bars_reach_each_worker_once(client):
    bars = counted_bars.CountedBars.of(read_market_bars("bittrex_XRP-BTC_5m.csv.gz"))
    spec = get_strategy("sma_cross")
    grid = normalize_grid(spec, GRID)
    candidates, _, _ = valid_combinations(spec, grid)
    cuts = block_cuts(len(bars), 16, 4)
    assert client.run(counted_bars.loads) == dict.fromkeys(client.run(counted_bars.loads), 0)
    on_dask = evaluate(
        spec,
        bars,
        candidates,
        SETTINGS,
        cuts,
        backend="dask",
        n_jobs=-1,
        batch_size=5,
        client=client,
        progress=False,
    )
    tasks = -(-len(candidates) // 5)
    assert tasks >= 10  # several tasks per worker
    # once per worker, not once per task (each worker ran several); on a loaded machine Dask
    # may hand a worker a second copy (a replica moved with a stolen task), never more
    loads = sorted(client.run(counted_bars.loads).values())
    assert len(loads) == 2 and all(1 <= n <= 2 for n in loads) and sum(loads) < tasks, loads
    local = evaluate(spec, bars, candidates, SETTINGS, cuts, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(pd.DataFrame(on_dask.stats), pd.DataFrame(local.stats))
    np.testing.assert_array_equal(on_dask.moments, local.moments)


def test_an_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(
        ValueError,
        match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"
        r".*dask scheduler",
    ):
        connect_cluster("tcp://127.0.0.1:9", timeout=1)


def test_walk_forward_on_dask_equals_local_processes(client):
    from research.validation.walkforward import walk_forward

    bars = read_market_bars("bittrex_XRP-BTC_5m.csv.gz")
    spec = get_strategy("sma_cross")
    grid = {"fast": [3, 6, 12], "slow": [20, 40, 80]}
    options = {"train": 1_500, "n_windows": 3, "min_trades": 3, "progress": False}
    on_dask = walk_forward(
        spec, bars, grid, SETTINGS[0], backend="dask", n_jobs=-1, client=client, **options
    )
    local = walk_forward(spec, bars, grid, SETTINGS[0], n_jobs=2, **options)
    pd.testing.assert_frame_equal(on_dask.windows, local.windows)
    pd.testing.assert_series_equal(on_dask.equity, local.equity)
