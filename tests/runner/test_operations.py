"""Operational clarity: what ``candela run`` says it starts, its replay progress and live
summary, the report of a bot without bars, and the states ``candela bots list`` tells apart
(running, idle, orphaned, stopped, failed).

Real runner processes (``candela run`` as a subprocess, killed with SIGKILL where a runner
vanishes), a real database and the real bars of the bundled sample.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runner_fixtures import _migrated_engine
from runner_support import (
    ADA_BTC,
    FAST_SETTINGS,
    bot_config,
    cursor_ts,
    replay,
    store_bars,
    wait_for,
)

from candela.cli import main as candela
from candela.core.bus import InProcessBus

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EMPTY_MARKET = ("bittrex", "LTC/BTC", "1m")


def _write_bots(folder: Path, bots: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for bot_id, fields in bots.items():
        market = fields.pop("market", ADA_BTC)
        data = dict(
            strategy="sma_cross",
            exchange=market[0],
            symbol=market[1],
            timeframe=market[2],
            **fields,
        )
        (folder / f"{bot_id}.json").write_text(json.dumps(data))
    return folder


def _environment(url: str) -> dict:
    environment = dict(os.environ, CANDELA_DATABASE_URL=url, PYTHONPATH=str(HERE))
    environment.pop("CANDELA_REDIS_URL", None)
    return environment


def _states(url: str, capsys, stale: float = 60.0) -> dict[str, str]:
    """``{bot_id: state column}`` of ``candela bots list``."""
    capsys.readouterr()
    assert candela(["--database-url", url, "bots", "list", "--stale", str(stale)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["bot", "state"]
    return {line.split()[0]: line.split()[1] for line in lines[1:] if "not registered" not in line}


def test_replay_says_what_it_starts_shows_progress_and_explains_a_bot_without_bars(
    sqlite_url, ada_btc_bars, tmp_path
):
    engine = _migrated_engine(sqlite_url)
    bars = ada_btc_bars[:4000]
    store_bars(engine, ADA_BTC, bars)
    engine.dispose()
    folder = _write_bots(
        tmp_path / "bots",
        {
            "fast": {"params": {"fast": 5, "slow": 20}},
            "slow": {"params": {"fast": 20, "slow": 80}},
            "nothing": {"market": EMPTY_MARKET},
        },
    )
    command = [
        sys.executable,
        "-m",
        "candela.cli",
        "run",
        "--bots",
        str(folder),
        "--replay",
        "--progress",
        "0.02",
        "--batch-bars",
        "50",
    ]
    done = subprocess.run(
        command, cwd=REPO, env=_environment(sqlite_url), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()

    # what it starts: the database, the bus, each market with its stored bars, each bot
    assert out[0] == "candela run: 3 bot(s) on 2 market(s), replaying stored bars to the newest"
    assert out[1] == f"  database  {sqlite_url}"
    assert out[2].startswith("  bus       in-process (CANDELA_REDIS_URL is not set")
    first, last = (
        datetime.fromtimestamp(int(ts) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        for ts in (bars.ts[0], bars.ts[-1])
    )
    assert f"  market    bittrex ADA/BTC 1m: {len(bars):,} stored bars, {first} .. {last}" in out
    assert (
        "  market    bittrex LTC/BTC 1m: no stored bar: nothing to replay (store bars with "
        "'candela data backfill' or 'candela data import')" in out
    )
    assert "  bot       fast: sma_cross(fast=5, slow=20) on bittrex ADA/BTC 1m; new" in out

    # what happened: every bar of the two bots, and why the third had none
    report = {line.split()[0]: line for line in out if re.match(r"^\S+ +(finished|no bars)", line)}
    assert re.match(rf"fast +finished +bars={len(bars):,} ", report["fast"])
    assert re.match(rf"slow +finished +bars={len(bars):,} ", report["slow"])
    assert re.match(
        r"nothing +no bars +bars=0 +restarts=0  bittrex LTC/BTC 1m has no stored bar",
        report["nothing"],
    )
    assert out[-1].startswith(f"replayed {2 * len(bars):,} bars of 3 bot(s) in ")

    # progress (stderr is no terminal here: a line every --progress seconds, the last at 100 %)
    progress = [line for line in done.stderr.splitlines() if line.startswith("replay: ")]
    pattern = re.compile(r"replay: (\d+)% ([\d,]+)/([\d,]+) bars, ([\d,]+) bars/s, (.+)$")
    parsed = [pattern.match(line) for line in progress]
    assert all(parsed), progress
    counts = [int(match.group(2).replace(",", "")) for match in parsed]
    assert len(progress) >= 2 and counts == sorted(counts)
    assert {int(match.group(3).replace(",", "")) for match in parsed} == {2 * len(bars)}
    assert parsed[-1].group(1) == "100" and counts[-1] == 2 * len(bars)
    assert any(match.group(5).endswith(" left") for match in parsed[:-1])

    # a second run has nothing left to do, and says so
    again = subprocess.run(
        command, cwd=REPO, env=_environment(sqlite_url), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        "  bot       fast: sma_cross(fast=5, slow=20) on bittrex ADA/BTC 1m; resumes after "
        in again.stdout
    )
    assert re.search(
        r"^fast +up to date +bars=0 +restarts=0  already processed every stored bar",
        again.stdout,
        re.MULTILINE,
    )


def test_replay_of_markets_without_any_bar_is_one_error_line(sqlite_url, tmp_path, capsys):
    _migrated_engine(sqlite_url).dispose()
    folder = _write_bots(tmp_path / "bots", {"nothing": {"market": EMPTY_MARKET}})
    assert candela(["--database-url", sqlite_url, "run", "--bots", str(folder), "--replay"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "error: nothing to replay: no stored bar for bittrex LTC/BTC 1m; store some "
        "first with 'candela data backfill' or 'candela data import'"
    ]


@pytest.mark.slow
def test_bots_list_tells_running_idle_orphaned_stopped_and_failed_apart(
    any_engine, ada_btc_bars, tmp_path, capsys
):
    url = any_engine.url.render_as_string(hide_password=False)
    bars = ada_btc_bars[:600]
    store_bars(any_engine, ADA_BTC, bars)
    folder = _write_bots(tmp_path / "bots", {"hosted": {"start": int(bars.ts[0])}})
    command = [
        sys.executable,
        "-m",
        "candela.cli",
        "run",
        "--bots",
        str(folder),
        "--poll",
        "0.05",
        "--heartbeat",
        "0.2",
        "--summary",
        "0.5",
    ]

    def start():
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=_environment(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: cursor_ts(any_engine, "hosted") == bars.ts[-1], 120, message="catch-up")
        wait_for(
            lambda: _states(url, capsys).get("hosted") == "running",
            30,
            interval=0.1,
            message="the bot to show as running",
        )
        return process

    runner = start()
    runner.send_signal(signal.SIGKILL)  # the runner vanishes without a word
    runner.communicate(timeout=30)
    assert _states(url, capsys, stale=60).get("hosted") == "running"  # its heartbeat is still fresh
    wait_for(
        lambda: _states(url, capsys, stale=1).get("hosted") == "orphaned",
        30,
        interval=0.2,
        message="the bot to show as orphaned",
    )
    capsys.readouterr()
    assert candela(["--database-url", url, "bots", "list", "--stale", "1"]) == 0
    listing = capsys.readouterr().out
    assert "(its runner is gone: 'candela run' resumes it from its last bar)" in listing

    runner = start()  # it resumes the orphaned bot
    wait_for(
        lambda: "bots: 1 running;" in _read_available(runner),
        20,
        interval=0.2,
        message="a live summary line",
    )
    runner.send_signal(signal.SIGTERM)  # a clean stop says so
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err[-2000:]
    assert "following live bars" in out.splitlines()[0]
    assert _states(url, capsys, stale=1).get("hosted") == "idle"

    assert candela(["--database-url", url, "bots", "stop", "hosted"]) == 0
    assert _states(url, capsys).get("hosted") == "stopped"

    broken = bot_config(
        "broken", "runner_test_strategies:BROKEN", params={"fail_at_ts": int(bars.ts[100])}
    )
    replay(any_engine, InProcessBus(), [broken], settings=FAST_SETTINGS)
    assert _states(url, capsys).get("broken") == "failed"


_seen_stderr: dict[int, str] = {}


def _read_available(process) -> str:
    """Everything ``process`` wrote to stderr so far (non-blocking)."""
    import select

    text = _seen_stderr.get(process.pid, "")
    while select.select([process.stderr], [], [], 0)[0]:
        chunk = os.read(process.stderr.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        text += chunk
    _seen_stderr[process.pid] = text
    return text


def test_an_outage_is_said_once_and_its_end_once(caplog):
    """Many failures make one warning, the first success one line with the outage's length; the
    stale connections failing right after a recovery are no new outage, a lasting one is."""
    from runner.outage import Outage

    now = [100.0]
    notices = []
    outage = Outage(
        "database",
        "bots wait",
        notice=lambda event, **details: notices.append(event),
        quiet=10.0,
        clock=lambda: now[0],
    )
    for _ in range(5):
        outage.failed("connection refused")
        now[0] += 1
    assert outage.down
    outage.succeeded()
    outage.succeeded()
    now[0] += 2
    outage.failed("server closed the connection unexpectedly")  # a pooled connection of before
    assert not outage.down
    now[0] += 20
    outage.failed("connection refused")  # down again, for real
    now[0] += 3
    outage.succeeded()
    said = [record.getMessage() for record in caplog.records if record.name == "runner.outage"]
    assert said == [
        "database unreachable (connection refused): bots wait; retrying until it is back",
        "database reachable again after 5.0 s",
        "database unreachable (connection refused): bots wait; retrying until it is back",
        "database reachable again after 3.0 s",
    ]
    assert notices == ["database_unavailable", "database_recovered"] * 2
    assert outage.outages == 2
