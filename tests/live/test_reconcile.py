"""``candela bots reconcile``: paper against backtest, every difference with its cause.

The bots run for real (the runner, a real database, real bars); the reference is computed
independently: the stored bars read with ``research.data.load_bars`` and backtested with the
function ``candela backtest --bot`` uses, and the two fill lists compared here.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from live_scenarios import HISTORY, restarted_bot_with_revised_bar
from runner_support import (
    ADA_BTC,
    LiveRunner,
    backtest_fills,
    bot_config,
    cursor_ts,
    replay,
    runner_fills,
    store_bars,
    wait_for,
)
from sqlalchemy import update
from strategy_folders import write_strategy

from candela.cli import main as candela
from candela.cli import strategy_model
from candela.cli.live.reconcile import DecisionMismatch, reconcile
from candela.cli.live.records import load_records
from candela.core import schema
from candela.core.bus import InProcessBus
from research.data import load_bars


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _keyed(rows: np.ndarray) -> dict:
    """Fill rows ``(ts, side, price, size, fee)`` keyed by ``(ts, n-th fill at that ts)``."""
    seen: collections.Counter = collections.Counter()
    keyed = {}
    for row in rows:
        keyed[(int(row[0]), seen[int(row[0])])] = tuple(row[1:])
        seen[int(row[0])] += 1
    return keyed


def _reference(engine, config, last_ts: int) -> np.ndarray:
    """The backtest of ``config`` on the stored bars, up to the bot's last decision."""
    bars = load_bars(_url(engine), *config.market, end=last_ts)
    result = strategy_model.backtest_from(
        config.spec,
        bars,
        config.params,
        config.costs,
        stops=config.stops,
        risk=config.risk,
        initial_cash=config.initial_cash,
        start_ts=config.start,
    )
    return backtest_fills(result)


@pytest.mark.slow
def test_a_restarted_bot_fed_a_late_and_a_revised_bar_is_explained_fill_by_fill(
    any_engine, ada_btc_bars, tmp_path, capsys
):
    scenario = restarted_bot_with_revised_bar(any_engine, ada_btc_bars, tmp_path, gap_seconds=3.0)
    bars = scenario.bars
    result = reconcile(load_records(any_engine, "paper"), on_time_ms=1500)

    # the reference: the backtest on the bars stored now, and the fills the bot recorded
    reference = _reference(any_engine, scenario.config, int(bars.ts[scenario.last]))
    paper = runner_fills(any_engine, "paper")
    assert _keyed(
        np.array(
            [
                (f["ts"], 1.0 if f["side"] == "buy" else -1.0, f["price"], f["size"], f["fee"])
                for f in result.backtest_fills
            ]
        ).reshape(-1, 5)
    ) == _keyed(reference)
    expected = {
        key
        for key in _keyed(paper).keys() | _keyed(reference).keys()
        if _keyed(paper).get(key) != _keyed(reference).get(key)
    }
    found = {(difference.backtest or difference.paper)["ts"] for difference in result.differences}
    assert expected and {ts for ts, _ in expected} == found

    # the two bar events, with what the bot used and what is stored now
    assert [event.kind for event in result.events] == ["revised", "late"]  # in close-time order
    revised, late = result.events
    assert (late.kind, late.ts, late.used) == ("late", bars.ts[scenario.late], None)
    assert late.stored_at > late.moment  # stored after the bot had decided the next bar
    assert (revised.kind, revised.ts) == ("revised", bars.ts[scenario.revised])
    original = tuple(
        float(column[scenario.revised])
        for column in (bars.open, bars.high, bars.low, bars.close, bars.volume)
    )
    assert revised.used == original and revised.stored == scenario.revised_values
    assert revised.stored_at > revised.moment
    assert result.mismatches == []  # same code, same config: every decision is reproduced

    # every difference has a cause, one of the two events; the revised bar's own fill is one
    assert all(difference.primary in (late, revised) for difference in result.differences)
    assert any(
        difference.bar_ts == bars.ts[scenario.revised]
        and difference.paper is not None
        and difference.primary is revised
        for difference in result.differences
    )

    # the restart gap: exactly the bars stored while the runner was down were decided late
    # (on a busy machine a decision may also be slow now and then, or the first ones while the
    # runner starts: those runs say "slow" or "startup")
    service = result.service
    (run,) = [run for run in service.late_runs if run.cause not in ("slow", "startup")]
    first, stop = scenario.down
    assert (run.cause, run.first_ts, run.last_ts, run.decisions) == (
        "restart",
        bars.ts[first],
        bars.ts[stop - 1],
        stop - first,
    )
    assert run.down_to - run.down_from >= scenario.gap_seconds * 1000
    assert (
        service.live == service.decisions == scenario.last - HISTORY + 1 - 1
    )  # the late bar: no decision
    assert service.on_time == service.live - sum(late.decisions for late in service.late_runs)
    # paper fills pay the configured slippage on the open they saw: only the revised open is off
    assert service.off_configured.tolist() == [bars.ts[scenario.revised]]

    capsys.readouterr()
    assert (
        candela(
            ["--database-url", _url(any_engine), "bots", "reconcile", "paper", "--on-time", "1.5"]
        )
        == 0
    )
    text = capsys.readouterr().out
    for part in (
        "fill(s) differ, by cause",
        "revised after the bot used it",
        "arrived late",
        "restart gap",
        "slippage against the next open",
    ):
        assert part in text


