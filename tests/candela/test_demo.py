"""``candela demo`` (what ``make demo`` runs) works end to end on the bundled sample alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_demo(database_url: str, out_dir) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("CANDELA_")
    }
    environment["CANDELA_SHARED_DATA"] = "/nonexistent"  # a user's clone has only the sample
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "candela.cli",
            "--database-url",
            database_url,
            "demo",
            "--out",
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        check=False,
    )


def test_demo_runs_twice_on_an_empty_database_and_paper_matches_backtest(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = run_demo(database_url, tmp_path / "out")
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout

    imported = re.search(
        r"24 files: ([\d,]+) new, 0 already stored, 0 conflicting, 0 rejected", output
    )
    assert imported and int(imported.group(1).replace(",", "")) > 90_000
    assert "bittrex ADA/BTC" in output and "gaps" in output

    assert re.search(r"final_equity\s+[\d,.]+", output)
    chart = (tmp_path / "out" / "backtest.html").read_text()
    assert "plotly" in chart.lower()
    assert not re.search(r"<script[^>]+src=\"https?://", chart), "the chart must open offline"
    assert "best 5 by sharpe" in output
    research_step = output.split("=== research")[1].split("=== paper")[0]
    assert not re.search(r"\d[eE][+-]?\d", research_step)  # no scientific notation
    assert re.search(r"^sharpe\s+-?[\d.]+  mean / std", research_step, re.MULTILINE)

    comparisons = re.findall(
        r"(\d+) paper fills, (\d+) backtest fills, identical: (True|False)", output
    )
    assert len(comparisons) == 2
    for paper, backtest, identical in comparisons:
        assert identical == "True" and paper == backtest and int(paper) > 0

    second = run_demo(database_url, tmp_path / "out")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 new, " in second.stdout and "replayed 0 new bar(s)" in second.stdout
