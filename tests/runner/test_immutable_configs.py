"""A bot's config is immutable once it has traded; a new version starts with fresh state and
keeps the old version's records apart. Every decision records the hashes of its config and of
its strategy's source. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from runner_support import bot_config, replay
from sqlalchemy import func, select

from candela.cli import main as candela
from candela.core import schema
from candela.core.bus import InProcessBus
from candela.core.db import create_database_engine, upgrade
from data_pipeline.importer import import_candles
from runner import registry
from runner.registry import BotConfigChangedError, register_bots
from runner.strategy_source import strategy_file
from strategies.registry import get_strategy

MARKET = ("binance", "BTC/USDT", "1h")
TABLES = (
    schema.signals,
    schema.trades,
    schema.bot_performance,
    schema.bot_state,
    schema.bot_events,
)


@pytest.fixture
def engine(any_engine, sample_dir):
    import_candles(any_engine, sample_dir / "ohlcv" / "binance_BTC-USDT_1h.csv.gz", *MARKET)
    return any_engine


def config(**fields):
    return bot_config(
        "fixed", "sma_cross", MARKET, **{"params": {"fast": 10, "slow": 50}, **fields}
    )


def rows(engine, bot_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(
                select(func.count()).select_from(table).where(table.c.bot_id == bot_id)
            ).scalar_one()
            for table in TABLES
        }


def stored_json(engine, bot_id: str) -> str:
    with engine.connect() as connection:
        return registry.bot_row(connection, bot_id).config_json


def test_every_decision_records_the_hashes_of_its_config_and_strategy(engine):
    bot = config()
    replay(engine, InProcessBus(), [bot], to_ts=1_524_000_000_000)
    with engine.connect() as connection:
        hashes = connection.execute(
            select(schema.signals.c.config_hash, schema.signals.c.strategy_hash).where(
                schema.signals.c.bot_id == "fixed"
            )
        ).all()
    source = strategy_file(get_strategy("sma_cross")).read_bytes()
    assert len(hashes) > 100
    assert set(hashes) == {
        (hashlib.sha256(bot.to_json().encode()).hexdigest(), hashlib.sha256(source).hexdigest())
    }


def test_a_changed_config_of_a_bot_that_traded_is_refused_naming_the_fields(engine):
    replay(engine, InProcessBus(), [config()], to_ts=1_524_000_000_000)
    before, text = rows(engine, "fixed"), stored_json(engine, "fixed")
    changed = config(params={"fast": 10, "slow": 60}, symbol="ETH/USDT", stops={"stop_loss": 0.05})
    with pytest.raises(BotConfigChangedError) as info:
        register_bots(engine, [changed])
    message = str(info.value)
    assert message.startswith("test bot fixed: bot 'fixed' has recorded ")
    assert "params.slow 50 -> 60" in message and 'symbol "BTC/USDT" -> "ETH/USDT"' in message
    assert (
        "stops.stop_loss null -> 0.05" in message
        and "fast" not in message.split("changed:")[1].split(".")[0]
    )
    assert 'setting "version": 2' in message and "'fixed@v1'" in message and "new bot id" in message
    assert rows(engine, "fixed") == before and stored_json(engine, "fixed") == text
    with pytest.raises(BotConfigChangedError):  # the runner refuses it too, before any bar
        replay(engine, InProcessBus(), [changed])
    assert rows(engine, "fixed") == before


def test_a_bot_that_never_traded_may_change_and_an_unchanged_one_is_left_alone(engine):
    assert register_bots(engine, [config()]) == {}
    assert register_bots(engine, [config(params={"fast": 5, "slow": 50})]) == {
        "fixed": "reconfigured"
    }
    assert json.loads(stored_json(engine, "fixed"))["params"] == {"fast": 5, "slow": 50}
    replay(
        engine, InProcessBus(), [config(params={"fast": 5, "slow": 50})], to_ts=1_524_000_000_000
    )
    assert register_bots(engine, [config(params={"fast": 5, "slow": 50})]) == {}


def test_a_config_stored_before_versions_existed_is_not_a_change(engine):
    bot = config()
    replay(engine, InProcessBus(), [bot], to_ts=1_524_000_000_000)
    old = bot.to_dict()
    del old["version"]
    with engine.begin() as connection:
        connection.execute(schema.bots.update().values(config_json=json.dumps(old, sort_keys=True)))
    assert register_bots(engine, [bot]) == {}
    assert stored_json(engine, "fixed") == bot.to_json()


def test_a_new_version_starts_fresh_and_keeps_the_old_records_apart(engine, capsys):
    old = config()
    replay(engine, InProcessBus(), [old], to_ts=1_524_000_000_000)
    before = rows(engine, "fixed")
    assert before["trades"] > 0
    new = config(params={"fast": 8, "slow": 40}, version=2)

    assert register_bots(engine, [new]) == {"fixed": "new_version"}
    archived = rows(engine, "fixed@v1")
    assert archived == before
    assert rows(engine, "fixed") == {
        "signals": 0,
        "trades": 0,
        "bot_performance": 0,
        "bot_state": 0,
        "bot_events": 1,
    }
    with engine.connect() as connection:
        retired = registry.bot_row(connection, "fixed@v1")
        current = registry.bot_row(connection, "fixed")
        old_hashes = set(
            connection.execute(
                select(schema.signals.c.config_hash).where(schema.signals.c.bot_id == "fixed@v1")
            ).scalars()
        )
    assert retired.status == "retired" and retired.config_json == old.to_json()
    assert current.status == "active" and current.config_json == new.to_json()
    assert old_hashes == {old.config_hash}

    replay(engine, InProcessBus(), [new])
    with engine.connect() as connection:
        first = connection.execute(
            select(func.min(schema.signals.c.ts)).where(schema.signals.c.bot_id == "fixed")
        ).scalar_one()
        new_hashes = set(
            connection.execute(
                select(schema.signals.c.config_hash).where(schema.signals.c.bot_id == "fixed")
            ).scalars()
        )
        first_bar = connection.execute(select(func.min(schema.ohlcv.c.ts))).scalar_one()
    assert first == first_bar  # fresh state: the replay starts again at the first stored bar
    assert new_hashes == {new.config_hash}
    assert rows(engine, "fixed@v1") == archived  # never mixed with the new state

    url = engine.url.render_as_string(hide_password=False)
    assert candela(["--database-url", url, "bots", "start", "fixed@v1"]) == 2
    assert "retired version" in capsys.readouterr().err
    with pytest.raises(
        BotConfigChangedError, match="version 1 of bot 'fixed' is older than its recorded version 2"
    ):
        register_bots(engine, [config()])


def test_candela_run_refuses_an_edited_file_in_one_line(engine, tmp_path, capsys):
    url = engine.url.render_as_string(hide_password=False)
    bots = tmp_path / "bots"
    bots.mkdir()
    data = {**config().to_dict(), "start": None}
    (bots / "fixed.json").write_text(json.dumps(data))
    assert (
        candela(
            ["--database-url", url, "run", "--replay", "--bots", str(bots), "--to", "2018-04-18"]
        )
        == 0
    )
    data["params"]["slow"] = 45
    (bots / "fixed.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert candela(["--database-url", url, "run", "--replay", "--bots", str(bots)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: {bots / 'fixed.json'}: bot 'fixed' has recorded"
    )
    assert "params.slow 50 -> 45" in err


def test_the_migration_adds_the_hash_columns_to_existing_signals(empty_database_url):
    engine = create_database_engine(empty_database_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO bots (bot_id, strategy, exchange, symbol, timeframe, config_json, status, "
                "restarts, created_at, updated_at) VALUES ('old', 'sma_cross', 'binance', 'BTC/USDT', "
                "'1h', '{}', 'active', 0, 1, 1)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO signals (bot_id, ts, action, target, raw_target, price, executed, "
                "indicators_json, created_at) VALUES ('old', 5, 'hold', 0, 0, 1.5, false, '{}', 1)"
            )
        )
    upgrade(engine)
    with engine.connect() as connection:
        row = connection.execute(select(schema.signals)).one()
    engine.dispose()
    assert (row.bot_id, row.ts, row.price, row.config_hash, row.strategy_hash) == (
        "old",
        5,
        1.5,
        None,
        None,
    )
