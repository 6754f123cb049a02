"""store_bars on SQLite and PostgreSQL: insert, idempotence, conflicts, transactions."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candela.core.schema import ohlcv
from data_pipeline.store import StoreResult, store_bars

MINUTE = 60_000
MARKET = ("binance", "BTC/USDT", "1m")


def bars(ts, seed=0):
    """Random but valid bars at close times ``ts`` (values with many decimal digits)."""
    rng = np.random.default_rng(seed)
    ts = np.asarray(ts, dtype=np.int64)
    close = 100 + rng.standard_normal(len(ts)).cumsum()
    open_ = close + rng.standard_normal(len(ts)) / 3
    high = np.maximum(open_, close) + rng.random(len(ts))
    low = np.minimum(open_, close) - rng.random(len(ts))
    volume = rng.random(len(ts)) * 1e3 / 7
    return ts, open_, high, low, close, volume


def stored(engine, market=MARKET):
    exchange, symbol, timeframe = market
    query = (
        sa.select(
            ohlcv.c.ts, ohlcv.c.open, ohlcv.c.high, ohlcv.c.low, ohlcv.c.close, ohlcv.c.volume
        )
        .where(
            ohlcv.c.exchange == exchange, ohlcv.c.symbol == symbol, ohlcv.c.timeframe == timeframe
        )
        .order_by(ohlcv.c.ts)
    )
    with engine.connect() as connection:
        return connection.execute(query).all()


def test_insert_then_reimport_is_unchanged(engine):
    data = bars(np.arange(1, 501) * MINUTE)
    with engine.begin() as connection:
        first = store_bars(connection, *MARKET, *data)
    assert first == StoreResult(inserted=500, unchanged=0, conflicting=0)
    rows = stored(engine)
    assert [row[0] for row in rows] == data[0].tolist()
    # float values survive the round trip bit for bit (COPY binary on PostgreSQL)
    assert np.array_equal(np.array([row[1:] for row in rows]), np.column_stack(data[1:]))

    with engine.begin() as connection:
        second = store_bars(connection, *MARKET, *data)
    assert second == StoreResult(inserted=0, unchanged=500, conflicting=0)
    assert len(stored(engine)) == 500


def test_conflicts_are_reported_and_never_overwrite(engine):
    data = bars(np.arange(1, 101) * MINUTE)
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *data)
    before = stored(engine)

    ts = np.arange(51, 151) * MINUTE  # 50 overlap, 50 new
    changed = list(bars(ts, seed=1))
    overlap = dict(zip(data[0].tolist(), range(100)))
    for column in range(1, 6):  # overlapping rows equal the stored ones ...
        for row, value in enumerate(ts.tolist()):
            if value in overlap:
                changed[column][row] = data[column][overlap[value]]
    changed[5][3] += 1.0  # ... except two: one volume and one close differ
    changed[4][10] *= 1.0000001
    changed[2][10] = max(changed[2][10], changed[4][10])
    with engine.begin() as connection:
        result = store_bars(connection, *MARKET, *changed)
    assert result.inserted == 50 and result.unchanged == 48 and result.conflicting == 2
    assert result.conflict_examples == (int(ts[3]), int(ts[10]))
    after = stored(engine)
    assert after[:100] == before  # the stored rows were kept
    assert len(after) == 150


def test_markets_are_independent(engine):
    data = bars(np.arange(1, 11) * MINUTE)
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *data)
        other = store_bars(connection, "binance", "ETH/USDT", "1m", *data)
        other_timeframe = store_bars(connection, "binance", "BTC/USDT", "5m", *data)
    assert other.inserted == 10 and other_timeframe.inserted == 10


def test_rollback_leaves_nothing(engine):
    data = bars(np.arange(1, 1001) * MINUTE)
    with pytest.raises(RuntimeError, match="boom"):
        with engine.begin() as connection:
            assert store_bars(connection, *MARKET, *data).inserted == 1000
            raise RuntimeError("boom")
    assert stored(engine) == []


def test_two_calls_in_one_transaction(engine):
    with engine.begin() as connection:
        first = store_bars(connection, *MARKET, *bars(np.arange(1, 11) * MINUTE))
        second = store_bars(connection, *MARKET, *bars(np.arange(5, 21) * MINUTE))
    assert first.inserted == 10
    assert second.inserted == 10 and second.unchanged + second.conflicting == 6


def test_empty_and_invalid_input(engine):
    empty = np.array([], dtype=np.int64)
    with engine.begin() as connection:
        assert store_bars(connection, *MARKET, empty, [], [], [], [], []) == StoreResult(0, 0, 0)
        with pytest.raises(ValueError, match="duplicate"):
            store_bars(connection, *MARKET, *bars([MINUTE, MINUTE]))
        with pytest.raises(ValueError, match="NaN"):
            store_bars(connection, *MARKET, [MINUTE], [np.nan], [1.0], [1.0], [1.0], [1.0])
        with pytest.raises(ValueError, match="BASE/QUOTE"):
            store_bars(connection, "binance", "BTCUSDT", "1m", *bars([MINUTE]))
        with pytest.raises(ValueError, match="timeframe"):
            store_bars(connection, "binance", "BTC/USDT", "7m", *bars([MINUTE]))
        with pytest.raises(TypeError, match="int64"):
            store_bars(connection, *MARKET, [1.5], [1.0], [1.0], [1.0], [1.0], [1.0])
    assert stored(engine) == []


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.tuples(st.sets(st.integers(1, 60), max_size=25), st.integers(0, 2)),
        min_size=1,
        max_size=4,
    )
)
def test_counts_match_a_dictionary_model(engine, batches):
    """Property: after any sequence of batches, the table equals 'first write wins'."""
    market = ("kraken", f"P{uuid.uuid4().hex[:10].upper()}/USD", "1m")  # fresh per example
    model: dict[int, tuple] = {}
    for keys, seed in batches:
        ts = np.array(sorted(keys), dtype=np.int64) * MINUTE
        data = bars(ts, seed=seed)
        rows = {int(t): tuple(float(column[i]) for column in data[1:]) for i, t in enumerate(ts)}
        expected_new = [t for t in rows if t not in model]
        expected_conflicts = [t for t in rows if t in model and model[t] != rows[t]]
        with engine.begin() as connection:
            result = store_bars(connection, *market, *data)
        assert result.inserted == len(expected_new)
        assert result.conflicting == len(expected_conflicts)
        assert result.unchanged == len(rows) - len(expected_new) - len(expected_conflicts)
        for t in expected_new:
            model[t] = rows[t]
    table = {row[0]: tuple(row[1:]) for row in stored(engine, market)}
    assert table == model


def versions(engine, ts, market=MARKET):
    """``(current row, [superseded versions oldest first])`` of the bar closing at ``ts``."""
    from candela.core.schema import ohlcv_revisions

    exchange, symbol, timeframe = market
    key = (exchange, symbol, timeframe, ts)
    with engine.connect() as connection:
        current = (
            connection.execute(
                sa.select(ohlcv).where(
                    ohlcv.c.exchange == key[0],
                    ohlcv.c.symbol == key[1],
                    ohlcv.c.timeframe == key[2],
                    ohlcv.c.ts == key[3],
                )
            )
            .mappings()
            .one()
        )
        old = (
            connection.execute(
                sa.select(ohlcv_revisions)
                .where(
                    ohlcv_revisions.c.exchange == key[0],
                    ohlcv_revisions.c.symbol == key[1],
                    ohlcv_revisions.c.timeframe == key[2],
                    ohlcv_revisions.c.ts == key[3],
                )
                .order_by(ohlcv_revisions.c.revised_at, ohlcv_revisions.c.id)
            )
            .mappings()
            .all()
        )
    return current, old


def test_every_stored_bar_records_when_it_was_ingested(engine):
    from candela.core.db import now_ms

    before = now_ms()
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *bars(np.arange(1, 51) * MINUTE))
    after = now_ms()
    with engine.begin() as connection:  # stored again: unchanged rows keep their first ingest time
        store_bars(connection, *MARKET, *bars(np.arange(1, 61) * MINUTE))
    with engine.connect() as connection:
        rows = dict(connection.execute(sa.select(ohlcv.c.ts, ohlcv.c.ingested_at)).all())
    first = [rows[int(ts)] for ts in np.arange(1, 51) * MINUTE]
    assert all(before <= value <= after for value in first)
    assert all(rows[int(ts)] >= after for ts in np.arange(51, 61) * MINUTE)


def test_revise_replaces_differing_bars_and_keeps_each_replaced_version(engine):
    ts = np.arange(1, 21) * MINUTE
    original = bars(ts)
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *original)
    first_current, _ = versions(engine, int(ts[4]))

    corrected = [column.copy() for column in original]
    corrected[4][4] = corrected[4][4] + 0.5  # close of bar 5
    corrected[2][4] = max(corrected[2][4], corrected[4][4])
    with engine.begin() as connection:  # without revise: reported, kept
        kept = store_bars(connection, *MARKET, *corrected)
    assert (kept.conflicting, kept.revised) == (1, 0)
    assert versions(engine, int(ts[4]))[1] == []

    with engine.begin() as connection:
        revised = store_bars(connection, *MARKET, *corrected, revise=True)
    assert (revised.inserted, revised.unchanged, revised.conflicting, revised.revised) == (
        0,
        19,
        1,
        1,
    )
    current, old = versions(engine, int(ts[4]))
    assert current["close"] == corrected[4][4] and current["high"] == corrected[2][4]
    assert len(old) == 1
    assert (old[0]["close"], old[0]["high"]) == (original[4][4], original[2][4])
    assert old[0]["ingested_at"] == first_current["ingested_at"]
    assert old[0]["revised_at"] == current["ingested_at"] >= first_current["ingested_at"]

    again = [column.copy() for column in corrected]
    again[5][4] += 7.0  # a second revision of the same bar (its volume)
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *again, revise=True)
    latest, chain = versions(engine, int(ts[4]))
    assert latest["volume"] == again[5][4]
    assert [(row["close"], row["volume"]) for row in chain] == [
        (original[4][4], original[5][4]),
        (corrected[4][4], corrected[5][4]),
    ]
    assert chain[1]["ingested_at"] == chain[0]["revised_at"] <= chain[1]["revised_at"]
    others = [row for row in stored(engine) if row[0] != int(ts[4])]
    assert np.array_equal(
        np.array([row[1:] for row in others]), np.delete(np.column_stack(original[1:]), 4, axis=0)
    )


def test_a_failed_revision_leaves_no_trace(engine):
    from candela.core.schema import ohlcv_revisions

    ts = np.arange(1, 11) * MINUTE
    original = bars(ts)
    with engine.begin() as connection:
        store_bars(connection, *MARKET, *original)
    corrected = [column.copy() for column in original]
    corrected[5][2] += 3.0
    with pytest.raises(RuntimeError, match="abort"), engine.begin() as connection:
        store_bars(connection, *MARKET, *corrected, revise=True)
        raise RuntimeError("abort")
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(ohlcv_revisions)).scalar_one()
            == 0
        )
    assert np.array_equal(
        np.array([row[1:] for row in stored(engine)]), np.column_stack(original[1:])
    )
