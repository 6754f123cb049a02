"""Message bus: Redis pub/sub when ``CANDELA_REDIS_URL`` is set, an in-process bus otherwise.

Redis notifies, the database remembers (DESIGN.md §5): every message is published **after** the
commit of the data it announces, and a subscriber that missed messages catches up from the
database. Payloads are JSON objects.

Channels
--------
``market:{exchange}:{symbol}:{timeframe}``  a closed bar
``signals:{bot_id}``                        a decision
``trades:{bot_id}``                         a virtual fill
``status:{bot_id}``                         lifecycle: started, heartbeat, stopped, crashed, restarted
``system:events``                           process-wide notices
"""

from __future__ import annotations

import json
import os
from typing import Any

SYSTEM_EVENTS = "system:events"


def market_channel(exchange: str, symbol: str, timeframe: str) -> str:
    """Channel announcing closed bars of one market, e.g. ``market:binance:BTC/USDT:1m``."""
    return f"market:{exchange}:{symbol}:{timeframe}"


def signals_channel(bot_id: str) -> str:
    """Channel carrying every decision of ``bot_id``."""
    return f"signals:{bot_id}"


def trades_channel(bot_id: str) -> str:
    """Channel carrying every virtual fill of ``bot_id``."""
    return f"trades:{bot_id}"


def status_channel(bot_id: str) -> str:
    """Channel carrying lifecycle events and heartbeats of ``bot_id``."""
    return f"status:{bot_id}"


def redis_url(url: str | None = None) -> str | None:
    """Return ``url``, else ``CANDELA_REDIS_URL``, else ``None`` (use the in-process bus)."""
    return url or os.environ.get("CANDELA_REDIS_URL") or None


def encode(payload: dict[str, Any]) -> str:
    """Encode a payload as compact JSON (NaN is written as ``null``)."""
    return json.dumps(_nan_to_none(payload), separators=(",", ":"), sort_keys=True)


def decode(message: str | bytes) -> dict[str, Any]:
    """Decode a JSON payload published by :func:`encode`."""
    return json.loads(message)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value
