"""``candela bots create --portfolio``: a portfolio bot's config written only after the portfolio
look-ahead and history-window checks pass on the universe's stored bars; it loads back as the
same bot and ``candela backtest --bot`` backtests it."""

from __future__ import annotations

import json
import textwrap

import pytest
from sample_databases import sample_database

from candela.cli import main
from runner.config import load_bot_config
from runner.portfolio_config import PortfolioBotConfig

SYMBOLS = ("BTC/USDT", "ETH/USDT")
UNIVERSE = ["--exchange", "binance", "--timeframe", "1h", "--symbols", ",".join(SYMBOLS)]


@pytest.fixture(scope="module")
def database(tmp_path_factory, sample_dir) -> str:
    return sample_database(tmp_path_factory.mktemp("create_book"), sample_dir, SYMBOLS)


def create(database: str, bots, bot_id: str, *options: str) -> int:
    return main(
        ["--database-url", database, "bots", "create", bot_id, *options, "--bots", str(bots)]
    )


def error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_create_checks_the_portfolio_then_writes_a_config_that_loads_and_backtests(
    database, tmp_path, capsys
):
    bots = tmp_path / "bots"
    options = ["--portfolio", "momentum_rotation", *UNIVERSE, "--params", "top=1", "window=48"]
    options += ["--max-weight", "0.8", "--max-drawdown", "0.4", "--stop-loss", "0.1"]
    options += ["--fee", "0.002", "--cash", "5000", "--start", "2018-05-10"]
    assert create(database, bots, "rotation", *options) == 0
    out = capsys.readouterr().out
    assert "look-ahead check of momentum_rotation" in out and "history-window check" in out
    assert out.count(": OK") == 2
    config = load_bot_config(bots / "rotation.json")
    assert isinstance(config, PortfolioBotConfig)
    assert (config.bot_id, config.strategy, config.symbols) == (
        "rotation",
        "momentum_rotation",
        SYMBOLS,
    )
    assert config.params == {"top": 1, "window": 48, "every_hours": 168}
    assert (config.limits.max_weight, config.limits.max_drawdown) == (0.8, 0.4)
    assert config.stops.stop_loss == 0.1 and config.costs.fee_rate == 0.002
    assert config.initial_cash == 5000.0 and config.start == 1525910400000  # 2018-05-10 UTC
    assert main(["--database-url", database, "backtest", "--bot", str(bots / "rotation.json")]) == 0
    assert "portfolio bot rotation (version 1)" in capsys.readouterr().out


LOOKING_AHEAD = '''
import numpy as np
from research.portfolio_model import portfolio


@portfolio(lookback=0, name="peeking")
def peeking(panel, k: int = 1):
    """Long the market that rises next bar: uses the future."""
    ahead = np.roll(panel.close, -1, axis=0) > panel.close
    return np.where(ahead, 0.5, 0.0)
'''


def test_a_portfolio_that_looks_ahead_is_refused_and_nothing_written(
    database, tmp_path, capsys, monkeypatch
):
    (tmp_path / "peek_book.py").write_text(textwrap.dedent(LOOKING_AHEAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    bots = tmp_path / "bots"
    assert create(database, bots, "peek", "--portfolio", "peek_book:peeking", *UNIVERSE) == 2
    assert "bot 'peek' not created, nothing written: look-ahead check" in error_line(capsys)
    assert not bots.exists() or list(bots.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--portfolio", "momentum_rotation", *UNIVERSE, "--symbol", "BTC/USDT"], "--symbol"),
        (["--portfolio", "momentum_rotation", *UNIVERSE, "--max-position", "0.5"], "one-market"),
        (
            ["--portfolio", "momentum_rotation", "--exchange", "binance", "--timeframe", "1h"],
            "--symbols",
        ),
        (["--portfolio", "no_such_book", *UNIVERSE], "no_such_book"),
        (
            ["--portfolio", "momentum_rotation", *UNIVERSE[:4], "--symbols", "BTC/USDT,DOGE/USDT"],
            "DOGE/USDT",
        ),
        (["--portfolio", "momentum_rotation", *UNIVERSE, "--max-weight", "-1"], "max_weight"),
        (["--portfolio", "momentum_rotation", *UNIVERSE, "--params", "top=0"], "top"),
        (
            ["--portfolio", "momentum_rotation", *UNIVERSE, "--params", "window=5000"],
            "needs at least",
        ),
        (
            [
                "--strategy",
                "sma_cross",
                "--symbol",
                "BTC/USDT",
                "--exchange",
                "binance",
                "--timeframe",
                "1h",
                "--max-gross",
                "2",
            ],
            "are for a portfolio bot",
        ),
        (["--exchange", "binance", "--timeframe", "1h"], "give --strategy and --symbol"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(database, tmp_path, capsys, options, expected):
    bots = tmp_path / "bots"
    assert create(database, bots, "book", *options) == 2
    assert expected in error_line(capsys)
    assert not bots.exists() or list(bots.iterdir()) == []


def test_an_id_in_use_is_refused(database, tmp_path, capsys):
    bots = tmp_path / "bots"
    bots.mkdir()
    (bots / "other.json").write_text(json.dumps({"id": "taken", "strategy": "sma_cross"}))
    assert create(database, bots, "taken", "--portfolio", "momentum_rotation", *UNIVERSE) == 2
    assert "already used by" in error_line(capsys)
