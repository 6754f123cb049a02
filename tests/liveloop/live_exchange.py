"""The loopback exchange, live: recorded trades happen now, on the exchange's own clock.

:class:`LiveExchange` is the pipeline tests' loopback exchange (Binance's REST and WebSocket
protocols, :mod:`mock_exchange`) with a clock that runs: each recorded trade (real Binance
trades, shipped in ``tests/fixtures/market``) is moved by a whole number of minutes so that the
stream starts just after the test begins, and it *happens* when the exchange's clock reaches
its time. The clock runs ``speed`` times faster than the wall clock from :meth:`start_clock`
on. A trade that has happened is pushed at once to every WebSocket client subscribed to its
``<symbol>@aggTrade`` stream, and served by REST (``aggTrades``, ``trades``); one that has not
is on neither. A client that subscribes gets the trades that happen from then on (no backlog),
as on the real exchange; :meth:`drop_websockets` closes every connection (the client
reconnects and must fetch what it missed over REST).

Moving trades by whole minutes keeps each trade's place in its minute, so the candles built
from the moved trades are the recorded market's candles, moved.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import defaultdict

from aiohttp import WSMsgType, web
from mock_exchange import MockExchange, agg_trade_event

MINUTE_MS = 60_000


def moved(trades: list[dict], shift_ms: int) -> list[dict]:
    """``trades`` with ``shift_ms`` (a whole number of minutes) added to their times."""
    if shift_ms % MINUTE_MS:
        raise ValueError("move trades by whole minutes only")
    return [dict(trade, ts=trade["ts"] + shift_ms) for trade in trades]


class LiveExchange(MockExchange):
    """See the module docstring. ``start_ms`` is the exchange clock's reading at
    :meth:`start_clock`; until then the clock stands still there."""

    def __init__(self, start_ms: int, speed: float) -> None:
        super().__init__()
        self.start_ms = start_ms
        self.speed = speed
        self._started_at: float | None = None
        self._times: dict[str, list[int]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self.pushed: dict[str, int] = defaultdict(int)

    # ------------------------------------------------------------------ the clock

    @property
    def now_ms(self) -> int:
        if self._started_at is None:
            return self.start_ms
        return int(self.start_ms + (time.monotonic() - self._started_at) * 1000 * self.speed)

    @now_ms.setter
    def now_ms(self, value) -> None:  # the base class's reset() sets it; the clock is ours
        pass

    def start_clock(self) -> None:
        """Let the exchange's clock run (trades start to happen)."""
        self._started_at = time.monotonic()

    def add_trades(self, symbol_id: str, trades: list[dict], base: str, quote: str) -> None:
        super().add_trades(symbol_id, trades, base, quote)
        self._times[symbol_id] = [trade["ts"] for trade in self.trades[symbol_id]]

    def visible_trades(self, symbol_id: str) -> list[dict]:
        trades = self.trades.get(symbol_id, [])
        return trades[: bisect.bisect_right(self._times.get(symbol_id, []), self.now_ms)]

    # ------------------------------------------------------------------ WebSocket

    def drop_websockets(self) -> int:
        """Close every WebSocket connection (code 1001, going away); return how many."""
        sockets = list(self._sockets)

        async def close_all():
            for ws in sockets:
                await ws.close(code=1001, message=b"going away")

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
        return len(sockets)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        pushers = []
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                subscribe = message.json()
                self.ws_subscriptions.append(subscribe)
                await ws.send_json({"result": None, "id": subscribe.get("id")})
                for stream in subscribe.get("params", []):
                    symbol_id = stream.split("@")[0].upper()
                    with self._lock:
                        self.ws_connections[symbol_id] += 1
                    pushers.append(asyncio.ensure_future(self._push(ws, symbol_id)))
        finally:
            self._sockets.discard(ws)
            for pusher in pushers:
                pusher.cancel()
        return ws

    async def _push(self, ws: web.WebSocketResponse, symbol_id: str) -> None:
        """Send each trade of ``symbol_id`` when it happens, from the next one on."""
        trades, times = self.trades.get(symbol_id, []), self._times.get(symbol_id, [])
        index = bisect.bisect_right(times, self.now_ms)
        while index < len(trades) and not ws.closed:
            due = bisect.bisect_right(times, self.now_ms)
            if due == index:
                wait = (
                    0.05
                    if self._started_at is None
                    else (times[index] - self.now_ms) / 1000 / self.speed
                )
                await asyncio.sleep(min(max(wait, 0.001), 0.05))
                continue
            try:
                for trade in trades[index:due]:
                    await ws.send_json(agg_trade_event(symbol_id, trade))
            except (ConnectionError, RuntimeError):
                return
            self.pushed[symbol_id] += due - index
            index = due
