"""research.data: inventory and gaps, loading with bounds, and the resampler against oracles.

Oracles: the exchange's own coarser candles (Binance, Bittrex), the shared data's manifest
(rows, gaps, zero-volume bars computed by its build), pandas ``resample`` and plain loops.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from market_files import read_ohlcv_csv
from candela.core.timeframes import timeframe_to_ms
from data_pipeline.store import store_bars
from research.data import gaps, inventory, load_bars, load_frame, resample
from research.types import Bars

MINUTE = 60_000
PAIRS = (("1m", "5m"), ("5m", "1h"), ("1h", "4h"), ("1h", "1d"))


def read_file(path, timeframe) -> Bars:
    """Oracle-side reader (pandas): close time = open time + timeframe."""
    return read_ohlcv_csv(path, timeframe_to_ms(timeframe))


def complete_labels(bars: Bars, timeframe: str) -> set[int]:
    """Labels of target buckets that hold every source bar (plain numpy, no research code)."""
    target = timeframe_to_ms(timeframe)
    labels = -(-bars.ts // target) * target
    values, counts = np.unique(labels, return_counts=True)
    return set(values[counts == target // bars.timeframe_ms].tolist())


def same_bar(ours: Bars, i: int, theirs: Bars, j: int) -> bool:
    prices = all(getattr(ours, name)[i] == getattr(theirs, name)[j] for name in ("open", "high", "low", "close"))
    return prices and abs(ours.volume[i] - theirs.volume[j]) <= 1e-9 * max(1.0, theirs.volume[j])


def compare_with_exchange(fine: Bars, coarse: Bars, timeframe: str, labels=None) -> tuple[int, int]:
    """(compared, matching) bars between our resample of ``fine`` and the exchange's ``coarse``."""
    ours = resample(fine, timeframe)
    position = {t: i for i, t in enumerate(ours.ts.tolist())}
    labels = complete_labels(fine, timeframe) if labels is None else labels
    compared = matching = 0
    for j, label in enumerate(coarse.ts.tolist()):
        if label in labels:
            compared += 1
            matching += same_bar(ours, position[label], coarse, j)
    return compared, matching


