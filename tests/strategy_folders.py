"""User strategy folders for tests (imported as ``strategy_folders``).

:func:`write_strategy` writes a strategy module into a folder, e.g. the one of the
``strategy_folder`` fixture (``tests/conftest.py``).

The strategies are real ones written the way a user writes them (today's ``StrategySpec``):

* ``above_sma``: long while the close is above its simple moving average (a correct strategy);
* ``peeks``: long when the *next* close is higher (looks ahead: the look-ahead check fails);
* ``short_memory``: a distance to an EMA with a declared warm-up far too short for the EMA to
  forget its seed (the history-window check fails);
* ``broadcast_bug``: a planted bug, adding arrays of different lengths (numpy raises
  ``ValueError``), which must keep its traceback.
"""

from __future__ import annotations

from pathlib import Path

HEADER = '''\
from typing import NamedTuple

import numpy as np

from research.indicators import ema, sma
from research.types import Stops, StrategySpec


class Params(NamedTuple):
    window: int = 5
'''

BODIES = {
    "above_sma": '''
def target(bars, p):
    out = (bars.close > sma(bars.close, p.window)).astype(np.float64)
    out[: p.window - 1] = np.nan
    return out
''',
    "peeks": '''
def target(bars, p):
    upcoming = np.append(bars.close[1:], bars.close[-1])
    out = (upcoming > bars.close).astype(np.float64)
    out[: p.window - 1] = np.nan
    return out
''',
    "short_memory": '''
def target(bars, p):
    level = ema(bars.close, p.window)
    out = np.clip((bars.close - level) / level * 50.0, -1.0, 1.0)
    out[: p.window - 1] = np.nan
    return out
''',
    "broadcast_bug": '''
def target(bars, p):
    return bars.close[1:] + bars.close  # planted bug: the lengths differ
''',
}

SPEC_LINE = '''
{attribute} = StrategySpec(name={name!r}, params=Params, target=target, warmup=lambda p: p.window - 1,
                    indicators=lambda bars, p: {{"sma": sma(bars.close, p.window)}},
                    sweep={{"window": range(3, 9)}}, long_only={long_only}, stops={stops},
                    description={description!r})
'''


def strategy_code(kind: str, name: str | None = None, *, attribute: str = "SPEC",
                  description: str | None = None, stops: str = "Stops()") -> str:
    """Source of a strategy module of ``kind`` (see the module docstring), named ``name``."""
    name = name or kind
    description = description or f"The {kind} test strategy.\nSecond line of the description."
    return (HEADER + BODIES[kind]
            + SPEC_LINE.format(attribute=attribute, name=name, description=description,
                               long_only=kind != "short_memory", stops=stops))


def write_strategy(folder: Path, file_name: str, kind: str = "above_sma", name: str | None = None,
                   **options) -> Path:
    """Write ``folder/file_name`` holding a ``kind`` strategy; return its path."""
    path = folder / file_name
    path.write_text(strategy_code(kind, name, **options), encoding="utf-8")
    return path
