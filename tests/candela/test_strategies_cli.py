"""``candela strategies list|show``, strategy references in ``backtest``/``sweep``/``report``, and
the CLI's line between a user's error (one line, exit 2) and a bug (its traceback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from strategy_folders import write_strategy

from candela.cli import main
from research.backtesting import backtest
from research.data import load_bars
from research.formatting import format_value
from research.types import Costs
from runner.strategy_source import resolve_strategy

MARKET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]


def run(database: str, *arguments: str) -> int:
    return main(["--database-url", database, *arguments])


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_list_shows_shipped_and_user_strategies_with_source_and_first_line(strategy_folder, capsys):
    path = write_strategy(
        strategy_folder,
        "mine.py",
        name="mine",
        description="Long above the SMA.\nDetails that the list leaves out.",
    )
    assert main(["strategies", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert {
        "sma_cross",
        "ema_cross",
        "rsi_reversion",
        "bollinger_breakout",
        "donchian_breakout",
        "mine",
    } <= set(rows)
    assert re.match(
        r"sma_cross\s+shipped\s+Long while the fast simple moving average", rows["sma_cross"]
    )
    assert str(path.resolve()) in rows["mine"] or os.path.relpath(path) in rows["mine"]
    assert rows["mine"].endswith("Long above the SMA.") and "Details" not in out
    assert f"user strategy folders: {strategy_folder}" in out


def test_show_prints_parameters_constraints_lookback_history_and_source(strategy_folder, capsys):
    assert main(["strategies", "show", "sma_cross"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+fast\s+int\s+10\s+5\.\.54 \(50 values\)$", out, re.MULTILINE)
    assert re.search(r"^\s+slow\s+int\s+50\s+20\.\.216 step 4 \(50 values\)$", out, re.MULTILINE)
    assert re.search(r"^look-back\s+49 bars for the defaults", out, re.MULTILINE)
    assert re.search(r"^history window\s+50 bars for the defaults", out, re.MULTILINE)
    assert re.search(r"^constraints\s+1 <= fast < slow$", out, re.MULTILINE)
    assert re.search(r"^stops\s+none$", out, re.MULTILINE) and re.search(
        r"^long only\s+yes$", out, re.MULTILINE
    )
    assert "strategies/sma_cross.py" in out and "Long while the fast simple moving average" in out

    write_strategy(strategy_folder, "guarded.py", name="guarded", stops="Stops(stop_loss=0.04)")
    assert main(["strategies", "show", "guarded", "--param", "window=9"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^look-back\s+8 bars for these parameters", out, re.MULTILINE)
    assert re.search(r"^history window\s+9 bars for these parameters", out, re.MULTILINE)
    assert re.search(r"^stops\s+stop_loss 0\.04$", out, re.MULTILINE)
    assert re.search(r"^\s+window\s+int\s+5\s+3\.\.8 \(6 values\)$", out, re.MULTILINE)


def test_show_and_list_refuse_bad_references_in_one_line(strategy_folder, capsys):
    assert main(["strategies", "show", "sma_cros"]) == 2
    assert "did you mean 'sma_cross'" in one_line_error(capsys)
    assert main(["strategies", "show", "sma_cross", "--param", "fsat=3"]) == 2
    assert "did you mean 'fast'" in one_line_error(capsys)
    write_strategy(strategy_folder, "clash.py", name="sma_cross")
    assert main(["strategies", "list"]) == 2
    assert "defined twice" in one_line_error(capsys)


def test_backtest_takes_user_names_and_module_references(database, strategy_folder, capsys):
    write_strategy(strategy_folder, "mine.py", name="mine")
    bars = load_bars(database, "binance", "BTC/USDT", "1h")
    for reference in ("mine", "strategies.sma_cross:sma_cross"):
        assert run(database, "backtest", "--strategy", reference, *MARKET) == 0
        out = capsys.readouterr().out
        expected = backtest(resolve_strategy(reference), bars, None, Costs())
        count = re.search(r"^trade_count\s+(\d+)  ", out, re.MULTILINE)
        assert count and int(count.group(1)) == expected.stats["trade_count"] > 0
        total = format_value("return", expected.stats["total_return"])  # e.g. +1.38 %
        assert re.search(r"^total_return\s+" + re.escape(total), out, re.MULTILINE)


def test_sweep_of_a_user_strategy_runs_in_worker_processes(database, strategy_folder, tmp_path):
    """A fresh ``candela sweep`` process: its loky workers import the user module by name."""
    write_strategy(strategy_folder, "swept.py", name="swept")
    csv = tmp_path / "rows.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "candela.cli",
            "--database-url",
            database,
            "sweep",
            "--strategy",
            "swept",
            *MARKET,
            "--grid",
            "window=3,5,8,13",
            "--n-jobs",
            "2",
            "--no-progress",
            "--csv",
            str(csv),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CANDELA_STRATEGY_PATH": str(strategy_folder)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "4 parameter sets evaluated of 4 combinations (0 invalid)" in done.stdout
    assert len(csv.read_text().splitlines()) == 5


@pytest.mark.slow
def test_report_executes_the_notebook_for_a_user_strategy(
    database, strategy_folder, tmp_path, capsys
):
    write_strategy(strategy_folder, "reported.py", name="reported")
    assert (
        run(
            database,
            "report",
            "--strategy",
            "reported",
            *MARKET,
            "--param",
            "window=7",
            "--out",
            str(tmp_path),
        )
        == 0
    )
    html = (tmp_path / "report_reported_binance_BTC-USDT_1h.html").read_text(encoding="utf-8")
    assert "reported" in html and "window=7" in html


def test_bad_input_is_one_line_with_exit_2(database, strategy_folder, capsys):
    write_strategy(strategy_folder, "mine.py", name="mine")
    cases = [
        (["backtest", "--strategy", "mine", *MARKET, "--param", "window=five"], "must be int"),
        (
            ["backtest", "--strategy", "mine", *MARKET, "--param", "windw=5"],
            "did you mean 'window'",
        ),
        (["backtest", "--strategy", "nope:SPEC", *MARKET], "cannot import strategy module 'nope'"),
        (["backtest", "--strategy", "mine", *MARKET, "--fee", "0.9"], "fee_rate"),
        (["backtest", "--strategy", "mine", *MARKET, "--cash", "-1"], "--cash must be a positive"),
        (
            [
                "backtest",
                "--strategy",
                "mine",
                "--exchange",
                "binance",
                "--symbol",
                "BTCUSDT",
                "--timeframe",
                "1h",
            ],
            "unified BASE/QUOTE",
        ),
        (
            ["backtest", "--strategy", "mine", *MARKET, "--start", "2030-01-01"],
            "no stored bar closes at or after the start 2030-01-01",
        ),
        (
            ["backtest", "--strategy", "mine", *MARKET, "--end", "2001-01-01"],
            "no bars for binance BTC/USDT 1h",
        ),
        (["backtest", *MARKET], "give --strategy (or --bot FILE"),
        (
            ["backtest", "--strategy", "mine", *MARKET, "--param", "window=2000"],
            "needs at least 2000 bars",
        ),
        (
            ["sweep", "--strategy", "mine", *MARKET, "--grid", "window=3,5", "--metric", "sharp"],
            "--metric 'sharp'",
        ),
        (["sweep", "--strategy", "mine", *MARKET, "--grid", "windw=3,5"], "did you mean 'window'"),
        (["sweep", "--strategy", "mine", *MARKET, "--oos-fraction", "1.5"], "--oos-fraction"),
        (["report", "--strategy", "mine", *MARKET, "--param", "window=x"], "must be int"),
        (
            ["report", "--strategy", "mine", *MARKET, "--notebook", "nowhere.ipynb"],
            "no such notebook",
        ),
    ]
    for arguments, words in cases:
        assert run(database, *arguments) == 2, arguments
        assert words in one_line_error(capsys), arguments


def test_a_bug_in_a_strategy_keeps_its_traceback(database, strategy_folder, capsys):
    """numpy raises ``ValueError`` for the planted bug: the CLI must not take it for bad input."""
    write_strategy(strategy_folder, "buggy.py", "broadcast_bug", name="buggy")
    with pytest.raises(ValueError, match="could not be broadcast"):
        run(database, "backtest", "--strategy", "buggy", *MARKET)


def test_the_command_shows_a_bug_s_traceback_and_exits_1(database, strategy_folder):
    write_strategy(strategy_folder, "buggy.py", "broadcast_bug", name="buggy")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "candela.cli",
            "--database-url",
            database,
            "backtest",
            "--strategy",
            "buggy",
            *MARKET,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CANDELA_STRATEGY_PATH": str(strategy_folder)},
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "buggy.py" in done.stderr and "could not be broadcast" in done.stderr