def naive_ohlc(fine: Bars, timeframe: str) -> dict[int, tuple]:
    """Aggregation without the zero-volume rule (pandas), to show the rule matters."""
    frame = pd.DataFrame({"label": -(-fine.ts // timeframe_to_ms(timeframe)) * timeframe_to_ms(timeframe),
                          "open": fine.open, "high": fine.high, "low": fine.low, "close": fine.close})
    grouped = frame.groupby("label").agg(open=("open", "first"), high=("high", "max"),
                                         low=("low", "min"), close=("close", "last"))
    return {label: tuple(row) for label, row in zip(grouped.index, grouped.itertuples(index=False))}


# --------------------------------------------------------------------------- resampler vs exchanges


@pytest.mark.slow
def test_resample_reproduces_binance_klines(shared_data):
    """Every complete bucket of every Binance pair equals the exchange's own coarser kline.

    The shared build compared 8786 bars; 3092 of them used 4h klines that are not shipped, so the
    files here allow 5694 comparisons: the count per pair must equal the manifest's.
    """
    manifest = json.loads((shared_data / "manifest.json").read_text())
    expected_counts = {(row["symbol"], row["fine"], row["coarse"]): row["compared_bars"]
                       for row in manifest["checks"]["resample_consistency"] if row["exchange"] == "binance"}
    total = naive_mismatches = 0
    for fine_name, coarse_name in PAIRS:
        for fine_path in sorted((shared_data / "ohlcv").glob(f"binance_*_{fine_name}.csv.gz")):
            coarse_path = fine_path.with_name(fine_path.name.replace(f"_{fine_name}.", f"_{coarse_name}."))
            if not coarse_path.exists():
                continue
            symbol = fine_path.name.split("_")[1]
            fine, coarse = read_file(fine_path, fine_name), read_file(coarse_path, coarse_name)
            compared, matching = compare_with_exchange(fine, coarse, coarse_name)
            assert compared == expected_counts[(symbol, fine_name, coarse_name)], fine_path.name
            assert matching == compared, f"{fine_path.name} -> {coarse_name}: {compared - matching} differ"
            total += compared
            naive = naive_ohlc(fine, coarse_name)
            labels = complete_labels(fine, coarse_name)
            naive_mismatches += sum(
                naive[label] != (coarse.open[j], coarse.high[j], coarse.low[j], coarse.close[j])
                for j, label in enumerate(coarse.ts.tolist()) if label in labels)
    assert total == 8786 - 3092
    assert naive_mismatches > 0  # without the zero-volume rule some bars would differ


def test_resample_reproduces_sample_klines_including_zero_volume_bars(sample_dir):
    """Bundled sample only: Binance BTC/ETH/NEO/XRP-USDT; NEO-USDT 1m has 71 zero-volume bars."""
    folder = sample_dir / "ohlcv"
    compared_total = 0
    for symbol in ("BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"):
        for fine_name, coarse_name in PAIRS:
            fine_path = folder / f"binance_{symbol}_{fine_name}.csv.gz"
            coarse_path = folder / f"binance_{symbol}_{coarse_name}.csv.gz"
            if fine_path.exists() and coarse_path.exists():
                compared, matching = compare_with_exchange(read_file(fine_path, fine_name),
                                                           read_file(coarse_path, coarse_name), coarse_name)
                assert matching == compared
                compared_total += compared
    assert compared_total > 1500
    neo = read_file(folder / "binance_NEO-USDT_1m.csv.gz", "1m")
    assert (neo.volume == 0).sum() == 71
    neo_5m = read_file(folder / "binance_NEO-USDT_5m.csv.gz", "5m")
    naive = naive_ohlc(neo, "5m")
    labels = complete_labels(neo, "5m")
    assert any(naive[t] != (neo_5m.open[j], neo_5m.high[j], neo_5m.low[j], neo_5m.close[j])
               for j, t in enumerate(neo_5m.ts.tolist()) if t in labels)


def test_resample_reproduces_bittrex_candles(sample_dir):
    """Bittrex omits minutes without trades; aggregating the minutes present matches its candles."""
    folder = sample_dir / "ohlcv"
    fine = read_file(folder / "bittrex_ADA-BTC_1m.csv.gz", "1m")
    for coarse_name in ("5m", "1h"):
        coarse = read_file(folder / f"bittrex_ADA-BTC_{coarse_name}.csv.gz", coarse_name)
        target = timeframe_to_ms(coarse_name)
        # buckets fully inside a run of data: the previous and next buckets hold bars too
        labels = np.unique(-(-fine.ts // target) * target)
        present = set(labels.tolist())
        inner = {t for t in present if t - target in present and t + target in present}
        compared, matching = compare_with_exchange(fine, coarse, coarse_name, labels=inner)
        assert compared > 100 and matching == compared


# --------------------------------------------------------------------------- resampler vs pandas


def pandas_oracle(bars: Bars, timeframe: str) -> pd.DataFrame:
    """pandas resample on open times (label='right', closed='left') with the zero-volume rule."""
    index = pd.to_datetime(bars.ts - bars.timeframe_ms, unit="ms", utc=True)
    frame = pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                          "volume": bars.volume}, index=index)
    traded = frame[["open", "high", "low", "close"]].where(frame["volume"] > 0)
    rule = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}[timeframe]
    sampler = dict(rule=rule, label="right", closed="left")
    result = pd.DataFrame({
        "open": traded["open"].resample(**sampler).first(),
        "high": traded["high"].resample(**sampler).max(),
        "low": traded["low"].resample(**sampler).min(),
        "close": traded["close"].resample(**sampler).last(),
        "volume": frame["volume"].resample(**sampler).sum(),
        "last_close": frame["close"].resample(**sampler).last(),
        "bars": frame["close"].resample(**sampler).count(),
    })
    result = result[result["bars"] > 0]
    for name in ("open", "high", "low", "close"):  # all bars empty: flat at the last close
        result[name] = result[name].fillna(result["last_close"])
    return result.drop(columns=["last_close", "bars"])


def assert_matches_oracle(bars: Bars, timeframe: str):
    ours = resample(bars, timeframe, partial=True)
    oracle = pandas_oracle(bars, timeframe)
    assert ours.ts.tolist() == oracle.index.as_unit("ms").asi8.tolist()
    for name in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(ours, name), oracle[name].to_numpy())
    np.testing.assert_allclose(ours.volume, oracle["volume"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "4h", "1d"])
def test_resample_matches_pandas_on_bittrex(sample_dir, timeframe):
    assert_matches_oracle(read_file(sample_dir / "ohlcv" / "bittrex_ADA-BTC_1m.csv.gz", "1m"), timeframe)


