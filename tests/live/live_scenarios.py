"""A paper bot's life with the things that make paper and backtest differ, played for real.

:func:`restarted_bot_with_revised_bar` runs the real runner live on a real database and feeds
it real bars (Bittrex ADA/BTC 1m) the way the pipeline does (``store_bars`` commits, then a
``market:`` message), bar by bar:

1. history bars are stored before the bot is registered;
2. bars arrive one by one and the bot decides each at once;
3. the runner stops; bars keep arriving; it starts again a while later and catches up (a
   restart gap: those decisions are late);
4. one bar is stored only after the bot has decided the next one (a late bar);
5. a bar the bot traded at is revised afterwards with ``candela data import --revise`` (a
   corrected file, as an exchange's own candles would correct a collected one).

It returns what it did, for the tests to check the reconciliation against.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from runner_support import ADA_BTC, LiveRunner, bot_config, cursor_ts, wait_for

from candela.cli import main as candela
from candela.core.bus import InProcessBus, market_channel
from data_pipeline.store import store_bars
from research.types import Bars

HISTORY = 100
"""Bars stored before the bot exists."""


@dataclass
class Scenario:
    """What :func:`restarted_bot_with_revised_bar` did."""

    bot_id: str
    bars: Bars
    last: int  # index of the last bar fed
    down: tuple[int, int]  # bars [first, last) stored while the runner was down
    gap_seconds: float  # how long the runner stayed down after the last of them
    late: int  # index of the bar stored after the bot decided the next one
    revised: int  # index of the bar revised afterwards
    revised_values: tuple  # its new (open, high, low, close, volume)
    config: object = None


def _store(engine, bars: Bars, index: int, bus) -> None:
    with engine.begin() as connection:
        store_bars(
            connection,
            *ADA_BTC,
            bars.ts[index : index + 1],
            bars.open[index : index + 1],
            bars.high[index : index + 1],
            bars.low[index : index + 1],
            bars.close[index : index + 1],
            bars.volume[index : index + 1],
        )
    bus.publish(market_channel(*ADA_BTC), {"ts": int(bars.ts[index])})


def _registered(engine, bot_id: str) -> bool:
    from runner.registry import bot_row

    with engine.connect() as connection:
        return bot_row(connection, bot_id) is not None


def _feed(engine, bars: Bars, indices, bus, bot_id: str) -> None:
    """Store the bars one by one, each once the bot has decided the previous one."""
    for index in indices:
        _store(engine, bars, index, bus)
        close = bars.ts[index]
        wait_for(lambda close=close: cursor_ts(engine, bot_id) == close, 30, message=f"bar {index}")


def restarted_bot_with_revised_bar(
    engine, bars: Bars, folder: Path, *, bot_id: str = "paper", gap_seconds: float = 1.5
) -> Scenario:
    """Play the scenario of the module docstring on ``engine`` (migrated, empty).

    The revised bar is the first bar with a signal fill after the restart gap (before the late
    bar); its open and close are raised by 2 % and 3 % (its high follows).
    """
    from sqlalchemy import select

    from candela.core import schema

    url = engine.url.render_as_string(hide_password=False)
    bars = bars[: HISTORY + 180]
    with engine.begin() as connection:
        store_bars(
            connection,
            *ADA_BTC,
            *(
                column[:HISTORY]
                for column in (bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume)
            ),
        )
    config = bot_config(
        bot_id,
        "sma_cross",
        params={"fast": 5, "slow": 20},
        start=int(bars.ts[HISTORY]),
        costs={"fee_rate": 0.001, "slippage_bps": 2.0},
    )
    bus = InProcessBus()
    down = (HISTORY + 50, HISTORY + 70)
    late = HISTORY + 140
    with LiveRunner(engine, bus, [config]):
        wait_for(lambda: _registered(engine, bot_id), 30, message="the bot's registration")
        _feed(engine, bars, range(HISTORY, down[0]), bus, bot_id)
    for index in range(*down):  # the runner is down; the pipeline is not
        _store(engine, bars, index, bus)
    time.sleep(gap_seconds)
    with LiveRunner(engine, bus, [config]):
        wait_for(
            lambda: cursor_ts(engine, bot_id) == bars.ts[down[1] - 1], 30, message="the catch-up"
        )
        _feed(engine, bars, range(down[1], late), bus, bot_id)
        _feed(engine, bars, [late + 1], bus, bot_id)  # bar `late` is not there yet ...
        _store(engine, bars, late, bus)  # ... it comes after the bot decided the next
        _feed(engine, bars, range(late + 2, len(bars)), bus, bot_id)
    with engine.connect() as connection:
        fills = (
            connection.execute(
                select(schema.trades.c.bar_ts)
                .where(
                    schema.trades.c.bot_id == bot_id,
                    schema.trades.c.reason == "signal",
                    schema.trades.c.bar_ts > int(bars.ts[down[1]]),
                )
                .order_by(schema.trades.c.bar_ts)
            )
            .scalars()
            .all()
        )
    revised = int(bars.ts.searchsorted(fills[0]))
    assert revised < late, "the scenario needs a fill between the restart and the late bar"
    values = (
        bars.open[revised] * 1.02,
        max(bars.high[revised], bars.open[revised] * 1.02, bars.close[revised] * 1.03),
        bars.low[revised],
        bars.close[revised] * 1.03,
        bars.volume[revised],
    )
    corrected = folder / "bittrex_ADA-BTC_1m_corrected.csv"
    with corrected.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["open_time_ms", "open", "high", "low", "close", "volume"])
        writer.writerow(
            [int(bars.ts[revised]) - bars.timeframe_ms, *(repr(float(v)) for v in values)]
        )
    assert (
        candela(
            [
                "--database-url",
                url,
                "data",
                "import",
                str(corrected),
                "--exchange",
                ADA_BTC[0],
                "--symbol",
                ADA_BTC[1],
                "--timeframe",
                ADA_BTC[2],
                "--revise",
            ]
        )
        == 0
    )
    return Scenario(bot_id, bars, len(bars) - 1, down, gap_seconds, late, revised, values, config)
