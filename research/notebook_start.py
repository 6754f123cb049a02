"""In a notebook, get the first backtest ready while the user reads the cell that imported
``research``.

A fresh process's first :func:`research.backtest` waits, besides loading its cached kernels
(about 0.1 s), for two things that do not depend on what it backtests: starting Numba's runtime
(:func:`research.kernels.prepare.prepare_numba`) and the import of the backtest module with
pandas (about 0.3 s). A script has nothing else to do meanwhile, so doing them earlier would
only move them; an interactive session has: the user reads the output of a cell, writes the
next one. When ``research`` is imported in an IPython session (a Jupyter kernel, IPython in a
terminal), :func:`prepare_after_cell` therefore starts a background thread that does both once
the importing cell has finished, while the kernel is idle. A backtest started before it is done
waits for it (Numba's compiler lock and the import lock), which costs no more than doing the
work itself.

Nothing is compiled and no kernel is loaded in the background. Outside IPython nothing
happens. The thread is joined before the process forks (a child must not inherit a lock held
by a thread it does not have) and at exit. ``CANDELA_PREPARE=0`` switches it off.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading

_thread: threading.Thread | None = None
_lock = threading.Lock()


def prepare_after_cell() -> bool:
    """In an IPython session, start :func:`start` once the running cell has finished; return
    whether it was arranged (``False`` outside IPython or with ``CANDELA_PREPARE=0``)."""
    if os.environ.get("CANDELA_PREPARE", "1") == "0":
        return False
    ipython = sys.modules.get("IPython")  # never imported here: only an existing session counts
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False

    def after_cell(result) -> None:
        shell.events.unregister("post_run_cell", after_cell)
        start()

    shell.events.register("post_run_cell", after_cell)
    return True


def start() -> threading.Thread:
    """Start the preparation thread, once per process; return it."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_prepare, name="candela-prepare", daemon=True)
            _thread.start()
        return _thread


def wait() -> None:
    """Block until the preparation thread, if one was started, is done."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _prepare() -> None:
    from research.kernels.prepare import prepare_numba

    prepare_numba()
    importlib.import_module("research.backtesting")  # pandas, the metrics, the loop's modules


os.register_at_fork(before=wait)
atexit.register(wait)
