"""Aggregation checked against real exchange data (``market_files``).

1. The recorded Binance kline + aggTrade WebSocket streams: every in-progress kline snapshot whose
   trade-id range ``f..L`` is fully covered by recorded aggregate trades is rebuilt from those
   trades, and must equal the exchange's candle in open, high, low, close, volume, trade count,
   quote volume and taker-buy volume (the collection's README counts 17 such snapshots).
2. Binance's own 1m/5m/1h candles rolled up to 5m/1h/4h/1d must equal Binance's own coarser
   candles wherever the coarser candle and all its parts are in the files: the Binance files
   shipped with the repository (any clone), and every Binance file of the wider collection.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from market_files import REPOSITORY_DIRS, market_file
from mock_exchange import read_candle_file

from data_pipeline.aggregate import aggregate_trades, resample_candles

RECORDINGS = (
    "binance_spot_ws_combined_2021-10-12.jsonl",
    "binanceus_ws_combined_2021-10-12.jsonl",
    "binance_usdm_ws_combined_2021-07-22.jsonl",
)
TF_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def covered_snapshots(path):
    """(kline, its aggregate trades) for klines whose f..L is exactly covered by recorded trades."""
    trades, klines = {}, []
    with open(path) as handle:
        for line in handle:
            message = json.loads(line)
            data = message.get("data", message)
            if data.get("e") == "aggTrade":
                trades.setdefault(data["s"], []).append(data)
            elif data.get("e") == "kline":
                klines.append(data)
    for kline in klines:
        first, last = kline["k"]["f"], kline["k"]["L"]
        if first < 0 or last < first:
            continue
        mine = [t for t in trades.get(kline["s"], []) if t["f"] >= first and t["l"] <= last]
        spans = sorted((t["f"], t["l"]) for t in mine)
        contiguous = all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
        if spans and spans[0][0] == first and spans[-1][1] == last and contiguous:
            yield kline, mine


def test_recorded_binance_streams_are_rebuilt_exactly():
    checked = 0
    for name in RECORDINGS:
        for kline, trades in covered_snapshots(market_file(f"exchange_samples/{name}")):
            trades.sort(key=lambda t: (t["T"], t["a"]))
            candles = aggregate_trades(
                [t["T"] for t in trades],
                [float(t["p"]) for t in trades],
                [float(t["q"]) for t in trades],
                60_000,
                buyer_maker=[t["m"] for t in trades],
            )
            k = kline["k"]
            assert candles.size == 1, f"{kline['s']}: trades fell into {candles.size} candles"
            assert candles.ts[0] == k["t"] + 60_000  # close time = exchange open time + 1m
            assert (candles.open[0], candles.high[0], candles.low[0], candles.close[0]) == (
                float(k["o"]),
                float(k["h"]),
                float(k["l"]),
                float(k["c"]),
            )
            assert candles.volume[0] == pytest.approx(float(k["v"]), rel=1e-12)
            assert candles.quote_volume[0] == pytest.approx(float(k["q"]), rel=1e-9)
            assert candles.taker_buy_volume[0] == pytest.approx(float(k["V"]), rel=1e-12)
            assert sum(t["l"] - t["f"] + 1 for t in trades) == k["n"]  # individual trades
            checked += 1
    assert checked == 17


@pytest.fixture(params=["repository", "collection"])
def binance_klines(request):
    """Binance's own kline files by name (LEAN-built ones left out): those shipped with the
    repository, or all of the wider collection's."""
    if request.param == "repository":
        roots = REPOSITORY_DIRS
    else:
        roots = (request.getfixturevalue("shared_data"),)
    files = {}
    for root in roots:
        for path in sorted((root / "ohlcv").glob("binance_*.csv.gz")):
            if "_lean" not in path.name:
                files.setdefault(path.name, path)
    return files


def candles_of(binance_klines, symbol, timeframe):
    rows = read_candle_file(binance_klines[f"binance_{symbol}_{timeframe}.csv.gz"])
    table = np.array([[float(x) for x in row] for row in rows])
    return table[:, 0].astype(np.int64) + TF_MS[timeframe], table[:, 1:]


@pytest.mark.parametrize("source,target", [("1m", "5m"), ("5m", "1h"), ("1h", "4h"), ("1h", "1d")])
def test_rolled_up_binance_candles_equal_binance_coarser_candles(binance_klines, source, target):
    names = binance_klines
    compared = naive_mismatches = 0
    for symbol in sorted({name.split("_")[1] for name in names}):
        if (
            f"binance_{symbol}_{source}.csv.gz" not in names
            or f"binance_{symbol}_{target}.csv.gz" not in names
        ):
            continue
        fine_ts, fine = candles_of(binance_klines, symbol, source)
        coarse_ts, coarse = candles_of(binance_klines, symbol, target)
        rolled = resample_candles(fine_ts, *fine.T, TF_MS[source], TF_MS[target])
        common, mine, theirs = np.intersect1d(rolled.ts, coarse_ts, return_indices=True)
        got = np.column_stack([rolled.open, rolled.high, rolled.low, rolled.close])[mine]
        np.testing.assert_array_equal(
            got, coarse[theirs, :4], err_msg=f"{symbol} {source}->{target}"
        )
        np.testing.assert_allclose(
            rolled.volume[mine], coarse[theirs, 4], rtol=1e-9, err_msg=symbol
        )
        compared += len(common)
        # the zero-volume rule matters: a naive high/low over all parts disagrees somewhere
        bucket = (fine_ts - 1) // TF_MS[target] * TF_MS[target] + TF_MS[target]
        for ts in common[:2000]:
            parts = fine[bucket == ts]
            naive_low = parts[:, 2].min()
            naive_mismatches += naive_low != coarse[coarse_ts == ts, 2][0]
    assert compared > 100
    print(
        f"{source}->{target}: {compared} candles equal; naive O/H/L/C would miss {naive_mismatches}"
    )
    if source == "1m":
        assert naive_mismatches > 0
