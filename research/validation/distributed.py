"""Run sweeps, searches and walk-forward analyses on a Dask cluster (the ``distributed`` extra).

The same joblib code runs there as on local processes, through joblib's Dask backend: every
function that takes ``backend=`` and ``n_jobs=`` accepts ``backend="dask"`` (and ``client=``
where the bars go with the tasks), and gives the same rows as ``backend="loky"``::

    from research.validation.distributed import connect_cluster

    client = connect_cluster("tcp://scheduler.example:8786")   # or None: a local cluster
    result = research.sweep(spec, bars, grid, backend="dask", n_jobs=-1, client=client)

The bars are scattered to every worker once (``client.scatter(bars, broadcast=True)``); a task
carries only its parameter sets and returns only its rows (stats and a few hundred moments),
so a worker holds the bars once plus one batch's indicators and buffers, whatever the grid's
size. Start a cluster with ``dask scheduler`` on one machine and ``dask worker
tcp://HOST:8786 --nworkers N --nthreads 1`` on each (one thread per worker process: the
backtests hold the GIL).
"""

from __future__ import annotations

from typing import Any

DEFAULT_TIMEOUT_S = 10


def connect_cluster(
    address: str | None = None, *, n_workers: int = 2, timeout: float = DEFAULT_TIMEOUT_S
) -> Any:
    """A ``distributed.Client`` for the scheduler at ``address`` (e.g. ``tcp://host:8786``);
    ``None`` starts a local cluster of ``n_workers`` worker processes with one thread each.

    Raises
    ------
    ValueError
        If the extra is not installed, or the scheduler cannot be reached within ``timeout``
        seconds (the message names the address and how to start a scheduler).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(
            "the Dask engine needs the distributed extra: pip install 'candela[distributed]'"
        ) from None
    if address is None:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        return Client(cluster)
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
            f"({exc.__class__.__name__}): start one with 'dask scheduler' and "
            "workers with 'dask worker ADDRESS', or check the address "
            "(tcp://HOST:8786)"
        ) from None
