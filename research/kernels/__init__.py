"""Numba kernels: the execution function, the backtest loop, the exact window sums behind the
moving averages, and their helpers (pure core: numpy + numba).

Numba's on-disk cache (``cache=True``) is keyed on each function's own source file, but the
loops in :mod:`research.kernels.backtest` inline :func:`~research.kernels.execution.advance_nb`
(and the records of ``records.py``): after an edit of ``execution.py`` the cached loops would
silently keep the old execution code.
On import this package therefore compares a hash of its source files with the one recorded in
its ``__pycache__`` and, when they differ, drops the package's cached kernels so that they are
compiled afresh (in ``__pycache__``, or under ``NUMBA_CACHE_DIR`` when that is set). (So a
kernel that other modules' compiled code calls belongs in this package;
:mod:`research.indicators` calls :mod:`research.kernels.window_sums` from Python only.)

Before any kernel loads, :func:`~research.kernels.prepare.load_kernels_lightly` lets the cached
kernels load without Numba's whole compiler initialisation, and
:func:`~research.kernels.prepare.defer_blas_check` keeps that initialisation, when something is
compiled, from importing ``scipy.linalg`` for a BLAS check no Candela kernel needs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from research.kernels.prepare import defer_blas_check, load_kernels_lightly


def kernel_cache_dir(package: Path = Path(__file__).resolve().parent) -> Path:
    """Where Numba keeps ``package``'s cached kernels: its ``__pycache__``, or the folder Numba
    derives for it under ``NUMBA_CACHE_DIR`` when that is set."""
    from numba.core import config
    from numba.core.caching import UserProvidedCacheLocator

    if config.CACHE_DIR:
        subpath = UserProvidedCacheLocator.get_suitable_cache_subpath(str(package / "x.py"))
        return Path(config.CACHE_DIR) / subpath
    return package / "__pycache__"


def drop_stale_numba_cache(package: Path = Path(__file__).resolve().parent) -> bool:
    """Delete ``package``'s cached Numba kernels (:func:`kernel_cache_dir`) if its sources
    changed; return whether it did."""
    cache = kernel_cache_dir(package)
    sources = sorted(package.glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    stamp = cache / "kernels-sources.sha256"
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            path.unlink(missing_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only installation: keep whatever cache there is
        return False
    return True


defer_blas_check()
load_kernels_lightly()
drop_stale_numba_cache()