@st.composite
def random_bars(draw):
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 7]), min_size=n, max_size=n))
    start = draw(st.integers(0, 30))
    ts = (start + np.cumsum(steps)) * MINUTE
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(n).cumsum()
    open_ = close + rng.standard_normal(n)
    high = np.maximum(open_, close) + rng.random(n)
    low = np.minimum(open_, close) - rng.random(n)
    volume = np.where(rng.random(n) < 0.3, 0.0, rng.random(n) * 10)
    return Bars.from_arrays(ts, open_, high, low, close, volume, MINUTE)


@settings(max_examples=120, deadline=None)
@given(bars=random_bars(), timeframe=st.sampled_from(["5m", "15m", "1h"]))
def test_resample_property_matches_pandas_and_drops_only_unfinished_edges(bars, timeframe):
    assert_matches_oracle(bars, timeframe)
    everything = resample(bars, timeframe, partial=True)
    trimmed = resample(bars, timeframe)
    target = timeframe_to_ms(timeframe)
    first_unfinished = bars.ts[0] - MINUTE > everything.ts[0] - target
    last_unfinished = bars.ts[-1] < everything.ts[-1]
    keep = np.ones(len(everything), dtype=bool)
    keep[0] &= not first_unfinished
    keep[-1] &= not last_unfinished
    assert trimmed.ts.tolist() == everything.ts[keep].tolist()
    assert trimmed.timeframe_ms == target
    # causality: no bar of the result is labelled before the data it holds
    assert (trimmed.ts <= bars.ts[-1]).all()


def test_resample_frames_weeks_and_bad_arguments(sample_dir):
    bars = read_file(sample_dir / "ohlcv" / "binance_BTC-USDT_1d.csv.gz", "1d")
    frame = pd.DataFrame({name: getattr(bars, name) for name in ("open", "high", "low", "close", "volume")},
                         index=pd.DatetimeIndex(pd.to_datetime(bars.ts, unit="ms", utc=True), name="ts"))
    weekly = resample(frame, "1w")  # timeframe inferred from the index
    assert isinstance(weekly, pd.DataFrame) and str(weekly.index.tz) == "UTC" and weekly.index.name == "ts"
    assert (weekly.index.day_of_week == 0).all() and (weekly.index.hour == 0).all()  # Monday 00:00 closes
    as_bars = resample(bars, "1w")
    np.testing.assert_array_equal(weekly["close"].to_numpy(), as_bars.close)
    # a week closing Monday holds the seven daily bars closing Tuesday..Monday
    position = {t: i for i, t in enumerate(bars.ts.tolist())}
    label = int(as_bars.ts[3])
    days = [position[label - k * 86_400_000] for k in range(6, -1, -1)]
    assert as_bars.open[3] == bars.open[days[0]] and as_bars.close[3] == bars.close[days[-1]]
    assert as_bars.high[3] == bars.high[days].max()

    with pytest.raises(ValueError, match="whole multiple"):
        resample(bars, "4h")
    three = Bars.from_arrays([180_000, 360_000], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1], 180_000)
    with pytest.raises(ValueError, match="whole multiple"):
        resample(three, "5m")
    with pytest.raises(ValueError, match="unknown timeframe"):
        resample(bars, "2d")
    with pytest.raises(TypeError, match="Bars or a DataFrame"):
        resample(bars.close, "1w")


# --------------------------------------------------------------------------- the database side


def synthetic(ts_minutes, seed=0) -> tuple:
    rng = np.random.default_rng(seed)
    ts = np.asarray(ts_minutes, dtype=np.int64) * MINUTE
    close = 100 + rng.standard_normal(len(ts)).cumsum()
    return ts, close, close + 1, close - 1, close, rng.random(len(ts))


