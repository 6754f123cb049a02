"""Numba's one-time initialisation, kept off a backtest's path: :func:`load_kernels_lightly`,
:func:`defer_blas_check` and :func:`prepare_numba`.

Before Numba loads a function's machine code from its on-disk cache, it "refreshes" its CPU
target: it imports and installs every implementation registry it has (the numpy, math, random,
typed-container and datetime lowerings, some 250 modules' worth of typing templates) and starts
its runtime. That is about 0.5 s of CPU on this machine, once per process, several times what
loading the cached kernels of a backtest costs; and the registries serve only the compiler.
Machine code loaded from the cache needs the runtime (allocation, reference counting) and the
symbols Numba registers for its C helpers, nothing else.

* :func:`load_kernels_lightly` (run when :mod:`research.kernels` is imported) lets Candela's
  own cached kernels load with just that: the runtime started and the hash secret symbols
  registered. Any function that is compiled (a cache miss, a new signature, a user's own
  ``@njit``) still gets the full refresh, because Numba's compiler makes it itself; other
  packages' cached functions keep Numba's own loading.
* :func:`defer_blas_check` (run then too) keeps that refresh, whenever it comes, from importing
  ``scipy.linalg`` for a BLAS check no Candela kernel needs.
* :func:`prepare_numba` does now what loading a kernel would do first, for a caller with time to
  spare (an idle notebook, see :mod:`research.notebook_start`).
"""

from __future__ import annotations

import sys

#: The top-level packages whose cached kernels :func:`load_kernels_lightly` loads.
CANDELA_PACKAGES = frozenset({"research", "strategies", "runner", "candela", "data_pipeline"})


def prepare_numba() -> None:
    """Do what loading the first Candela kernels from the cache does first: start Numba's
    runtime and register its helper symbols (under Numba's compiler lock: a kernel called
    meanwhile from another thread waits for it, as it would wait for the same work done in its
    own thread), and import ``numba.np.arrayobj``, the module that any kernel allocating an
    array names in its cached environment (0.1 s, with the modules it imports). Compiles
    nothing and loads no kernel; calling it again costs nothing."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock:
        _start_runtime(cpu_target.target_context)
    import numba.np.arrayobj  # noqa: F401


def load_kernels_lightly() -> None:
    """Make Numba load Candela's cached kernels without refreshing its whole CPU target.

    Replaces ``numba.core.caching.Cache.load_overload`` (once per process) by a version that,
    for a function defined in one of :data:`CANDELA_PACKAGES`, starts Numba's runtime and
    registers the symbols that compiled code links against (:func:`_start_runtime`), then loads
    exactly as Numba does; for any other function it calls Numba's own method. A cache miss
    returns ``None`` as before and the dispatcher compiles, refreshing the target itself
    (``numba.core.compiler.CompilerBase``), so compilation is unaffected. With a Numba whose
    ``Cache`` lacks the internals this calls (:data:`_CACHE_INTERNALS`) it changes nothing.
    """
    from numba.core.caching import Cache

    numba_load = Cache.load_overload
    if getattr(numba_load, "candela", False):
        return
    if not all(hasattr(Cache, name) for name in _CACHE_INTERNALS):
        return  # another Numba than the one this was written for: keep its own loading

    def load_overload(self, sig, target_context):
        module = getattr(getattr(self, "_py_func", None), "__module__", None) or ""
        if module.partition(".")[0] not in CANDELA_PACKAGES:
            return numba_load(self, sig, target_context)
        _start_runtime(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed an I/O error: compile, as Numba does

    load_overload.candela = True
    load_overload.__doc__ = numba_load.__doc__
    Cache.load_overload = load_overload


_CACHE_INTERNALS = ("_load_overload", "_guard_against_spurious_io_errors")
"""The parts of ``numba.core.caching.Cache`` the light loading calls (Numba 0.60 to 0.6x)."""


def _start_runtime(target_context) -> None:
    """What machine code loaded from Numba's cache needs besides the symbols registered when
    the target context was created: the runtime (``NRT_*``, started once) and the hash secret
    symbols ``numba.cpython.hashing`` registers when imported (a kernel that hashes links them).
    """
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)
    import numba.cpython.hashing  # noqa: F401  (registers _numba_hashsecret_* on import)


def defer_blas_check() -> None:
    """Keep Numba's registry refresh from importing ``scipy.linalg`` (0.2-0.6 s) for nothing.

    When Numba refreshes its CPU target it imports ``numba.np.arraymath``, whose module body
    checks that a BLAS is available by importing ``scipy.linalg.cython_blas``, and records the
    answer for ``np.dot`` and friends. No Candela kernel uses a BLAS function. This hooks the
    refresh (``CPUContext.load_additional_registries``) so that, the first time it runs,
    ``numba.np.arraymath`` is imported with that check answered "available" and the real check
    is then put back: a Numba function that does use ``np.dot`` or ``np.linalg`` still gets the
    real check (and ``scipy.linalg`` imported) when Numba compiles it, with Numba's own error if
    scipy is missing. Nothing is imported until Numba refreshes; the hook does nothing once
    ``numba.np.arraymath`` or ``scipy.linalg.cython_blas`` is loaded (the check has run or
    would cost nothing).
    """
    from numba.core.cpu import CPUContext

    numba_load = CPUContext.load_additional_registries
    if getattr(numba_load, "candela", False):
        return

    def load_additional_registries(self):
        _import_arraymath_without_blas_check()
        return numba_load(self)

    load_additional_registries.candela = True
    CPUContext.load_additional_registries = load_additional_registries


def _import_arraymath_without_blas_check() -> None:
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
