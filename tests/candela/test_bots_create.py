"""``candela bots create`` (checks first, then one config file) and ``candela backtest --bot``
(the bot's exact backtest, equal to what its replay records)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from sqlalchemy import select
from strategy_folders import write_strategy

from candela.cli import main
from candela.cli import strategy_model as model
from candela.core import schema
from candela.core.db import connect, upgrade
from data_pipeline.importer import import_candles
from research.data import load_bars
from research.formatting import fmt_money
from runner.config import load_bot_config
from runner.ledger import trade_rows

MARKET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]
SAMPLE_FILES = ("binance_BTC-USDT_1h.csv.gz", "binance_BTC-USDT_1d.csv.gz")


def import_sample(url: str, sample_dir) -> None:
    engine = connect(url, require_schema=False)
    upgrade(engine)
    for name in SAMPLE_FILES:
        import_candles(
            engine, sample_dir / "ohlcv" / name, "binance", "BTC/USDT", name.split("_")[-1][:2]
        )
    engine.dispose()


@pytest.fixture(scope="module")
def database(tmp_path_factory, sample_dir) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('create') / 'create.db'}"
    import_sample(url, sample_dir)
    return url


def create(database: str, bots, bot_id: str, *options: str) -> int:
    return main(
        ["--database-url", database, "bots", "create", bot_id, *options, "--bots", str(bots)]
    )


def error_line(capsys) -> tuple[str, str]:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return out, err


def test_create_checks_the_strategy_then_writes_a_valid_config(database, tmp_path, capsys):
    bots = tmp_path / "bots"
    assert (
        create(
            database,
            bots,
            "sma-1h",
            "--strategy",
            "sma_cross",
            *MARKET,
            "--params",
            "fast=8",
            "slow=40",
            "--fee",
            "0.002",
            "--slippage-bps",
            "2",
            "--cash",
            "5000",
            "--max-drawdown",
            "0.3",
            "--start",
            "2018-05-20",
            "--description",
            "promoted from the notebook",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "look-ahead check of sma_cross" in out and out.count(": OK") == 2
    assert "on the last 1498 stored bars of binance BTC/USDT 1h" in out
    assert "candela backtest --bot " in out
    path = bots / "sma-1h.json"
    config = load_bot_config(path)
    assert (config.bot_id, config.strategy, config.params) == (
        "sma-1h",
        "sma_cross",
        {"fast": 8, "slow": 40},
    )
    assert config.market == ("binance", "BTC/USDT", "1h") and config.initial_cash == 5000
    assert (config.costs.fee_rate, config.costs.slippage_bps) == (0.002, 2.0)
    assert config.risk.max_drawdown == 0.3 and math.isnan(config.risk.daily_loss_limit)
    assert config.start == 1_526_774_400_000 and config.version == 1
    assert config.description == "promoted from the notebook"
    assert json.loads(path.read_text())["start"] == "2018-05-20T00:00:00+00:00"
    assert [p.name for p in bots.iterdir()] == ["sma-1h.json"]  # no temporary file left


def test_stop_options_override_the_strategy_s_own_stops(
    database, tmp_path, strategy_folder, capsys
):
    write_strategy(
        strategy_folder,
        "guarded.py",
        name="guarded",
        stops="Stops(stop_loss=0.04, take_profit=0.1)",
    )
    bots = tmp_path / "bots"
    assert create(database, bots, "kept", "--strategy", "guarded", *MARKET) == 0
    assert (
        create(
            database,
            bots,
            "changed",
            "--strategy",
            "guarded",
            *MARKET,
            "--trailing-stop",
            "0.02",
            "--take-profit",
            "none",
        )
        == 0
    )
    kept, changed = (
        json.loads((bots / f"{name}.json").read_text())["stops"] for name in ("kept", "changed")
    )
    assert kept == {"stop_loss": 0.04, "take_profit": 0.1, "trailing_stop": None}
    assert changed == {"stop_loss": 0.04, "take_profit": None, "trailing_stop": 0.02}


@pytest.mark.parametrize(
    ("kind", "failed"), [("peeks", "look-ahead check"), ("short_memory", "history-window check")]
)
def test_a_strategy_that_fails_a_check_is_refused_and_nothing_written(
    database, tmp_path, strategy_folder, capsys, kind, failed
):
    write_strategy(strategy_folder, f"{kind}.py", kind, name=kind)
    bots = tmp_path / "bots"
    assert create(database, bots, "refused", "--strategy", kind, *MARKET) == 2
    out, err = error_line(capsys)
    assert f"{failed} of {kind}" in err and "FAILED" in err and "nothing written" in err
    assert "FAILED" in out  # the full report, with the offending bars, is printed above
    assert not bots.exists() or not list(bots.iterdir())


def test_a_market_without_enough_bars_is_refused(database, tmp_path, strategy_folder, capsys):
    write_strategy(strategy_folder, "mine.py", name="mine")
    bots = tmp_path / "bots"
    daily = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1d"]
    assert (
        create(
            database, bots, "long-window", "--strategy", "mine", *daily, "--params", "window=400"
        )
        == 2
    )
    _, err = error_line(capsys)
    assert "binance BTC/USDT 1d has 305 stored bars" in err and "needs at least 401" in err
    assert (
        create(
            database,
            bots,
            "elsewhere",
            "--strategy",
            "mine",
            "--exchange",
            "binance",
            "--symbol",
            "ETH/USDT",
            "--timeframe",
            "1h",
        )
        == 2
    )
    assert "no bars for binance ETH/USDT 1h" in error_line(capsys)[1]
    assert not bots.exists()


def test_bad_options_and_used_ids_are_one_line_errors(database, tmp_path, capsys):
    bots = tmp_path / "bots"
    base = ["--strategy", "sma_cross", *MARKET]
    assert create(database, bots, "first", *base) == 0
    capsys.readouterr()
    (bots / "other.json").write_text(
        json.dumps(
            {
                "id": "taken",
                "strategy": "sma_cross",
                "exchange": "binance",
                "symbol": "BTC/USDT",
                "timeframe": "1h",
            }
        )
    )
    cases = [
        ("first", base, "exists already"),
        ("taken", base, "already used by"),
        ("bad id", base, "'bad id' is not a valid bot id"),
        ("x", ["--strategy", "sma_cros", *MARKET], "did you mean 'sma_cross'"),
        ("x", [*base, "--params", "fsat=3"], "did you mean 'fast'"),
        (
            "x",
            [*base, "--params", "fast=60"],
            "constraint '1 <= fast < slow' of strategy 'sma_cross' does not hold for fast=60",
        ),
        ("x", [*base, "--max-drawdown", "2"], "risk.max_drawdown"),
        ("x", [*base, "--start", "soon"], "'soon' is not a time"),
        (
            "x",
            [
                "--strategy",
                "sma_cross",
                "--exchange",
                "binance",
                "--symbol",
                "BTCUSDT",
                "--timeframe",
                "1h",
            ],
            "unified BASE/QUOTE",
        ),
    ]
    for bot_id, options, words in cases:
        assert create(database, bots, bot_id, *options) == 2, bot_id
        assert words in error_line(capsys)[1], (bot_id, words)
    assert sorted(p.name for p in bots.iterdir()) == ["first.json", "other.json"]
    with pytest.raises(SystemExit) as exit_:
        create(database, bots, "y", *base, "--stop-loss", "abc")
    assert exit_.value.code == 2 and "is not a number or 'none'" in capsys.readouterr().err


def test_a_bug_in_the_strategy_keeps_its_traceback(database, tmp_path, strategy_folder):
    write_strategy(strategy_folder, "buggy.py", "broadcast_bug", name="buggy")
    with pytest.raises(ValueError, match="could not be broadcast"):
        create(database, tmp_path / "bots", "buggy", "--strategy", "buggy", *MARKET)
    assert not (tmp_path / "bots").exists()


def recorded_fills(url: str, bot_id: str) -> np.ndarray:
    engine = connect(url)
    with engine.connect() as connection:
        rows = trade_rows(connection, bot_id)
    engine.dispose()
    return np.array(
        [(r["ts"], r["side"] == "buy", r["price"], r["size"], r["fee"]) for r in rows],
        dtype=np.float64,
    ).reshape(-1, 5)


def backtest_fills(result) -> np.ndarray:
    fills = result.fills
    ts = fills["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    return (
        np.column_stack(
            [ts, fills["side"].to_numpy() == "buy", fills["price"], fills["size"], fills["fee"]]
        )
        .astype(np.float64)
        .reshape(-1, 5)
    )


def test_backtest_bot_reproduces_the_bot_s_replay_bit_for_bit(
    database_url, sample_dir, tmp_path, capsys
):
    """Create a bot that starts mid-series, replay it through the runner, and compare."""
    import_sample(database_url, sample_dir)
    bots = tmp_path / "bots"
    assert (
        create(
            database_url,
            bots,
            "replayed",
            "--strategy",
            "donchian_breakout",
            *MARKET,
            "--params",
            "allow_short=true",
            "--stop-loss",
            "0.03",
            "--daily-loss-limit",
            "0.04",
            "--fee",
            "0.0015",
            "--slippage-bps",
            "3",
            "--cash",
            "2500",
            "--start",
            "2018-05-20",
        )
        == 0
    )
    assert main(["--database-url", database_url, "run", "--replay", "--bots", str(bots)]) == 0
    capsys.readouterr()
    recorded = recorded_fills(database_url, "replayed")
    assert len(recorded) > 10

    config = load_bot_config(bots / "replayed.json")
    params = config.spec.make_params(config.params)
    result = model.backtest_from(
        config.spec,
        load_bars(database_url, *config.market),
        params,
        config.costs,
        stops=config.stops,
        risk=config.risk,
        initial_cash=config.initial_cash,
        start_ts=config.start,
    )
    np.testing.assert_array_equal(backtest_fills(result), recorded)

    assert (
        main(
            [
                "--database-url",
                database_url,
                "backtest",
                "--bot",
                str(bots / "replayed.json"),
                "--trades",
                "1000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "bot replayed (version 1): donchian_breakout" in out
    assert "trading from 2018-05-20 00:00:00+00:00 (the config's start)" in out
    assert re.search(rf"^trade_count\s+{int(result.stats['trade_count'])}  ", out, re.MULTILINE)
    final = fmt_money(result.stats["final_equity"], scale=config.initial_cash)
    assert re.search(r"^final_equity\s+" + re.escape(final) + "  ", out, re.MULTILINE)
    engine = connect(database_url)
    with engine.connect() as connection:
        last_equity = connection.execute(
            select(schema.bot_performance.c.equity)
            .where(schema.bot_performance.c.bot_id == "replayed")
            .order_by(schema.bot_performance.c.ts.desc())
            .limit(1)
        ).scalar_one()
    engine.dispose()
    assert last_equity == result.stats["final_equity"]


def test_backtest_bot_without_a_start_begins_at_its_first_recorded_decision(
    database, tmp_path, capsys
):
    bots = tmp_path / "bots"
    assert create(database, bots, "from-replay", "--strategy", "sma_cross", *MARKET) == 0
    assert (
        main(
            [
                "--database-url",
                database,
                "run",
                "--replay",
                "--bots",
                str(bots),
                "--from",
                "2018-06-01",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "--database-url",
                database,
                "backtest",
                "--bot",
                str(bots / "from-replay.json"),
                "--trades",
                "1000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "trading from 2018-06-01 00:00:00+00:00 (the bot's first recorded decision)" in out
    recorded = recorded_fills(database, "from-replay")
    config = load_bot_config(bots / "from-replay.json")
    result = model.backtest_from(
        config.spec,
        load_bars(database, *config.market),
        config.params,
        config.costs,
        stops=config.stops,
        risk=config.risk,
        initial_cash=config.initial_cash,
        start_ts=1_527_811_200_000,
    )
    assert len(recorded) > 0
    np.testing.assert_array_equal(backtest_fills(result), recorded)
    assert f"of {len(result.trades)} trades:" in out

    edited = json.loads((bots / "from-replay.json").read_text())  # not the config that traded
    edited["params"]["fast"] = 12
    (bots / "from-replay.json").write_text(json.dumps(edited))
    assert (
        main(["--database-url", database, "backtest", "--bot", str(bots / "from-replay.json")]) == 0
    )
    assert "trading from the first bar (the first stored bar)" in capsys.readouterr().out


def test_backtest_bot_takes_everything_from_the_file(database, tmp_path, capsys):
    bots = tmp_path / "bots"
    assert create(database, bots, "fixed", "--strategy", "sma_cross", *MARKET) == 0
    capsys.readouterr()
    path = str(bots / "fixed.json")
    assert (
        main(
            [
                "--database-url",
                database,
                "backtest",
                "--bot",
                path,
                "--fee",
                "0.01",
                "--param",
                "fast=3",
            ]
        )
        == 2
    )
    assert "drop --param, --fee" in error_line(capsys)[1]
    assert (
        main(["--database-url", database, "backtest", "--bot", str(tmp_path / "missing.json")]) == 2
    )
    assert "missing.json" in error_line(capsys)[1]
    (bots / "broken.json").write_text('{"strategy": "sma_cross",')
    assert main(["--database-url", database, "backtest", "--bot", str(bots / "broken.json")]) == 2
    assert "not valid JSON" in error_line(capsys)[1]


def test_backtest_bot_of_a_portfolio_bot_names_a_market_it_cannot_load(database, tmp_path, capsys):
    # a portfolio bot is backtested as a book (tests/candela/test_book_backtest_cli.py); here
    # one of its markets is not stored: one line naming it
    path = tmp_path / "book.json"
    path.write_text(
        json.dumps(
            {
                "portfolio": "momentum_rotation",
                "universe": {
                    "exchange": "binance",
                    "timeframe": "1h",
                    "symbols": ["BTC/USDT", "ETH/USDT"],
                },
            }
        )
    )
    assert main(["--database-url", database, "backtest", "--bot", str(path)]) == 2
    assert "ETH/USDT" in error_line(capsys)[1]
