"""User strategy folders for tests (imported as ``strategy_folders``).

:func:`write_strategy` writes a strategy module into a folder, e.g. the one of the
``strategy_folder`` fixture (``tests/conftest.py``).

The strategies are real ones written the way a user writes them (one function with
``@strategy``):

* ``above_sma``: long while the close is above its simple moving average (a correct strategy);
* ``peeks``: long when the *next* close is higher (looks ahead: the look-ahead check fails);
* ``short_memory``: a distance to an EMA with a declared history window far too short for the
  EMA to forget its seed (the history-window check fails);
* ``broadcast_bug``: a planted bug, adding arrays of different lengths (numpy raises
  ``ValueError``), which must keep its traceback.
"""

from __future__ import annotations

from pathlib import Path

HEADER = """\
import numpy as np

from research import strategy
from research.indicators import ema, sma
from research.types import Stops
"""

#: The decorator's options per kind, besides the name, sweep, long_only and stops.
OPTIONS = {
    "above_sma": "",
    "peeks": "lookback=lambda p: p.window - 1, history=lambda p: p.window, ",
    "short_memory": "lookback=lambda p: p.window - 1, history=lambda p: p.window, ",
    "broadcast_bug": "",
}

BODIES = {
    "above_sma": """
    level = sma(bars.close, window)
    return bars.close > level, {"price": {"sma": level}}
""",
    "peeks": """
    close = np.asarray(bars.close)
    upcoming = np.append(close[1:], close[-1:])
    return (upcoming > close).astype(np.float64)
""",
    "short_memory": """
    level = ema(bars.close, window)
    return np.clip((bars.close - level) / level * 50.0, -1.0, 1.0)
""",
    "broadcast_bug": """
    return bars.close + np.ones(3)  # planted bug: the lengths differ
""",
}

FUNCTION = '''

@strategy(name={name!r}, sweep={{"window": range(3, 9)}}, long_only={long_only}, stops={stops},
          {options})
def {attribute}(bars, window: int = 5):
    """{description}"""
'''


def strategy_code(
    kind: str,
    name: str | None = None,
    *,
    attribute: str = "SPEC",
    description: str | None = None,
    stops: str = "Stops()",
) -> str:
    """Source of a strategy module of ``kind`` (see the module docstring), named ``name``, held
    by the module attribute ``attribute`` (the function's name)."""
    name = name or kind
    description = description or f"The {kind} test strategy.\nSecond line of the description."
    return (
        HEADER
        + FUNCTION.format(
            attribute=attribute,
            name=name,
            description=description,
            stops=stops,
            long_only=kind != "short_memory",
            options=OPTIONS[kind],
        )
        + BODIES[kind]
    )


def write_strategy(
    folder: Path, file_name: str, kind: str = "above_sma", name: str | None = None, **options
) -> Path:
    """Write ``folder/file_name`` holding a ``kind`` strategy; return its path."""
    path = folder / file_name
    path.write_text(strategy_code(kind, name, **options), encoding="utf-8")
    return path
