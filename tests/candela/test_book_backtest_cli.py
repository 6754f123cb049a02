"""``candela backtest`` of a portfolio strategy (``--symbols``, or ``--bot`` of a portfolio bot):
the same book as ``research.backtest_portfolio``, its exports, and its user errors."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from sample_databases import sample_database

from candela.cli import main
from research.kernels.portfolio_records import BookLimits
from research.portfolio.backtest import backtest_portfolio
from research.portfolio.universe import load_universe
from research.types import Costs, Stops
from strategies.portfolio_registry import get_portfolio

SYMBOLS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")
UNIVERSE = ["--exchange", "binance", "--timeframe", "1h", "--symbols", ",".join(SYMBOLS)]


@pytest.fixture(scope="module")
def database(tmp_path_factory, sample_dir) -> str:
    return sample_database(tmp_path_factory.mktemp("book"), sample_dir, SYMBOLS)


def run(database: str, *arguments: str) -> int:
    return main(["--database-url", database, "backtest", *arguments])


def error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def same_stats(document: dict, expected: pd.Series) -> None:
    """The JSON export's stats equal ``expected`` exactly (``nan`` as null, infinities as text)."""
    assert list(document["stats"]) == list(expected.index)
    for name, value in expected.items():
        got = document["stats"][name]
        if math.isnan(value):
            assert got is None, name
        elif math.isinf(value):
            assert got == ("inf" if value > 0 else "-inf"), name
        else:
            assert got == value, name


def test_symbols_backtest_equals_the_library_and_exports_the_book(database, tmp_path, capsys):
    folder, document_path = tmp_path / "csv", tmp_path / "book.json"
    html = tmp_path / "book.html"
    arguments = ["--strategy", "momentum_rotation", *UNIVERSE, "--param", "top=1"]
    arguments += ["--start", "2018-05-01", "--fee", "0.002", "--cash", "5000"]
    exports = ["--csv", str(folder), "--json", str(document_path), "--html", str(html)]
    assert run(database, *arguments, *exports) == 0
    out = capsys.readouterr().out

    spec = get_portfolio("momentum_rotation")
    params = spec.make_params({"top": 1})
    panel = load_universe(
        database,
        "binance",
        "1h",
        list(SYMBOLS),
        start="2018-05-01",
        history=spec.history_window(params, 3_600_000),
    )
    expected = backtest_portfolio(
        spec, panel, params, Costs(0.002), initial_cash=5000.0, start="2018-05-01"
    )
    document = json.loads(document_path.read_text())
    same_stats(document, expected.stats)
    assert document["market"] == {
        "exchange": "binance",
        "timeframe": "1h",
        "symbols": list(SYMBOLS),
    }
    assert document["params"] == dict(params._asdict())
    assert len(document["trades"]) == len(expected.trades)

    # what it prints: the universe, the history before the start, the per-market table
    history = len(panel) - len(expected.panel)
    assert f"3 markets ({', '.join(SYMBOLS)})" in out
    assert f"{len(expected.panel):,} grid bars (and {history:,} before them as history)" in out
    market_lines = [line for line in out.splitlines() if line.split(" ")[0] in SYMBOLS]
    assert [line.split()[0] for line in market_lines[:3]] == list(SYMBOLS)
    assert "e+" not in out and "e-0" not in out  # no scientific notation

    # the files: the single-market ones with a position column per market, plus markets.csv
    assert sorted(path.name for path in folder.iterdir()) == [
        "equity.csv",
        "fills.csv",
        "markets.csv",
        "stats.csv",
        "trades.csv",
    ]
    equity = pd.read_csv(folder / "equity.csv")
    assert list(equity.columns) == ["ts", "equity", "cash"] + [f"position_{s}" for s in SYMBOLS]
    assert equity["equity"].tolist() == expected.equity.tolist()
    markets = pd.read_csv(folder / "markets.csv", index_col="market")
    assert list(markets.index) == list(SYMBOLS)
    assert markets["contribution"].tolist() == expected.markets["contribution"].tolist()
    assert len(pd.read_csv(folder / "fills.csv")) == len(expected.fills)
    text = html.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in text and "contribution by market" in text
    assert re.findall(r"<script[^>]*\ssrc=", text) == []  # the library inlined: opens offline