def test_a_bot_that_agrees_with_its_backtest_says_so_in_one_line(any_engine, ada_btc_bars, capsys):
    bars = ada_btc_bars[:1500]
    store_bars(any_engine, ADA_BTC, bars)
    config = bot_config(
        "quiet", "ema_cross", params={"fast": 5, "slow": 15}, start=int(bars.ts[200])
    )
    replay(any_engine, InProcessBus(), [config])
    assert len(runner_fills(any_engine, "quiet")) > 10
    capsys.readouterr()
    assert candela(["--database-url", _url(any_engine), "bots", "reconcile", "quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("bot quiet: no differences: ")
    assert f"{len(runner_fills(any_engine, 'quiet'))} fills over 1,300 decisions" in out


def test_a_fill_no_backtest_gives_is_reported_unexplained(any_engine, ada_btc_bars):
    bars = ada_btc_bars[:800]
    store_bars(any_engine, ADA_BTC, bars)
    config = bot_config(
        "tampered", "sma_cross", params={"fast": 5, "slow": 20}, start=int(bars.ts[100])
    )
    replay(any_engine, InProcessBus(), [config])
    paper = runner_fills(any_engine, "tampered")
    with (
        any_engine.begin() as connection
    ):  # a parity breach: one recorded price is not the backtest's
        connection.execute(
            update(schema.trades)
            .where(schema.trades.c.bot_id == "tampered", schema.trades.c.ts == int(paper[3, 0]))
            .values(price=float(paper[3, 2]) * 1.001)
        )
    result = reconcile(load_records(any_engine, "tampered"))
    (difference,) = result.differences
    assert difference.paper["ts"] == paper[3, 0] and difference.kind == "different"
    assert (
        isinstance(difference.primary, DecisionMismatch)
        and difference.primary.kind == "unexplained_fill"
    )
    assert result.events == [] and result.mismatches == []


@pytest.mark.slow
def test_decisions_made_by_other_strategy_code_are_told_apart(
    any_engine, ada_btc_bars, strategy_folder
):
    path = write_strategy(strategy_folder, "trend.py", "above_sma", name="trend")
    source = path.read_text()
    bars = ada_btc_bars[:700]
    store_bars(any_engine, ADA_BTC, bars, 0, 400)
    bus = InProcessBus()
    with LiveRunner(any_engine, bus, [bot_config("edited", "trend", start=int(bars.ts[50]))]):
        wait_for(
            lambda: cursor_ts(any_engine, "edited") == bars.ts[399], 60, message="the first run"
        )
    edited = source.replace("bars.close > level", "bars.close < level")  # the user inverts the rule
    assert edited != source
    path.write_text(edited)
    store_bars(any_engine, ADA_BTC, bars, 400, 700)
    with LiveRunner(any_engine, bus, [bot_config("edited", "trend", start=int(bars.ts[50]))]):
        wait_for(
            lambda: cursor_ts(any_engine, "edited") == bars.ts[699], 60, message="the second run"
        )

    result = reconcile(load_records(any_engine, "edited"))
    assert result.events == []
    changed = {mismatch.ts for mismatch in result.mismatches}
    assert changed and max(changed) <= bars.ts[399]  # only decisions made by the old code differ
    assert {mismatch.kind for mismatch in result.mismatches} == {"strategy_changed"}
    hashes = {mismatch.recorded_hash for mismatch in result.mismatches}
    assert len(hashes) == 1 and hashes != {result.mismatches[0].current_hash}
    assert result.differences
    assert all(
        isinstance(d.primary, DecisionMismatch) and d.primary.kind == "strategy_changed"
        for d in result.differences
        if d.bar_ts <= bars.ts[400]
    )


def test_bad_input_is_one_line_with_exit_2(sqlite_url, capsys):
    from candela.core.db import connect, upgrade

    engine = connect(sqlite_url, require_schema=False)
    upgrade(engine)
    engine.dispose()
    assert candela(["--database-url", sqlite_url, "bots", "reconcile", "nobody"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no bot 'nobody'" in error and "candela bots list" in error
    assert (
        candela(["--database-url", sqlite_url, "bots", "reconcile", "nobody", "--on-time", "0"])
        == 2
    )
    assert "--on-time must be a positive" in capsys.readouterr().err


def test_decisions_made_with_another_config_are_told_apart(any_engine, ada_btc_bars):
    import json

    bars = ada_btc_bars[:800]
    store_bars(any_engine, ADA_BTC, bars)
    config = bot_config(
        "edited-config", "sma_cross", params={"fast": 5, "slow": 20}, start=int(bars.ts[100])
    )
    replay(any_engine, InProcessBus(), [config])
    stored = config.to_dict()
    stored["params"]["slow"] = 30  # the stored config no longer is the one that decided
    with any_engine.begin() as connection:
        connection.execute(
            update(schema.bots)
            .where(schema.bots.c.bot_id == "edited-config")
            .values(config_json=json.dumps(stored, sort_keys=True))
        )
    result = reconcile(load_records(any_engine, "edited-config"))
    assert result.mismatches and result.events == []
    assert {mismatch.kind for mismatch in result.mismatches} == {"config_changed"}
    assert {mismatch.recorded_hash for mismatch in result.mismatches} == {config.config_hash}
    assert result.differences
    assert all(difference.primary.kind == "config_changed" for difference in result.differences)
