"""Announce newly stored closed bars on ``market:{exchange}:{symbol}:{timeframe}`` (docs/architecture.md §5).

Redis notifies, the database remembers: callers publish **after** the transaction that stored
the bars has committed. A bar's payload is::

    {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "ts": <close ms>,
     "open": .., "high": .., "low": .., "close": .., "volume": ..}

(JSON-encoded with :func:`candela.core.bus.encode` on the wire). A publisher is anything with
``publish(channel, payload)`` — the buses of :mod:`candela.core.bus` (``make_bus()``) qualify too.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import redis

from candela.core.bus import encode, market_channel, redis_url

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Anything with ``publish(channel, payload)``."""

    def publish(self, channel: str, payload: dict) -> None: ...


class RedisPublisher:
    """Publish synchronously through redis-py to the server at ``url`` (errors surface at once)."""

    def __init__(self, url: str):
        self.url = url
        self._client = redis.Redis.from_url(url)

    def publish(self, channel: str, payload: dict) -> None:
        self._client.publish(channel, encode(payload))

    def close(self) -> None:
        self._client.close()


class MemoryPublisher:
    """Keep published ``(channel, payload)`` pairs in :attr:`messages` (a single process, or tests)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def publish(self, channel: str, payload: dict) -> None:
        self.messages.append((channel, payload))


class NullPublisher:
    """Publish nowhere (no ``CANDELA_REDIS_URL``: nobody in another process could listen)."""

    def publish(self, channel: str, payload: dict) -> None:
        log.debug("not published (no Redis configured): %s", channel)


def default_publisher(url: str | None = None) -> Publisher:
    """A :class:`RedisPublisher` when ``url`` or ``CANDELA_REDIS_URL`` is set, else :class:`NullPublisher`."""
    resolved = redis_url(url)
    return RedisPublisher(resolved) if resolved else NullPublisher()


def bar_payload(
    exchange: str,
    symbol: str,
    timeframe: str,
    ts: int,
    o: float,
    h: float,
    low: float,
    c: float,
    v: float,
) -> dict:
    """The JSON object announcing one closed bar (``ts`` = close time, ms UTC)."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "ts": int(ts),
        "open": float(o),
        "high": float(h),
        "low": float(low),
        "close": float(c),
        "volume": float(v),
    }


def publish_bars(
    publisher: Publisher, exchange: str, symbol: str, timeframe: str, ts, o, h, low, c, v
) -> int:
    """Publish every bar of the aligned arrays, oldest first; return how many were published."""
    channel = market_channel(exchange, symbol, timeframe)
    order = np.argsort(np.asarray(ts), kind="stable")
    for i in order:
        publisher.publish(
            channel, bar_payload(exchange, symbol, timeframe, ts[i], o[i], h[i], low[i], c[i], v[i])
        )
    return len(order)
