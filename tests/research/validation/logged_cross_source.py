"""The source of ``logged_cross``: an SMA cross that appends ``fast,slow`` to a log file each
time it runs on bars (after a pause), so that a test sees which parameter sets a killed and
resumed sweep or search computed again. Written into a strategy folder as ``logged_strategy.py``."""

from __future__ import annotations

TEMPLATE = '''
import time

from research.indicators import sma
from research.strategy_model import strategy

LOG = {log!r}


@strategy(sweep={{"fast": range(2, 12), "slow": range(20, 80, 10)}}, constraints=["fast < slow"])
def logged_cross(bars, fast: int = 5, slow: int = 20):
    """SMA cross that logs every run on bars."""
    if len(bars.close):
        time.sleep({pause!r})
        with open(LOG, "a") as log:
            log.write(f"{{fast}},{{slow}}\\n")
    return sma(bars.close, fast) > sma(bars.close, slow)
'''


def source(log: str, pause: float) -> str:
    """The module's text, logging to ``log`` after ``pause`` seconds per run on bars."""
    return TEMPLATE.format(log=log, pause=pause)
