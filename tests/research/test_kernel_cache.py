"""Cached Numba kernels are dropped when any kernel source changes (they inline each other)."""

from __future__ import annotations

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