def test_bot_backtest_of_a_portfolio_bot_is_the_bots_book(database, tmp_path, capsys):
    config = {
        "id": "rotation",
        "portfolio": "momentum_rotation",
        "params": {"top": 2, "window": 48},
        "universe": {"exchange": "binance", "timeframe": "1h", "symbols": list(SYMBOLS)},
        "initial_cash": 8000,
        "costs": {"fee_rate": 0.001, "slippage_bps": 3},
        "stops": {"stop_loss": 0.05},
        "limits": {"max_weight": 0.6, "max_gross": 1.0, "max_drawdown": 0.5},
        "rebalance": {"every": 24},
        "start": "2018-05-10T00:00:00Z",
    }
    path, document_path = tmp_path / "rotation.json", tmp_path / "run.json"
    path.write_text(json.dumps(config))
    assert run(database, "--bot", str(path), "--json", str(document_path)) == 0
    out = capsys.readouterr().out
    assert "portfolio bot rotation (version 1): momentum_rotation" in out
    assert "trading from 2018-05-10 00:00:00+00:00 (the config's start)" in out

    from research.kernels.portfolio_records import Rebalance

    spec = get_portfolio("momentum_rotation")
    params = spec.make_params(config["params"])
    panel = load_universe(
        database,
        "binance",
        "1h",
        list(SYMBOLS),
        start="2018-05-10",
        history=spec.history_window(params, 3_600_000),
    )
    expected = backtest_portfolio(
        spec,
        panel,
        params,
        Costs(0.001, 3.0),
        stops=Stops(stop_loss=0.05),
        limits=BookLimits(max_weight=0.6, max_gross=1.0, max_drawdown=0.5),
        rebalance=Rebalance(every=24),
        initial_cash=8000.0,
        start="2018-05-10",
    )
    same_stats(json.loads(document_path.read_text()), expected.stats)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--strategy", "momentum_rotation", *UNIVERSE, "--symbol", "BTC/USDT"], "not both"),
        (
            ["--strategy", "momentum_rotation", "--exchange", "binance", "--symbol", "BTC/USDT"]
            + ["--timeframe", "1h"],
            "momentum_rotation is a portfolio strategy: give its markets with --symbols",
        ),
        (["--strategy", "momentum_rotation", *UNIVERSE, "--resample", "4h"], "--resample"),
        (["--strategy", "no_such_book", *UNIVERSE], "no_such_book"),
        (
            ["--strategy", "momentum_rotation", *UNIVERSE[:4], "--symbols", "BTC/USDT,DOGE/USDT"],
            "DOGE/USDT",
        ),
        (["--strategy", "momentum_rotation", *UNIVERSE, "--start", "2030-01-01"], "2030"),
        (["--strategy", "momentum_rotation", *UNIVERSE, "--fee", "0.9"], "fee_rate"),
        (["--strategy", "momentum_rotation", *UNIVERSE, "--param", "top=0"], "top"),
        (["--symbols", "BTC/USDT"], "--strategy --exchange --timeframe"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(
    database, tmp_path, capsys, arguments, expected
):
    document = tmp_path / "run.json"
    assert run(database, *arguments, "--json", str(document)) == 2
    assert expected in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_bot_file_sets_the_universe_so_symbols_is_refused(database, tmp_path, capsys):
    path = tmp_path / "book.json"
    path.write_text(
        json.dumps(
            {
                "portfolio": "momentum_rotation",
                "universe": {"exchange": "binance", "timeframe": "1h", "symbols": ["BTC/USDT"]},
            }
        )
    )
    assert run(database, "--bot", str(path), "--symbols", "ETH/USDT") == 2
    assert "drop --symbols" in error_line(capsys)
