"""Bot configs: strict validation with errors that name the file, the field and the fix."""

from __future__ import annotations

import json
import math

import pytest

from candela.core.paths import BOT_CONFIG_DIR
from research.types import Costs, RiskLimits, Stops
from runner.config import (
    BotConfigError,
    config_from_json,
    load_bot_config,
    load_bot_configs,
    parse_bot_config,
)

BASE = {"strategy": "sma_cross", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m"}


def parse(**changes):
    data = {**BASE, **changes}
    return parse_bot_config(
        {k: v for k, v in data.items() if v is not ...}, bot_id="bot", source="bots/bot.json"
    )


def error_of(**changes) -> str:
    with pytest.raises(BotConfigError) as info:
        parse(**changes)
    return str(info.value)


def test_minimal_config_takes_documented_defaults():
    config = parse()
    assert config.bot_id == "bot"
    assert config.params == {"fast": 10, "slow": 50}
    assert config.initial_cash == 10_000.0
    assert config.costs == Costs() and config.risk == RiskLimits()
    assert config.stops == config.spec.stops  # no "stops": the strategy's own defaults
    assert config.start is None
    assert config.market == ("binance", "BTC/USDT", "1m") and config.timeframe_ms == 60_000


def test_full_config_round_trips_through_its_stored_json():
    config = parse(
        id="my-bot",
        params={"fast": 5},
        initial_cash=250,
        costs={"fee_rate": 0.002, "slippage_bps": 3},
        stops={"stop_loss": 0.05, "take_profit": None},
        risk={"max_drawdown": 0.2},
        start="2018-05-01T00:00:00Z",
        description="test",
    )
    assert config.bot_id == "my-bot"
    assert config.params == {"fast": 5, "slow": 50}
    assert config.costs == Costs(0.002, 3.0)
    assert config.stops.stop_loss == 0.05 and math.isnan(config.stops.take_profit)
    assert math.isnan(config.stops.trailing_stop)  # a given stops object is complete
    assert config.risk == RiskLimits(
        max_position=1.0, daily_loss_limit=math.nan, max_drawdown=0.2
    ) or (config.risk.max_drawdown == 0.2 and math.isnan(config.risk.daily_loss_limit))
    assert config.start == 1_525_132_800_000
    again = config_from_json(config.to_json())
    assert again.to_json() == config.to_json()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"strategi": "x"}, "bots/bot.json: strategi: unknown key; did you mean 'strategy'?"),
        ({"costs": {"fee": 0.1}}, "costs.fee: unknown key; did you mean 'fee_rate'?"),
        (
            {"risk": {"max_drawdwn": 0.1}},
            "risk.max_drawdwn: unknown key; did you mean 'max_drawdown'?",
        ),
        ({"stops": {"stoploss": 0.1}}, "stops.stoploss: unknown key; did you mean 'stop_loss'?"),
        (
            {"strategy": "sma_cros"},
            "strategy: unknown strategy 'sma_cros'; did you mean 'sma_cross'?",
        ),
        (
            {"params": {"fastt": 3}},
            "params: unknown parameter 'fastt' for strategy 'sma_cross'; did you mean 'fast'?",
        ),
        ({"params": {"fast": 60}}, "params: constraint '1 <= fast < slow'"),
        (
            {"params": {"fast": "ten"}},
            "params: parameter 'fast' of strategy 'sma_cross' must be int",
        ),
        ({"symbol": "BTC-USDT"}, "symbol: symbol 'BTC-USDT' is not in unified BASE/QUOTE form"),
        ({"timeframe": "1min"}, "timeframe: unsupported timeframe '1min'"),
        ({"exchange": "Binance!"}, "exchange: exchange 'Binance!' is not a ccxt exchange id"),
        ({"initial_cash": -5}, "initial_cash: must be a positive number"),
        ({"costs": {"fee_rate": 0.9}}, "costs.fee_rate: must be a number within [0.0, 0.5]"),
        ({"costs": {"fee_rate": None}}, "costs.fee_rate: cannot be null"),
        (
            {"risk": {"max_drawdown": 2}},
            "risk.max_drawdown: must be within (0, 1.0] or nan to disable it",
        ),
        ({"stops": {"stop_loss": "5%"}}, "stops.stop_loss: must be a number or null"),
        ({"start": "yesterday"}, "start: 'yesterday' is not a time"),
        ({"id": "no spaces"}, "id: 'no spaces' is not a valid bot id"),
        ({"symbol": ...}, 'symbol: missing; add "symbol"'),
    ],
)
def test_every_error_names_the_field_and_the_fix(changes, expected):
    assert expected in error_of(**changes)


def test_loader_reports_file_json_errors_and_duplicate_ids(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(BASE))
    (tmp_path / "b.json").write_text(json.dumps({**BASE, "id": "a"}))
    with pytest.raises(
        BotConfigError, match=r"b\.json: id: bot id 'a' is already used by .*a\.json"
    ):
        load_bot_configs(tmp_path)
    broken = tmp_path / "c.json"
    broken.write_text('{"strategy": "sma_cross",}')
    with pytest.raises(BotConfigError, match=r"c\.json: not valid JSON at line 1"):
        load_bot_config(broken)
    with pytest.raises(FileNotFoundError, match="pass --bots DIR"):
        load_bot_configs(tmp_path / "missing")


def test_injected_resolver_supplies_test_strategies():
    from runner_test_strategies import BROKEN

    config = parse_bot_config(
        {**BASE, "strategy": "anything"}, bot_id="x", resolve=lambda name: BROKEN
    )
    assert config.spec is BROKEN and config.params["fail_at_ts"] == 0
    via_path = parse_bot_config({**BASE, "strategy": "runner_test_strategies:FLAKY"}, bot_id="y")
    assert via_path.spec.name == "flaky"
    with pytest.raises(
        BotConfigError, match="strategy: 'runner_test_strategies:Params' is not a StrategySpec"
    ):
        parse_bot_config({**BASE, "strategy": "runner_test_strategies:Params"}, bot_id="z")


def test_shipped_example_configs_are_valid_and_use_sample_markets(sample_dir):
    configs = load_bot_configs(BOT_CONFIG_DIR)
    assert len(configs) >= 2
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    markets = {
        (entry["exchange"], entry["symbol"], entry["timeframe"]) for entry in manifest["files"]
    }
    for config in configs:
        assert config.market in markets, f"{config.bot_id} trades a market the sample does not hold"
    assert isinstance(configs[0].stops, Stops)