def gap_oracle(ts, step):
    """Plain loop over consecutive bars: (first missing, last missing, count) per gap."""
    result = []
    for previous, current in zip(ts[:-1], ts[1:]):
        if current - previous > step:
            result.append((previous + step, current - step, (current - previous) // step - 1))
    return result


def test_inventory_and_gaps_on_synthetic_markets(engine):
    assert list(inventory(engine).columns) == ["exchange", "symbol", "timeframe", "first", "last",
                                               "bars", "gaps", "missing_bars"]
    assert inventory(engine).empty
    minutes = [1, 2, 3, 7, 8, 20, 21, 22, 23, 30]
    hours = np.array([1, 2, 3, 4, 5]) * 60
    with engine.begin() as connection:
        store_bars(connection, "kraken", "ETH/EUR", "1m", *synthetic(minutes))
        store_bars(connection, "kraken", "ETH/EUR", "1h", *synthetic(hours))
        store_bars(connection, "binance", "BTC/USDT", "1m", *synthetic(range(1, 101)))
    table = inventory(engine)
    assert table[["exchange", "symbol", "timeframe"]].values.tolist() == [
        ["binance", "BTC/USDT", "1m"], ["kraken", "ETH/EUR", "1m"], ["kraken", "ETH/EUR", "1h"]]
    row = table.iloc[1]
    expected = gap_oracle([m * MINUTE for m in minutes], MINUTE)
    assert (row.bars, row.gaps, row.missing_bars) == (10, len(expected), sum(g[2] for g in expected))
    assert row["first"] == pd.Timestamp(MINUTE, unit="ms", tz="UTC")
    assert row["last"] == pd.Timestamp(30 * MINUTE, unit="ms", tz="UTC")
    assert table.iloc[0].gaps == 0 and table.iloc[2].gaps == 0

    found = gaps(engine, "kraken", "ETH/EUR", "1m")
    assert list(zip(found["first_missing_ts"], found["last_missing_ts"], found["missing_bars"])) == expected
    assert found["first_missing"].iloc[0] == pd.Timestamp("1970-01-01 00:04", tz="UTC")
    assert gaps(engine, "binance", "BTC/USDT", "1m").empty
    with pytest.raises(ValueError, match="stored markets"):
        gaps(engine, "kraken", "BTC/EUR", "1m")


@pytest.mark.slow
def test_inventory_of_the_sample_matches_its_manifest(engine, sample_dir):
    """Rows, spans and gaps per file as computed independently by the shared data's build."""
    from data_pipeline.importer import import_candles

    manifest = json.loads((sample_dir / "manifest.json").read_text())["files"]
    for entry in manifest:
        import_candles(engine, sample_dir / entry["file"], entry["exchange"], entry["symbol"], entry["timeframe"])
    table = inventory(engine).set_index(["exchange", "symbol", "timeframe"])
    assert len(table) == len(manifest)
    for entry in manifest:
        row = table.loc[(entry["exchange"], entry["symbol"], entry["timeframe"])]
        length = pd.Timedelta(milliseconds=timeframe_to_ms(entry["timeframe"]))
        assert row.bars == entry["rows"]
        assert (row.gaps, row.missing_bars) == (entry["gap_segments"], entry["missing_bars"])
        assert row["first"] == pd.Timestamp(entry["first_open_time"]) + length
        assert row["last"] == pd.Timestamp(entry["last_open_time"]) + length
    ada = gaps(engine, "bittrex", "ADA/BTC", "1m")
    assert len(ada) == 1436 and ada["missing_bars"].sum() == 237753

    # resampling what was loaded from the database equals the exchange's own candles
    fine = load_frame(engine, "binance", "BTC/USDT", "1h")
    coarse = load_frame(engine, "binance", "BTC/USDT", "4h")
    ours = resample(fine, "4h")
    common = ours.index.intersection(coarse.index)
    labels = complete_labels(load_bars(engine, "binance", "BTC/USDT", "1h"), "4h")
    common = common[[int(t.value // 1_000_000) in labels for t in common]]
    assert len(common) > 300
    pd.testing.assert_frame_equal(ours.loc[common], coarse.loc[common], check_freq=False)


def test_load_bars_equals_read_sql_and_bounds_are_inclusive(engine):
    if engine.dialect.name == "postgresql":  # make the server return rows in storage order
        with engine.begin() as connection:
            name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
            for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                connection.execute(sa.text(f'ALTER DATABASE "{name}" SET {setting} = off'))
        engine.dispose()
    data = synthetic(range(1, 301), seed=3)
    with engine.begin() as connection:  # later bars first: rows are stored out of time order
        store_bars(connection, "binance", "BTC/USDT", "1m", *(column[150:] for column in data))
        store_bars(connection, "binance", "BTC/USDT", "1m", *(column[:150] for column in data))
        store_bars(connection, "binance", "ETH/USDT", "1m", *synthetic(range(1, 50)))
    with engine.connect() as connection:
        oracle = pd.read_sql(sa.text("SELECT ts, open, high, low, close, volume FROM ohlcv "
                                     "WHERE symbol = 'BTC/USDT' ORDER BY ts"), connection)
    bars = load_bars(engine, "binance", "BTC/USDT", "1m")
    assert bars.timeframe_ms == MINUTE and bars.ts.dtype == np.int64 and bars.close.flags.c_contiguous
    for name in ("ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(bars, name), oracle[name].to_numpy())

    start, end = 10 * MINUTE, 20 * MINUTE
    expected = list(range(10 * MINUTE, 21 * MINUTE, MINUTE))
    for low, high in [
        (start, end),
        (pd.Timestamp(start, unit="ms", tz="UTC"), pd.Timestamp(end, unit="ms", tz="UTC")),
        ("1970-01-01T00:10:00", "1970-01-01 00:20"),  # tz-naive strings are UTC
        ("1970-01-01T01:10:00+01:00", "1970-01-01T00:20Z"),
        (dt.datetime(1970, 1, 1, 0, 10), dt.datetime(1970, 1, 1, 0, 20, tzinfo=dt.timezone.utc)),
        (np.datetime64("1970-01-01T00:10"), np.int64(end)),
    ]:
        assert load_bars(engine, "binance", "BTC/USDT", "1m", low, high).ts.tolist() == expected
    assert load_bars(engine, "binance", "BTC/USDT", "1m", start=295 * MINUTE).ts.tolist() == \
        [t * MINUTE for t in range(295, 301)]
    assert load_bars(engine, "binance", "BTC/USDT", "1m", end=MINUTE).ts.tolist() == [MINUTE]

    frame = load_frame(engine, "binance", "BTC/USDT", "1m", start, end)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "ts" and str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("1970-01-01 00:10", tz="UTC")
    assert frame.attrs["timeframe"] == "1m"


def test_history_loads_that_many_stored_bars_before_the_start(engine):
    """Stored bars, gaps skipped: the N stored bars before ``start``, or all there are."""
    minutes = [m for m in range(1, 101) if not 40 <= m < 60]  # a 20-bar hole
    with engine.begin() as connection:
        store_bars(connection, "binance", "BTC/USDT", "1m", *synthetic(minutes))
    loaded = load_bars(engine, "binance", "BTC/USDT", "1m", start=70 * MINUTE, end=80 * MINUTE,
                       history=15)
    expected = [m for m in minutes if m <= 80]
    expected = expected[expected.index(70) - 15:]
    assert loaded.ts.tolist() == [m * MINUTE for m in expected]  # 35..39, 60..80
    everything_before = load_bars(engine, "binance", "BTC/USDT", "1m", start="1970-01-01T00:05",
                                  history=1_000)
    assert everything_before.ts[0] == MINUTE and everything_before.ts[-1] == 100 * MINUTE
    assert load_bars(engine, "binance", "BTC/USDT", "1m", start=5 * MINUTE, history=0).ts[0] == \
        5 * MINUTE
    with pytest.raises(ValueError, match="give start too"):
        load_bars(engine, "binance", "BTC/USDT", "1m", history=10)
    with pytest.raises(ValueError, match="history must be a number of bars"):
        load_bars(engine, "binance", "BTC/USDT", "1m", start=5 * MINUTE, history=-1)


def test_load_errors_say_what_is_stored(engine):
    with engine.begin() as connection:
        store_bars(connection, "binance", "BTC/USDT", "1m", *synthetic(range(1, 11)))
        store_bars(connection, "binance", "BTC/USDT", "5m", *synthetic(np.arange(1, 5) * 5))
    with pytest.raises(ValueError, match=r"no bars for binance ETH/USDT 1m; stored markets: binance BTC/USDT \(1m, 5m\)"):
        load_bars(engine, "binance", "ETH/USDT", "1m")
    with pytest.raises(ValueError, match="is stored at 1m, 5m"):
        load_bars(engine, "binance", "BTC/USDT", "1h")
    with pytest.raises(ValueError, match="widen start/end"):
        load_bars(engine, "binance", "BTC/USDT", "1m", start="2020-01-01")
    with pytest.raises(ValueError, match="swap them"):
        load_bars(engine, "binance", "BTC/USDT", "1m", start=5 * MINUTE, end=MINUTE)
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        load_bars(engine, "binance", "BTCUSDT", "1m")
    with pytest.raises(TypeError, match="time bound"):
        load_bars(engine, "binance", "BTC/USDT", "1m", start=1.5)
    with pytest.raises(ValueError, match="time bound"):
        load_bars(engine, "binance", "BTC/USDT", "1m", start="yesterday-ish")


def test_load_accepts_a_database_url(database_url):
    from candela.core.db import connect

    engine = connect(database_url)
    with engine.begin() as connection:
        store_bars(connection, "binance", "BTC/USDT", "1m", *synthetic(range(1, 11)))
    engine.dispose()
    assert len(load_bars(database_url, "binance", "BTC/USDT", "1m")) == 10
