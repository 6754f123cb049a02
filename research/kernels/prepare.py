"""Numba's one-time initialisation, on demand: :func:`prepare_numba`.

The first kernel call of a process, even of a kernel whose machine code is cached on disk,
first initialises Numba's CPU target: it imports Numba's implementation registries (and, for
Numba's linear-algebra check, ``scipy.linalg``), installs them and starts Numba's runtime.
That is about 0.6 s of CPU on the reference machine, several times what loading the cached
kernels of a backtest costs, and it does not depend on the kernels. :func:`prepare_numba` does
that work now, so that a caller with time to spare (an idle notebook, see
:mod:`research.notebook_start`) can take it off the first kernel call.
"""

from __future__ import annotations


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
