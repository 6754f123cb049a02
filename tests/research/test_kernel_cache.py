"""Cached Numba kernels are dropped when any kernel source changes (they inline each other)."""

from __future__ import annotations

import os
import subprocess
import sys

from research.kernels import drop_stale_numba_cache


def test_cached_kernels_survive_until_a_source_file_changes(tmp_path):
    (tmp_path / "execution.py").write_text("def step_nb(): return 1\n")
    (tmp_path / "backtest.py").write_text("from execution import step_nb\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "backtest.loop_nb-1.py311.nbi").write_text("compiled against the first step_nb")

    assert drop_stale_numba_cache(tmp_path) is True  # no record of the sources yet
    assert not list(cache.glob("*.nbi"))

    (cache / "backtest.loop_nb-1.py311.nbi").write_text("compiled")
    (cache / "backtest.loop_nb-1.py311.1.nbc").write_text("compiled")
    assert drop_stale_numba_cache(tmp_path) is False  # unchanged sources keep the cache
    assert len(list(cache.glob("*.nb?"))) == 2

    (tmp_path / "execution.py").write_text("def step_nb(): return 2\n")  # only the callee changes
    assert drop_stale_numba_cache(tmp_path) is True
    assert not list(cache.glob("*.nb?"))


def test_with_numba_cache_dir_the_stale_kernels_dropped_are_those_numba_uses(tmp_path, monkeypatch):
    from numba.core import config

    from research.kernels import kernel_cache_dir

    package = tmp_path / "kernels"
    package.mkdir()
    (package / "execution.py").write_text("def step_nb(): return 1\n")
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba-cache"))
    cache = kernel_cache_dir(package)
    assert cache.parent == tmp_path / "numba-cache" and cache.name.startswith("kernels_")
    assert drop_stale_numba_cache(package) is True
    (cache / "execution.step_nb-1.py311.nbi").write_text("compiled against the first step_nb")
    assert not (package / "__pycache__").exists()  # nothing kept beside the sources
    (package / "execution.py").write_text("def step_nb(): return 2\n")
    assert drop_stale_numba_cache(package) is True
    assert not list(cache.glob("*.nbi"))


def test_the_first_backtest_does_not_import_scipy_and_numba_linear_algebra_still_works(repo_root):
    """Numba's BLAS check (an import of scipy.linalg) is not paid by a backtest, and is still
    made, for real, by a Numba function that uses np.dot."""
    code = """
import sys

import numba
import numpy as np

import research
from bench.synthetic import synthetic_bars
from research.types import Costs
from strategies.registry import get_strategy

bars = synthetic_bars(5_000)
result = research.backtest(get_strategy("sma_cross"), bars, {"fast": 5, "slow": 20}, Costs(0.001))
assert len(result.ts) == len(bars)
assert "scipy.linalg" not in sys.modules, "a backtest imported scipy.linalg"

@numba.njit
def dot(a, b):
    return np.dot(a, b)

a, b = np.arange(6.0), np.linspace(0.0, 1.0, 6)
assert dot(a, b) == np.dot(a, b)
assert "scipy.linalg.cython_blas" in sys.modules  # Numba's real check ran for np.dot
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


USER_MODULE = """
import numba
import numpy as np


@numba.njit(cache=True)
def counts(values):
    seen = {values[0]: 0}
    for value in values:
        seen[value] = seen.get(value, 0) + 1
    return len(seen), np.sort(values)[-1]
"""

USER_RUN = """
import sys

import research
from bench.synthetic import synthetic_bars
from research.types import Costs
from strategies.registry import get_strategy

research.backtest(get_strategy("sma_cross"), synthetic_bars(3_000), {"fast": 5, "slow": 20},
                  Costs(0.001))
light = "numba.np.arraymath" not in sys.modules  # Candela's kernels loaded lightly

import numpy as np
from user_kernels import counts

result = counts(np.array([3, 1, 3, 7]))
print(light, counts.stats.cache_hits.total(), result)
"""


def test_a_users_own_cached_numba_function_loads_and_runs_beside_the_light_kernels(
    tmp_path, repo_root
):
    """A user's ``cache=True`` function (here one that hashes, in a typed dict) is compiled in
    a first process and loaded from Numba's cache in a second, by Numba's own loading, after
    Candela's kernels were loaded there without Numba's registries."""
    (tmp_path / "user_kernels.py").write_text(USER_MODULE)
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo_root}"}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", USER_RUN],
            cwd=repo_root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout.split())
    (_, first_hits, *first), (light, second_hits, *second) = outputs
    assert light == "True"  # the second process's backtest ran from the cache, lightly
    assert (first_hits, second_hits) == ("0", "1")  # compiled, then loaded from the cache
    assert first == second == ["(3,", "7)"]
