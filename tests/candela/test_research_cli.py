"""``candela backtest``, ``candela sweep`` and ``candela report`` on the bundled sample."""

from __future__ import annotations

import itertools
import re

import pytest

from candela.cli import main
from candela.cli.commands import CommandError
from candela.cli.commands.research import parse_assignments, parse_grid
from research.backtesting import backtest
from research.data import load_bars
from research.types import Costs
from strategies.registry import get_strategy

MARKET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]


def run(database: str, *arguments: str) -> int:
    return main(["--database-url", database, *arguments])


def test_parse_grid_ranges_include_their_stop_and_lists_keep_their_order():
    grid = parse_grid(["fast=5:50:5", "slow=20,10,40", "num_std=1.5:2.5:0.5", "window=3:5"])
    assert grid["fast"] == list(range(5, 51, 5))
    assert grid["slow"] == [20, 10, 40]
    assert grid["num_std"] == [1.5, 2.0, 2.5]
    assert grid["window"] == [3, 4, 5]


@pytest.mark.parametrize("item", ["fast", "fast=", "fast=5:1", "fast=1:5:0", "fast=a:b"])
def test_parse_grid_rejects_malformed_specs(item):
    with pytest.raises(CommandError, match="--grid"):
        parse_grid([item])


def test_parse_assignments_types_values():
    assert parse_assignments(["fast=10", "num_std=2.5", "allow_short=true", "name=x"]) == {
        "fast": 10, "num_std": 2.5, "allow_short": True, "name": "x"}
    with pytest.raises(CommandError, match="NAME=VALUE"):
        parse_assignments(["fast"])


def test_backtest_prints_stats_and_trades_and_writes_offline_html(database, tmp_path, capsys):
    html = tmp_path / "chart.html"
    status = run(database, "backtest", "--strategy", "sma_cross", *MARKET, "--param", "fast=8",
                 "--param", "slow=40", "--fee", "0.002", "--slippage-bps", "3", "--html", str(html))
    out = capsys.readouterr().out
    assert status == 0
    spec = get_strategy("sma_cross")
    bars = load_bars(database, "binance", "BTC/USDT", "1h")
    expected = backtest(spec, bars, {"fast": 8, "slow": 40}, Costs(0.002, 3.0))
    assert f"of {len(expected.trades)} trades" in out
    count = re.search(r"^trade_count\s+(\d+)$", out, re.MULTILINE)
    assert count and int(count.group(1)) == expected.stats["trade_count"]
    assert re.search(r"^sharpe\s+" + re.escape(f"{expected.stats['sharpe']:,.4f}") + "$", out,
                     re.MULTILINE)
    text = html.read_text(encoding="utf-8")
    assert "<script src=" not in text and "Plotly.newPlot" in text


def test_sweep_prints_the_best_rows_and_counts_invalid_combinations(database, tmp_path, capsys):
    csv = tmp_path / "rows.csv"
    status = run(database, "sweep", "--strategy", "sma_cross", *MARKET, "--grid", "fast=5:30:5",
                 "--grid", "slow=20:60:20", "--top", "4", "--no-progress", "--csv", str(csv))
    out = capsys.readouterr().out
    assert status == 0
    pairs = list(itertools.product(range(5, 31, 5), range(20, 61, 20)))
    invalid = sum(1 for f, s in pairs if f >= s)
    assert (f"{len(pairs) - invalid} parameter sets evaluated of {len(pairs)} combinations "
            f"({invalid} invalid)") in out
    table = out.split("best 4 by sharpe:")[1].split("all rows written")[0].splitlines()
    rows = [line.split() for line in table if line.strip()][1:]
    assert len(rows) == 4
    sharpes = [float(row[2 + 2]) for row in rows]  # fast slow total_return cagr sharpe ...
    assert sharpes == sorted(sharpes, reverse=True)
    assert len(csv.read_text().splitlines()) == len(pairs) - invalid + 1


def test_user_errors_print_one_line_and_exit_2(database, capsys):
    assert run(database, "backtest", "--strategy", "sma_crss", *MARKET) == 2
    assert "did you mean 'sma_cross'" in capsys.readouterr().err
    assert run(database, "backtest", "--strategy", "sma_cross", *MARKET, "--param", "fsat=3") == 2
    assert "did you mean 'fast'" in capsys.readouterr().err
    assert run(database, "sweep", "--strategy", "sma_cross", "--exchange", "binance", "--symbol",
               "ETH/USDT", "--timeframe", "1h", "--grid", "fast=5,10") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ETH/USDT" in err
    assert run(database, "sweep", "--strategy", "sma_cross", *MARKET, "--grid", "fast=50",
               "--grid", "slow=20") == 2
    assert "none of the 1 combinations" in capsys.readouterr().err


@pytest.mark.slow
def test_report_executes_the_notebook_into_the_output_folder(database, tmp_path, capsys):
    status = run(database, "report", "--strategy", "sma_cross", *MARKET, "--param", "fast=12",
                 "--out", str(tmp_path))
    assert status == 0
    notebook = tmp_path / "report_sma_cross_binance_BTC-USDT_1h.ipynb"
    assert notebook.exists()
    html = notebook.with_suffix(".html").read_text(encoding="utf-8")
    assert "fast" in html and "sharpe" in html
    assert "Error" not in capsys.readouterr().err
