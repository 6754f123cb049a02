"""Trade aggregation throughput: 10M synthetic trades -> candles (target: over 5M trades/s).

Run with ``.venv/bin/python -m bench.aggregate_speed``. Two paths are timed:

* :func:`data_pipeline.aggregate.aggregate_trades`, one pass over all trades per timeframe
  (what a bulk trades-to-candles conversion does);
* :class:`data_pipeline.aggregate.CandleAggregator`, fed in live-sized batches for three
  timeframes at once (what the collector does).

The trades are synthetic (a random walk, about 20 trades per second for 5.8 days); no timed
assertion is made.
"""

from __future__ import annotations

import numpy as np

from bench.timing import best_of
from data_pipeline.aggregate import CandleAggregator, aggregate_trades

N_TRADES = 10_000_000
TARGET = 5_000_000
TIMEFRAMES = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}


def synthetic_trades(n: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    ts = 1_704_067_200_000 + np.cumsum(rng.exponential(50.0, n)).astype(np.int64)
    price = 42_000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-5, n)))
    amount = rng.exponential(0.05, n)
    buyer_maker = rng.random(n) < 0.5
    return ts, price, amount, buyer_maker


def main() -> None:
    ts, price, amount, buyer_maker = synthetic_trades(N_TRADES)
    print(f"{N_TRADES:,} synthetic trades over {(ts[-1] - ts[0]) / 86_400_000:.1f} days")
    for name, tf in TIMEFRAMES.items():
        seconds, _ = best_of(
            lambda tf=tf: aggregate_trades(ts, price, amount, tf, buyer_maker=buyer_maker), 3
        )
        rate = N_TRADES / seconds
        print(
            f"aggregate_trades {name:>3}: {seconds:6.3f} s  {rate / 1e6:6.1f} M trades/s  "
            f"({rate / TARGET:4.1f}x the 5M/s target)"
        )

    for batch in (1_000, 100_000):

        def live(batch=batch):
            aggregator = CandleAggregator(TIMEFRAMES)
            for start in range(0, N_TRADES, batch):
                stop = start + batch
                aggregator.add(
                    ts[start:stop], price[start:stop], amount[start:stop], buyer_maker[start:stop]
                )

        seconds, _ = best_of(live, 1)
        rate = N_TRADES / seconds
        print(
            f"CandleAggregator, 3 timeframes, batches of {batch:>7,}: {seconds:6.3f} s  "
            f"{rate / 1e6:6.1f} M trades/s  ({rate / TARGET:4.1f}x the target)"
        )


if __name__ == "__main__":
    main()
