"""How a sweep's candidates are cut into batches, and how the bars reach the workers.

* :func:`grid_batches` groups the candidates in tiles of the grid, so that a worker computes
  each indicator of a batch about once, and :data:`BATCH_CACHE_ARRAYS` is what its memo keeps;
* :func:`worker_count` is the number of workers a joblib ``n_jobs`` stands for;
* :class:`shared_bars` ships the bars once to process workers (a memory-mapped temporary file)
  and :func:`plain_bars` turns the mapped arrays back into plain ones in a worker; threads and
  a Dask cluster get the bars as they are (scattered once for Dask).

Used by :mod:`research.validation.engine`, which runs the batches.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from research.types import Bars

MAX_BATCH_SIZE = 100
MEMMAP_MIN_BYTES = 1 << 20  # ship bars through a memory-mapped file from 1 MiB on
PROCESS_BACKENDS = ("loky", "multiprocessing")
# Values of the last swept parameter in one tile of the grid (see :func:`grid_batches`).
INNER_SIDE = 5
# Indicator results (bars-long float64 arrays) a worker keeps while running a batch: enough for
# one tile of a two-parameter grid (the tile's values of the inner parameter plus the current
# and previous value of the outer one), and a bound that does not depend on the batch size or
# the number of combinations.
BATCH_CACHE_ARRAYS = INNER_SIDE + 2
# Records of the fill table a worker reuses for a batch (4.5 MiB; a run with more fills grows
# its own)
BATCH_FILL_ROWS = 65_536


def grid_batches(candidates, grid: Mapping[str, Sequence[Any]], size: int) -> list[list[int]]:
    """Split candidate indices into batches of ``size`` that share indicator windows.

    A worker computes each distinct indicator once per batch
    (:func:`~research.indicators.indicator_cache`), so the candidates are grouped in tiles of
    the grid rather than in grid order, where a batch would pair one value of the first
    parameter with every value of the others. A tile is narrow in the last swept parameter
    (:data:`INNER_SIDE` values) and wide in the others (together about ``size /
    INNER_SIDE`` combinations), and runs in grid order within it: the indicators of the few
    inner values stay in the memo while each outer value's are computed once and used
    ``INNER_SIDE`` times. For an SMA cross in batches of 100 that is 25 moving averages per
    100 rows (a square 10 x 10 tile needs 20) with 7 in memory at a time (12 for the square).
    A batch holds the candidates of one tile only (a tile that constraints thin out makes a
    smaller batch). The order of the rows of the result does not depend on this.
    """
    indices = list(range(len(candidates)))
    swept = [name for name, values in grid.items() if len(values) > 1]
    if swept and size > 1:
        inner = min(INNER_SIDE, size) if len(swept) > 1 else size
        outer = max(1, round((size / inner) ** (1.0 / max(1, len(swept) - 1))))
        sides = [outer] * (len(swept) - 1) + [inner]
        try:
            positions = {name: {value: i for i, value in enumerate(grid[name])} for name in swept}
            coordinates = [
                tuple(positions[name][getattr(params, name)] for name in swept)
                for params in candidates
            ]
        except (KeyError, TypeError, AttributeError):  # unhashable or converted values
            coordinates = None
        if coordinates is not None:
            tile_of = {
                i: tuple(c // side for c, side in zip(coordinates[i], sides, strict=True))
                for i in indices
            }
            indices.sort(key=lambda i: (tile_of[i], coordinates[i]))
            # a batch never spans two tiles: a constraint such as fast < slow thins tiles out,
            # and a batch across two would hold more indicators than the memo keeps
            batches = []
            for _, members in itertools.groupby(indices, key=tile_of.__getitem__):
                members = list(members)
                batches += [members[start : start + size] for start in range(0, len(members), size)]
            return batches
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def worker_count(n_jobs: int) -> int:
    """The joblib workers ``n_jobs`` stands for (``-1``: one per core)."""
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


class shared_bars:
    """Context manager: ``bars`` backed by a memory-mapped temporary file for process backends.

    Workers then map the same pages instead of receiving a pickled copy per task.
    """

    def __init__(self, bars: Bars, backend: str | None):
        self.bars = bars
        self.folder: str | None = None
        self.use_memmap = backend in PROCESS_BACKENDS and bars.close.nbytes * 6 >= MEMMAP_MIN_BYTES

    def __enter__(self) -> Bars:
        if not self.use_memmap:
            return self.bars
        self.folder = tempfile.mkdtemp(prefix="candela-sweep-")
        arrays = {}
        for name in ("ts",) + Bars.COLUMNS:
            path = os.path.join(self.folder, f"{name}.npy")
            np.save(path, np.ascontiguousarray(getattr(self.bars, name)))
            # copy-on-write mapping: writeable arrays, so Numba reuses the signatures (and the
            # on-disk cache) of ordinary arrays instead of compiling read-only variants
            arrays[name] = np.load(path, mmap_mode="c")
        return Bars(
            arrays["ts"],
            arrays["open"],
            arrays["high"],
            arrays["low"],
            arrays["close"],
            arrays["volume"],
            self.bars.timeframe_ms,
        )

    def __exit__(self, *exc_info: object) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def plain_bars(bars: Bars) -> Bars:
    """Return ``bars`` with plain ndarray views (Numba does not type ``np.memmap``)."""
    if type(bars.close) is np.ndarray:
        return bars
    return Bars(
        *(np.asarray(getattr(bars, name)) for name in ("ts",) + Bars.COLUMNS), bars.timeframe_ms
    )
