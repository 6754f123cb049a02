"""``candela backtest``, ``candela sweep`` and ``candela report`` on the bundled sample."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from candela.cli import main
from candela.cli.commands import CommandError
from candela.cli.commands.parsing import parse_assignments, parse_grid
from research.backtesting import backtest
from research.data import load_bars, resample
from research.types import Costs
from strategies.registry import get_strategy

MARKET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]
SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


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
        "fast": 10,
        "num_std": 2.5,
        "allow_short": True,
        "name": "x",
    }
    with pytest.raises(CommandError, match="NAME=VALUE"):
        parse_assignments(["fast"])


def test_backtest_prints_stats_and_trades_and_writes_offline_html(database, tmp_path, capsys):
    html = tmp_path / "chart.html"
    status = run(
        database,
        "backtest",
        "--strategy",
        "sma_cross",
        *MARKET,
        "--param",
        "fast=8",
        "--param",
        "slow=40",
        "--fee",
        "0.002",
        "--slippage-bps",
        "3",
        "--html",
        str(html),
    )
    out = capsys.readouterr().out
    assert status == 0
    spec = get_strategy("sma_cross")
    bars = load_bars(database, "binance", "BTC/USDT", "1h")
    expected = backtest(spec, bars, {"fast": 8, "slow": 40}, Costs(0.002, 3.0))
    assert f"of {len(expected.trades)} trades" in out
    count = re.search(r"^trade_count\s+(\d+)  closed round trips", out, re.MULTILINE)
    assert count and int(count.group(1)) == expected.stats["trade_count"]
    assert re.search(
        r"^sharpe\s+" + re.escape(f"{expected.stats['sharpe']:.2f}") + "  mean / std",
        out,
        re.MULTILINE,
    )
    assert re.search(r"^total_return\s+[+-]?[\d.]+ %  final equity", out, re.MULTILINE)
    assert re.search(r"^start_ts\s+2018-\d\d-\d\d \d\d:\d\d UTC", out, re.MULTILINE)
    assert "buy_hold_return" in out and "excess_return" in out
    assert not SCIENTIFIC.search(out)
    text = html.read_text(encoding="utf-8")
    assert "<script src=" not in text and "Plotly.newPlot" in text
    assert not list(tmp_path.glob(".*partial*"))


def test_backtest_exports_stats_and_trades_as_csv_and_json(database, tmp_path, capsys):
    folder, document = tmp_path / "export", tmp_path / "run" / "backtest.json"
    assert (
        run(
            database,
            "backtest",
            "--strategy",
            "ema_cross",
            *MARKET,
            "--csv",
            str(folder),
            "--json",
            str(document),
        )
        == 0
    )
    capsys.readouterr()
    expected = backtest(
        get_strategy("ema_cross"),
        load_bars(database, "binance", "BTC/USDT", "1h"),
        None,
        Costs(0.001),
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "equity.csv",
        "fills.csv",
        "stats.csv",
        "trades.csv",
    ]
    stats = pd.read_csv(folder / "stats.csv", index_col="stat")["value"]
    assert list(stats.index) == list(expected.stats.index)
    assert stats["sharpe"] == pytest.approx(expected.stats["sharpe"], rel=1e-12)
    trades = pd.read_csv(folder / "trades.csv")
    assert len(trades) == len(expected.trades) and "duration_ms" in trades.columns
    assert pd.Timestamp(trades["entry_time"].iloc[0]) == expected.trades["entry_time"].iloc[0]
    np.testing.assert_allclose(trades["pnl"], expected.trades["pnl"], rtol=1e-12)
    assert trades["duration_ms"].iloc[0] == expected.trades["duration"].iloc[0] / pd.Timedelta(
        "1ms"
    )
    equity = pd.read_csv(folder / "equity.csv")
    assert list(equity.columns) == ["ts", "equity", "cash", "position"]
    assert len(equity) == len(expected.equity)
    assert len(pd.read_csv(folder / "fills.csv")) == len(expected.fills)
    data = json.loads(document.read_text(encoding="utf-8"))
    assert data["strategy"] == "ema_cross" and data["params"] == {"fast": 12, "slow": 26}
    assert data["market"] == {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}
    assert data["stats"]["total_return"] == pytest.approx(expected.stats["total_return"])
    assert len(data["trades"]) == len(expected.trades)
    assert data["trades"][-1]["exit_time"] is None or data["trades"][-1]["exit_reason"] != "open"


def test_backtest_from_a_start_loads_the_history_window_before_it(database, tmp_path, capsys):
    """``--start``: the strategy's history window of stored bars before the start is loaded as
    history, trading starts at the start: ``research.backtest(..., start=...)`` on all bars."""
    document = tmp_path / "from.json"
    assert (
        run(
            database,
            "backtest",
            "--strategy",
            "ema_cross",
            *MARKET,
            "--param",
            "slow=40",
            "--start",
            "2018-05-20",
            "--json",
            str(document),
        )
        == 0
    )
    out = capsys.readouterr().out
    spec = get_strategy("ema_cross")
    bars = load_bars(database, "binance", "BTC/USDT", "1h")
    expected = backtest(spec, bars, {"slow": 40}, Costs(0.001), start="2018-05-20")
    before = int(np.searchsorted(bars.ts, expected.ts[0]))
    history = min(before, spec.history_window({"slow": 40}))  # all there are: 780
    assert f"{len(expected.ts):,} bars (and {history:,} before them as history)" in out
    data = json.loads(document.read_text(encoding="utf-8"))
    assert data["stats"]["start_ts"] == expected.stats["start_ts"] == bars.ts[before]
    assert data["stats"]["total_return"] == pytest.approx(expected.stats["total_return"], rel=1e-12)
    assert len(data["trades"]) == len(expected.trades) > 0


def test_backtest_and_sweep_resample_to_a_coarser_timeframe(database, capsys):
    assert (
        run(
            database,
            "backtest",
            "--strategy",
            "sma_cross",
            *MARKET,
            "--resample",
            "4h",
            "--param",
            "fast=5",
            "--param",
            "slow=20",
        )
        == 0
    )
    out = capsys.readouterr().out
    hourly = load_bars(database, "binance", "BTC/USDT", "1h")
    coarse = resample(hourly, "4h")
    assert f"binance BTC/USDT 1h resampled to 4h: {len(coarse):,} bars" in out
    expected = backtest(get_strategy("sma_cross"), coarse, {"fast": 5, "slow": 20}, Costs(0.001))
    count = re.search(r"^trade_count\s+(\d+)", out, re.MULTILINE)
    assert int(count.group(1)) == expected.stats["trade_count"]
    assert (
        run(
            database,
            "sweep",
            "--strategy",
            "sma_cross",
            *MARKET,
            "--resample",
            "4h",
            "--grid",
            "fast=3,5",
            "--grid",
            "slow=20",
            "--no-progress",
            "--min-trades",
            "0",
        )
        == 0
    )
    assert f"({len(coarse):,} bars)" in capsys.readouterr().out
    assert run(database, "backtest", "--strategy", "sma_cross", *MARKET, "--resample", "30m") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "whole multiple" in err


def test_sweep_prints_the_best_rows_and_counts_invalid_combinations(database, tmp_path, capsys):
    csv = tmp_path / "rows.csv"
    status = run(
        database,
        "sweep",
        "--strategy",
        "sma_cross",
        *MARKET,
        "--grid",
        "fast=5:30:5",
        "--grid",
        "slow=20:60:20",
        "--top",
        "4",
        "--no-progress",
        "--csv",
        str(csv),
    )
    out = capsys.readouterr().out
    assert status == 0
    pairs = list(itertools.product(range(5, 31, 5), range(20, 61, 20)))
    invalid = sum(1 for f, s in pairs if f >= s)
    assert (
        f"{len(pairs) - invalid} parameter sets evaluated of {len(pairs)} combinations "
        f"({invalid} invalid)"
    ) in out
    rows = pd.read_csv(csv)  # every combination, the invalid ones marked with their reason
    assert len(rows) == len(pairs) and (~rows["valid"]).sum() == invalid
    assert set(rows.loc[~rows["valid"], "invalid_reason"]) == {"constraint '1 <= fast < slow'"}
    ranked = rows[rows["trade_count"] >= 10].sort_values("sharpe", ascending=False).head(4)
    few = int((rows["trade_count"] < 10).sum())
    assert (
        f"best {len(ranked)} by sharpe, among the parameter sets with at least 10 closed "
        f"trades ({few} had fewer; --min-trades)"
    ) in out
    # the table: from the line after the heading to the first blank line (the overfitting
    # reading and the stored sweep's id follow it)
    table = out.split("--min-trades):\n")[1].split("\n\n")[0].splitlines()
    printed = [line.split()[:2] for line in table if line.strip()][1:]
    assert printed == [[str(f), str(s)] for f, s in zip(ranked["fast"], ranked["slow"])]
    # the stored sweep's id is hexadecimal ("85e412e4" is not a number in scientific notation)
    assert not SCIENTIFIC.search(re.sub(r"sweep [0-9a-f]{8}\b", "sweep ID", out))


def test_user_errors_print_one_line_and_exit_2(database, capsys):
    assert run(database, "backtest", "--strategy", "sma_crss", *MARKET) == 2
    assert "did you mean 'sma_cross'" in capsys.readouterr().err
    assert run(database, "backtest", "--strategy", "sma_cross", *MARKET, "--param", "fsat=3") == 2
    assert "did you mean 'fast'" in capsys.readouterr().err
    assert (
        run(
            database,
            "sweep",
            "--strategy",
            "sma_cross",
            "--exchange",
            "binance",
            "--symbol",
            "ETH/USDT",
            "--timeframe",
            "1h",
            "--grid",
            "fast=5,10",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ETH/USDT" in err
    assert (
        run(
            database,
            "sweep",
            "--strategy",
            "sma_cross",
            *MARKET,
            "--grid",
            "fast=50",
            "--grid",
            "slow=20",
        )
        == 2
    )
    assert "none of the 1 combinations" in capsys.readouterr().err


@pytest.mark.slow
def test_report_renders_a_standalone_page_without_code(database, tmp_path, capfd):
    status = run(
        database,
        "report",
        "--strategy",
        "sma_cross",
        *MARKET,
        "--param",
        "fast=12",
        "--out",
        str(tmp_path),
    )
    assert status == 0
    notebook = tmp_path / "report_sma_cross_binance_BTC-USDT_1h.ipynb"
    assert notebook.exists()
    html = notebook.with_suffix(".html").read_text(encoding="utf-8")
    assert "fast=12" in html and "sharpe" in html and "buy_hold_return" in html
    for heading in (
        "Statistics",
        "Chart",
        "Monthly returns",
        "Worst drawdowns",
        "Rolling Sharpe ratio",
        "Trades",
    ):
        assert f">{heading}" in html, heading
    assert "hl-ipython3" not in html and "import_sample_if_empty" not in html  # no code
    assert re.findall(r"<script[^>]*\ssrc=", html) == []  # opens offline
    assert "Plotly.newPlot" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [notebook.name, notebook.with_suffix(".html").name]
    )
    # the kernel's stderr is this process's: nothing from papermill or the kernel's log
    err = capfd.readouterr().err
    assert "Error" not in err and "papermill" not in err and "Kernel" not in err, err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--exchange", "binance", "--symbol", "DOGE/USDT", "--timeframe", "1h"], "DOGE/USDT"),
        ([*MARKET, "--start", "2030-01-01"], "stored close times run from"),
        ([*MARKET, "--resample", "30m"], "whole multiple"),
        ([*MARKET, "--param", "slow=5000"], "bars"),
    ],
)
def test_report_user_errors_are_one_line_and_leave_nothing(
    database, tmp_path, capsys, arguments, message
):
    out = tmp_path / "out"
    assert run(database, "report", "--strategy", "sma_cross", *arguments, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err and "papermill" not in err.lower()
    assert not out.exists() or not any(out.iterdir())


def test_a_failing_report_leaves_no_half_written_files(database, tmp_path, monkeypatch):
    """A bug in the notebook keeps its traceback (not exit 2) and leaves nothing behind."""
    import papermill

    from research import report

    def explode(source, output, **_):
        with open(output, "w", encoding="utf-8") as partial:
            partial.write("{half")
        raise RuntimeError("kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", explode)
    with pytest.raises(RuntimeError, match="kernel died"):
        report.run_report(
            "sma_cross", {}, "binance", "BTC/USDT", "1h", database_url=database, out_dir=tmp_path
        )
    assert list(tmp_path.iterdir()) == []
