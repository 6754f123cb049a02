"""Numba's one-time initialisation, on demand: :func:`prepare_numba`.

The first kernel call of a process, even of a kernel whose machine code is cached on disk,
first initialises Numba's CPU target: it imports Numba's implementation registries (and, for
Numba's linear-algebra check, ``scipy.linalg``), installs them and starts Numba's runtime.
That is about 0.6 s of CPU on the reference machine, several times what loading the cached
kernels of a backtest costs, and it does not depend on the kernels. :func:`prepare_numba` does
that work now, so that a caller with time to spare (an idle notebook, see
:mod:`research.notebook_start`) can take it off the first kernel call.
:func:`defer_blas_check` (run when :mod:`research.kernels` is imported) takes the
``scipy.linalg`` import out of that work altogether.
"""

from __future__ import annotations

import sys


def prepare_numba() -> None:
    """Initialise Numba's CPU target, as loading or compiling the first kernel would.

    Runs under Numba's compiler lock: a kernel called meanwhile from another thread waits for
    it, as it would wait for the same work done in its own thread. Compiles nothing and loads no
    kernel; calling it again costs little (Numba refreshes its context before every kernel it
    loads anyway).
    """
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock:
        cpu_target.target_context.refresh()


def defer_blas_check() -> None:
    """Keep Numba's first kernel load from importing ``scipy.linalg`` (0.2-0.6 s) for nothing.

    When Numba initialises its CPU target it imports ``numba.np.arraymath``, whose module body
    checks that a BLAS is available by importing ``scipy.linalg.cython_blas``, and records the
    answer for ``np.dot`` and friends. No Candela kernel uses a BLAS function. This imports
    ``numba.np.arraymath`` with that check answered "available", then puts the real check
    back: a Numba function that does use ``np.dot`` or ``np.linalg`` still gets the real check
    (and ``scipy.linalg`` imported) when Numba compiles it, with Numba's own error if scipy is
    missing. Does nothing once ``numba.np.arraymath`` or ``scipy.linalg.cython_blas`` is loaded
    (the check has run or would cost nothing).
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    import numba.np.linalg as linalg

    real = linalg.ensure_blas
    linalg.ensure_blas = lambda: None
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = real
    arraymath.ensure_blas = real  # the name it imported, for any later call
