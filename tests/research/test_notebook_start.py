"""In an IPython session, importing ``research`` prepares the first backtest in the background
once the importing cell is done (Numba's runtime, the backtest module); elsewhere nothing
happens. Each test runs a fresh interpreter: the preparation happens once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs cells in an IPython shell (what a Jupyter kernel runs) and reports what it saw.
SESSION = r"""
import json, os, sys, threading
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
report = {}


def run(cell):
    outcome = shell.run_cell(cell)
    outcome.raise_error()


run("import research, sys, threading\n"
    "DURING = ([t.name for t in threading.enumerate()], 'research.backtesting' in sys.modules)")
report["threads_during_cell"], report["backtesting_during_cell"] = shell.user_ns["DURING"]
from research import notebook_start

thread = notebook_start._thread
report["started"] = thread is not None
if thread is not None:
    report["thread"] = thread.name
    if sys.argv[1] == "fork":
        report["alive_before_fork"] = thread.is_alive()
        pid = os.fork()
        if pid == 0:  # the child: its first kernel call must not wait for a lock nobody holds
            import numpy as np
            from research.indicators import sma
            os._exit(0 if np.isnan(sma(np.arange(100.0), 5)[:4]).all() else 3)
        report["alive_after_fork"] = thread.is_alive()
        report["child_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    thread.join(timeout=300)
    report["finished"] = not thread.is_alive()
report["backtesting_loaded"] = "research.backtesting" in sys.modules
from numba.core.runtime import rtsys

report["numba_runtime_started"] = rtsys._init
run("from candela.cli.commands.warmup import synthetic_bars\n"
    "from strategies.registry import get_strategy\n"
    "RESULT = research.backtest(get_strategy('sma_cross'), synthetic_bars(400))\n"
    "R2 = research.backtest(get_strategy('sma_cross'), synthetic_bars(400))")
result, again = shell.user_ns["RESULT"], shell.user_ns["R2"]
report["same_result"] = result.equity_values.tobytes() == again.equity_values.tobytes()
report["fills"] = len(result.fill_rows)
print(json.dumps(report))
"""


def run_session(mode: str = "plain", **environment: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SESSION, mode],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_in_ipython_the_backtest_is_prepared_after_the_importing_cell():
    report = run_session()
    # nothing ran while the importing cell did: the user's own cell is not slowed down
    assert "candela-prepare" not in report["threads_during_cell"]
    assert not report["backtesting_during_cell"]
    # after it: Numba's runtime is started and the backtest module loaded, and backtests run
    assert report["started"] and report["thread"] == "candela-prepare" and report["finished"]
    assert report["backtesting_loaded"] and report["numba_runtime_started"]
    assert report["same_result"] and report["fills"] > 0


def test_a_fork_waits_for_the_preparation_and_the_child_can_call_kernels():
    report = run_session("fork")
    assert report["alive_before_fork"]  # forked while the thread was still working ...
    assert not report["alive_after_fork"]  # ... and os.fork returned only once it was done
    assert report["child_status"] == 0


def test_candela_prepare_0_switches_it_off():
    report = run_session(CANDELA_PREPARE="0")
    assert not report["started"]
    assert not report["backtesting_loaded"] and not report["numba_runtime_started"]
    assert report["same_result"] and report["fills"] > 0  # the first backtest does the work


def test_outside_ipython_importing_research_starts_nothing():
    code = (
        "import json, sys, threading, research, strategies.registry; "
        "print(json.dumps([[t.name for t in threading.enumerate()], "
        "sorted(m for m in sys.modules if m in ('research.notebook_start', "
        "'research.backtesting', 'pandas', 'numba.np.arraymath'))]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    threads, loaded = json.loads(done.stdout)
    assert threads == ["MainThread"] and loaded == []
