"""Demo step: replay the sample through two paper-trading bots and compare with the backtest.

The two bots of ``config/bots/`` (registered as ``demo-<id>`` so a real ``candela run`` keeps
its own bots) replay every stored bar of their market through the runner's live path: decision
on the history window, fill by ``step_nb``, one transaction per bar, publication on the
in-process bus. Then ``research.backtest`` runs the same strategy on the same bars and both fill
lists are printed side by side. Running the demo again replays nothing (every bar is recorded
exactly once) and prints the same table.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pandas as pd
from sqlalchemy import select

from candela.cli.commands import user_errors
from candela.core import schema
from candela.core.bus import InProcessBus
from candela.core.paths import BOT_CONFIG_DIR
from research.backtesting import backtest
from research.data import load_bars
from runner.config import BotConfigError, load_bot_configs
from runner.ledger import trade_rows
from runner.market_data import first_bar_ts
from runner.process import Replay, Runner
from runner.registry import BotConfigChangedError

TITLE = "paper: replay the sample through two bots, trades next to the backtest's"
SHOWN = 4  # fills printed from the start and the end of each list


def run(context) -> None:
    """Replay, backtest and print; the database is ``context.engine``."""

    with user_errors(BotConfigError, FileNotFoundError):  # an edited file of config/bots/
        configs = [
            replace(config, bot_id=f"demo-{config.bot_id}")
            for config in load_bot_configs(BOT_CONFIG_DIR)
        ][:2]
    configs = [config for config in configs if _has_bars(context.engine, config.market)]
    if not configs:
        print("no bars for the bots' markets: run the foundation step (sample import) first")
        return
    bus = InProcessBus()
    published = {"signals": 0, "trades": 0}

    def count(channel, _payload):
        published[channel.split(":", 1)[0]] += 1

    bus.subscribe(["signals:*", "trades:*"], count)
    started = time.perf_counter()
    with user_errors(BotConfigChangedError):  # an edited config of a demo bot that has traded
        reports = asyncio.run(Runner(context.engine, bus, configs, replay=Replay()).run())
    elapsed = time.perf_counter() - started
    bars_done = sum(report.bars for report in reports.values())
    print(
        f"replayed {bars_done} new bar(s) through {len(configs)} bots in {elapsed:.1f} s "
        f"({published['signals']} signals, {published['trades']} fills published)"
    )

    for config in configs:
        exchange, symbol, timeframe = config.market
        bars = load_bars(context.engine, exchange, symbol, timeframe)
        result = backtest(
            config.spec,
            bars,
            config.params,
            config.costs,
            stops=config.stops,
            risk=config.risk,
            initial_cash=config.initial_cash,
        )
        with context.engine.connect() as connection:
            paper = pd.DataFrame(trade_rows(connection, config.bot_id))
        backtested = result.fills
        print(
            f"\n{config.bot_id}: {config.strategy} {config.params} on {exchange} {symbol} {timeframe}, "
            f"{len(bars)} bars"
        )
        table = _side_by_side(paper, backtested)
        with pd.option_context("display.width", 160, "display.max_columns", 12):
            shown = (
                table
                if len(table) <= 2 * SHOWN
                else pd.concat([table.head(SHOWN), table.tail(SHOWN)])
            )
            print(shown.to_string(index=False))
        identical = bool(len(table)) and bool(table["same"].all()) and len(paper) == len(backtested)
        final_paper = _final_equity(context.engine, config.bot_id)
        final_backtest = float(result.equity.iloc[-1])
        print(
            f"{len(paper)} paper fills, {len(backtested)} backtest fills, identical: {identical}; "
            f"final equity paper {final_paper:.6f} vs backtest {final_backtest:.6f}"
        )


def _has_bars(engine, market) -> bool:
    with engine.connect() as connection:
        return first_bar_ts(connection, market) is not None


def _side_by_side(paper, backtested):
    rows = max(len(paper), len(backtested))
    table = pd.DataFrame(index=range(rows))
    if len(paper):
        table["time (UTC)"] = pd.to_datetime(paper["ts"], unit="ms", utc=True).dt.strftime(
            "%m-%d %H:%M"
        )
        table["side"] = paper["side"]
        table["reason"] = paper["reason"]
        table["paper price"] = paper["price"]
        table["paper size"] = paper["size"]
    if len(backtested):
        backtested = backtested.reset_index(drop=True)
        table["backtest price"] = backtested["price"]
        table["backtest size"] = backtested["size"]
    if len(paper) and len(backtested):
        paper_ms = paper["ts"].astype("int64").to_numpy()
        backtest_ms = backtested["ts"].dt.as_unit("ms").astype("int64").to_numpy()
        n = min(len(paper), len(backtested))
        same = [
            paper_ms[i] == backtest_ms[i]
            and paper["side"][i] == backtested["side"][i]
            and paper["price"][i] == backtested["price"][i]
            and paper["size"][i] == backtested["size"][i]
            and paper["fee"][i] == backtested["fee"][i]
            for i in range(n)
        ]
        table["same"] = same + [False] * (rows - n)
    else:
        table["same"] = False
    return table


def _final_equity(engine, bot_id: str) -> float:

    with engine.connect() as connection:
        value = connection.execute(
            select(schema.bot_performance.c.equity)
            .where(schema.bot_performance.c.bot_id == bot_id)
            .order_by(schema.bot_performance.c.ts.desc())
            .limit(1)
        ).scalar()
    return float("nan") if value is None else float(value)
