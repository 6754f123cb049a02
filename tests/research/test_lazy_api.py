"""``research`` loads its notebook API lazily and still lists it (tab completion in a notebook)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_dir_lists_the_lazy_api_and_the_submodules_without_loading_them():
    code = (
        "import json, sys, research; names = dir(research); "
        "print(json.dumps([names, 'research.backtesting' in sys.modules, research._LAZY]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, loaded, lazy = json.loads(done.stdout)
    assert set(lazy) <= set(names)  # every lazy name is offered ...
    assert not loaded  # ... without importing the upper layers
    assert {"backtest", "sweep", "load_bars", "indicators", "types", "checks"} <= set(names)
    assert (
        "importlib" not in names and "Any" not in names
    )  # only the API, not the module's own imports


def test_every_listed_name_resolves():
    import research

    for name in dir(research):
        assert hasattr(research, name), name
    assert research.indicators.sma is not None and research.backtest.__name__ == "backtest"
