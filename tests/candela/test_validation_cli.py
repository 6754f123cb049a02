"""``candela sweep`` (stored), ``candela sweeps list``, ``candela walkforward``,
``candela search`` and ``candela report --sweep`` on the bundled sample."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from candela.cli import main
from research.data import load_bars
from research.types import Costs
from research.validation.walkforward import walk_forward
from strategies.registry import get_strategy

MARKET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]
GRID = ["--grid", "fast=4:16:4", "--grid", "slow=20:60:10"]


def run(database: str, *arguments: str) -> int:
    return main(["--database-url", database, *arguments])


def sweep_id(out: str) -> str:
    found = re.search(r"stored as sweep ([0-9a-f]{8})", out)
    assert found, out
    return found.group(1)


def test_a_sweep_is_stored_listed_and_reported_without_code(database, tmp_path, capsys):
    assert (
        run(
            database,
            "sweep",
            "--strategy",
            "sma_cross",
            *MARKET,
            *GRID,
            "--no-progress",
            "--min-trades",
            "3",
        )
        == 0
    )
    out = capsys.readouterr().out
    identifier = sweep_id(out)
    assert re.search(r"deflated Sharpe ratio.* is \d+\.\d %", out)
    assert re.search(r"Probability of backtest overfitting: \d+\.\d %", out)
    assert (
        run(
            database,
            "sweep",
            "--strategy",
            "sma_cross",
            *MARKET,
            *GRID,
            "--no-progress",
            "--min-trades",
            "3",
        )
        == 0
    )
    assert sweep_id(capsys.readouterr().out) == identifier  # the same sweep, loaded
    assert run(database, "sweeps", "list") == 0
    listing = capsys.readouterr().out
    assert identifier in listing and "complete" in listing and "binance BTC/USDT 1h" in listing

    assert (
        run(
            database,
            "report",
            "--sweep",
            identifier,
            "--windows",
            "3",
            "--cv-folds",
            "4",
            "--out",
            str(tmp_path),
        )
        == 0
    )
    capsys.readouterr()
    [page] = tmp_path.glob("sweep_sma_cross_*.html")
    html = page.read_text(encoding="utf-8")
    for heading in (
        "Parameter surface",
        "Overfitting",
        "Walk-forward",
        "Combinatorial purged cross-validation",
    ):
        assert f">{heading}" in html, heading
    assert "deflated Sharpe ratio" in html and "Walk-forward efficiency" in html
    assert "hl-ipython3" not in html and "report_inputs" not in html  # no code
    assert re.findall(r"<script[^>]*\ssrc=", html) == []  # opens offline
    assert not list(tmp_path.glob(".*partial*"))


def test_report_of_an_unknown_sweep_is_one_line(database, tmp_path, capsys):
    assert run(database, "report", "--sweep", "feedbeef", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no stored sweep has id 'feedbeef'" in err
    assert not any(tmp_path.iterdir())


def test_walkforward_prints_the_windows_the_efficiency_and_the_stitched_run(
    database, tmp_path, capsys
):
    table = tmp_path / "windows.csv"
    assert (
        run(
            database,
            "walkforward",
            "--strategy",
            "sma_cross",
            *MARKET,
            *GRID,
            "--train",
            "400",
            "--windows",
            "3",
            "--min-trades",
            "2",
            "--no-progress",
            "--csv",
            str(table),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 walk-forward windows (rolling)" in out and "Walk-forward efficiency" in out
    assert re.search(r"^total_return\s+[+-]?[\d.]+ %", out, re.MULTILINE)
    bars = load_bars(database, "binance", "BTC/USDT", "1h")
    expected = walk_forward(
        get_strategy("sma_cross"),
        bars,
        {"fast": [4, 8, 12, 16], "slow": [20, 30, 40, 50, 60]},
        Costs(0.001),
        train=400,
        n_windows=3,
        min_trades=2,
        progress=False,
    )
    written = pd.read_csv(table)
    assert list(written["fast"]) == list(expected.windows["fast"])
    assert list(written["oos_total_return"]) == pytest.approx(
        list(expected.windows["oos_total_return"])
    )


def test_search_runs_then_resumes_its_study(database, capsys):
    arguments = [
        "search",
        "--strategy",
        "sma_cross",
        *MARKET,
        "--space",
        "fast=2:20",
        "--space",
        "slow=20:80:10",
        "--min-trades",
        "2",
        "--no-progress",
    ]
    assert run(database, *arguments, "--trials", "12") == 0
    out = capsys.readouterr().out
    study = re.search(r"study '([^']+)'", out).group(1)
    first = re.search(r"(\d+) complete, (\d+) pruned", out)
    assert int(first.group(1)) + int(first.group(2)) >= 12
    assert run(database, *arguments, "--trials", "20") == 0
    out = capsys.readouterr().out
    assert f"study '{study}'" in out
    second = re.search(r"(\d+) complete, (\d+) pruned", out)
    assert int(second.group(1)) + int(second.group(2)) >= 20
    assert int(second.group(1)) >= int(first.group(1))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["walkforward", "--strategy", "sma_cross", *MARKET, "--train", "5000", "--test", "100"],
            "no bar is left to test on",
        ),
        (
            [
                "walkforward",
                "--strategy",
                "sma_cross",
                *MARKET,
                "--train",
                "400",
                "--windows",
                "3",
                "--metric",
                "luck",
            ],
            "--metric 'luck' is not a stat",
        ),
        (["search", "--strategy", "sma_cross", *MARKET, "--space", "fast=20:2"], "LOW < HIGH"),
        (["search", "--strategy", "sma_cross", *MARKET, "--space", "fats=2:20"], "did you mean"),
        (
            ["sweep", "--strategy", "sma_cross", *MARKET, "--scheduler", "tcp://127.0.0.1:9"],
            "cannot reach the Dask scheduler",
        ),
    ],
)
def test_bad_input_is_one_line_with_exit_status_2(database, capsys, arguments, message):
    assert run(database, *arguments) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
