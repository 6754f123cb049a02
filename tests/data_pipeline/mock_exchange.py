"""A loopback exchange for the pipeline tests: Binance spot and OKX v5 wire protocols.

An aiohttp server on ``127.0.0.1`` and an ephemeral port, run in a daemon thread so both async
and sync clients can use it. It speaks the protocols **the real ccxt library** talks and serves real market data loaded from
the repository's real market-data files (``market_files``): candles and trades as recorded,
nothing synthetic unless a test adds it.

Binance spot REST (``/api/v3/...``)
    ``exchangeInfo`` (the real 2021 response, filtered to the served symbols), ``klines``
    (``startTime``/``endTime`` inclusive on open time; first ``limit`` rows from ``startTime``,
    else the latest ``limit``; default 500, max 1000), ``aggTrades`` (``fromId``; or an
    inclusive ``startTime``/``endTime`` window of at most 1 h, ``-1127`` otherwise), ``trades``,
    ``time``.
Binance WebSocket (``/stream/ws/<n>``)
    ``SUBSCRIBE`` to ``<symbol>@aggTrade``/``@trade``; the server answers ``{"result":null}`` and
    pushes the events planned for that connection (:attr:`MockExchange.ws_plan`), then drops the
    connection if more plans follow (a *dropped WebSocket connection*); the last connection
    keeps re-sending its last event (a *duplicate trade*) every ``ws_repeat_last`` seconds.
OKX v5 REST (``/api/v5/...``)
    ``public/instruments``, ``public/time``, ``market/candles`` (max 300) and
    ``market/history-candles`` (max 100), newest first, ``before``/``after`` exclusive.

Time: the server has its own clock :attr:`MockExchange.now_ms` (default: after the last served
candle). Candles whose open time is after it are not served; the one still open at ``now_ms``
is served as the exchange would (its values are the recorded final values).

Faults (:meth:`MockExchange.inject`): any HTTP status with a JSON or text body (429, 418, 5xx),
slow answers (``delay`` beyond the client's timeout), malformed JSON, HTML, empty bodies;
:meth:`MockExchange.corrupt_candle` serves a candle that violates the OHLC rules.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import gzip
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

TIMEFRAME_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
OKX_BARS = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1H": "1h",
    "2H": "2h",
    "4H": "4h",
    "6Hutc": "6h",
    "12Hutc": "12h",
    "1Dutc": "1d",
}


def read_candle_file(path: Path) -> list[list]:
    """Rows ``[open_ms, "o", "h", "l", "c", "v"]`` (decimal text as recorded) of a market-data file."""
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [[int(row[0]), *row[1:6]] for row in reader]


def read_trade_file(path: Path) -> list[dict]:
    """Trades ``{id, ts, price, amount, maker}`` of a market-data trade file (``maker``: buyer is maker)."""
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        return [
            {
                "id": int(row["trade_id"]),
                "ts": int(row["ts_ms"]),
                "price": row["price"],
                "amount": row["amount"],
                "maker": row["side"] == "sell",
            }
            for row in reader
        ]


@dataclass
class Fault:
    """One answer replacing the normal one for a matching request.

    Attributes
    ----------
    status : int
        HTTP status to answer with.
    body : str, optional
        Raw body; ``None`` answers the normal body (useful with ``delay`` only).
    content_type : str
        Content type of ``body``.
    delay : float
        Seconds to wait before answering (beyond the client's timeout: a timeout).
    headers : dict
        Extra response headers, e.g. ``{"Retry-After": "1"}``.
    """

    status: int = 200
    body: str | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


FAULTS = {
    "http_429": Fault(
        429, '{"code":-1003,"msg":"Too many requests."}', headers={"Retry-After": "0"}
    ),
    "okx_429": Fault(429, '{"msg":"Too Many Requests","code":"50011","data":[]}'),
    "http_418": Fault(418, '{"code":-1003,"msg":"Way too many requests; IP banned."}'),
    "http_500": Fault(500, "Internal Server Error", "text/plain"),
    "http_502": Fault(502, "<html><body>502 Bad Gateway</body></html>", "text/html"),
    "http_503": Fault(503, "Service Unavailable", "text/plain"),
    "http_504": Fault(504, "Gateway Timeout", "text/plain"),
    "malformed_json": Fault(200, '[[1704067200000,"42000.1","42010.0"'),
    "html_body": Fault(200, "<html><body>maintenance</body></html>", "text/html"),
    "empty_body": Fault(200, "", "application/json"),
    "wrong_shape": Fault(200, "{}"),
    "slow": Fault(200, None, delay=1.5),
}
"""Named faults the tests inject (``slow`` assumes a client timeout below 1.5 s)."""


class MockExchange:
    """The loopback exchange; use as a context manager (``start()`` / ``stop()``)."""

    def __init__(self, now_ms: int | None = None):
        self.binance_candles: dict[tuple[str, str], list[list]] = {}
        self.okx_candles: dict[tuple[str, str], list[list]] = {}
        self.trades: dict[str, list[dict]] = {}
        self.binance_markets: dict[str, tuple[str, str]] = {}
        self.okx_markets: dict[str, tuple[str, str]] = {}
        self._now_ms = now_ms
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.corrupted: dict[tuple[str, str, str, int], int | None] = {}
        self.ws_plan: dict[str, list[list[dict]]] = {}
        self.ws_connections: dict[str, int] = defaultdict(int)
        self.ws_repeat_last: float | None = 0.05
        self.requests: list[tuple[str, dict]] = []
        self.request_times: list[float] = []
        self.ws_subscriptions: list[dict] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ data and control

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    @property
    def now_ms(self) -> int:
        if self._now_ms is not None:
            return self._now_ms
        ends = [
            rows[-1][0] + TIMEFRAME_MS[tf]
            for (_, tf), rows in list(self.binance_candles.items()) + list(self.okx_candles.items())
            if rows
        ]
        ends += [trades[-1]["ts"] + 1 for trades in self.trades.values() if trades]
        return max(ends, default=0)

    @now_ms.setter
    def now_ms(self, value: int | None) -> None:
        self._now_ms = value

    def add_binance_candles(
        self, symbol_id: str, timeframe: str, rows: list[list], base: str, quote: str
    ) -> None:
        self.binance_candles[(symbol_id, timeframe)] = sorted(rows, key=lambda row: row[0])
        self.binance_markets[symbol_id] = (base, quote)

    def add_okx_candles(self, inst_id: str, timeframe: str, rows: list[list]) -> None:
        self.okx_candles[(inst_id, timeframe)] = sorted(rows, key=lambda row: row[0])
        base, quote = inst_id.split("-")
        self.okx_markets[inst_id] = (base, quote)

    def add_trades(self, symbol_id: str, trades: list[dict], base: str, quote: str) -> None:
        self.trades[symbol_id] = sorted(trades, key=lambda trade: trade["id"])
        self.binance_markets[symbol_id] = (base, quote)

    def inject(self, path_suffix: str, fault: Fault | str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path ends with ``path_suffix`` with ``fault``."""
        if isinstance(fault, str):
            fault = FAULTS[fault]
        with self._lock:
            self.faults[path_suffix].extend([fault] * times)

    def corrupt_candle(
        self, exchange: str, symbol_id: str, timeframe: str, open_ms: int, times: int | None = None
    ) -> None:
        """Serve the candle opening at ``open_ms`` with ``high`` below ``low`` (``times``: None = always)."""
        self.corrupted[(exchange, symbol_id, timeframe, open_ms)] = times

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.corrupted.clear()
            self.requests.clear()
            self.request_times.clear()
            self.ws_plan.clear()
            self.ws_connections.clear()
            self.ws_subscriptions.clear()

    def visible_trades(self, symbol_id: str) -> list[dict]:
        """The trades of ``symbol_id`` that have happened (all of them here; a streaming
        exchange serves only those up to its clock)."""
        return self.trades.get(symbol_id, [])

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    # ------------------------------------------------------------------ server lifecycle

    def __enter__(self) -> MockExchange:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_site())
            started.set()
            self._loop.run_forever()
            self._loop.close()  # an unclosed loop is a ResourceWarning (an error in the tests)

        self._thread = threading.Thread(target=serve, name="mock-exchange", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("mock exchange did not start within 10 s")

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/stream/{tail:.*}", self._ws_handler)
        app.router.add_route("GET", "/{tail:.*}", self._http_handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            future.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    # ------------------------------------------------------------------ HTTP

    async def _http_handler(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = dict(request.query)
        with self._lock:
            self.requests.append((path, query))
            self.request_times.append(time.monotonic())
            fault = None
            for suffix, queue in self.faults.items():
                if queue and path.endswith(suffix):
                    fault = queue.popleft()
                    break
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.body is not None:
                return web.Response(
                    status=fault.status,
                    text=fault.body,
                    headers=fault.headers,
                    content_type=fault.content_type,
                )
        routes = {
            "/api/v3/exchangeInfo": self._binance_exchange_info,
            "/api/v3/klines": self._binance_klines,
            "/api/v3/aggTrades": self._binance_agg_trades,
            "/api/v3/trades": self._binance_trades,
            "/api/v3/time": lambda q: (200, {"serverTime": self.now_ms}),
            "/api/v5/public/instruments": self._okx_instruments,
            "/api/v5/public/time": lambda q: (200, _okx({"ts": str(self.now_ms)})),
            "/api/v5/market/candles": lambda q: self._okx_candles(q, 300),
            "/api/v5/market/history-candles": lambda q: self._okx_candles(q, 100),
        }
        handler = routes.get(path)
        if handler is None:
            return web.json_response({"code": -1, "msg": f"mock: no route {path}"}, status=404)
        status, payload = handler(query)
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/json"
        )

    # Binance ------------------------------------------------------------

    def _binance_exchange_info(self, query) -> tuple[int, dict]:
        symbols = []
        for symbol_id, (base, quote) in sorted(self.binance_markets.items()):
            template = dict(_real_exchange_info_symbol())
            template.update(
                {"symbol": symbol_id, "baseAsset": base, "quoteAsset": quote, "status": "TRADING"}
            )
            symbols.append(template)
        return 200, {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _binance_klines(self, query) -> tuple[int, object]:
        symbol_id, interval = query.get("symbol"), query.get("interval")
        if symbol_id not in self.binance_markets:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rows = self.binance_candles.get((symbol_id, interval))
        if rows is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = int(query.get("limit", 500))
        if limit > 1000 or limit < 1:
            return 400, {"code": -1130, "msg": "Invalid data sent for a parameter."}
        tf = TIMEFRAME_MS[interval]
        now = self.now_ms
        start = int(query["startTime"]) if "startTime" in query else None
        end = int(query["endTime"]) if "endTime" in query else None
        low = 0 if start is None else bisect.bisect_left(rows, start, key=_open_time)
        high = bisect.bisect_right(rows, now if end is None else min(end, now), key=_open_time)
        selected = (
            rows[low : min(high, low + limit)]
            if start is not None
            else rows[max(low, high - limit) : high]
        )
        out = []
        for row in selected:
            o, h, lo, c, v = row[1:6]
            if self._take_corruption("binance", symbol_id, interval, row[0]):
                h, lo = lo, h  # high below low: violates the OHLC rules
            out.append([row[0], o, h, lo, c, v, row[0] + tf - 1, "0", 1, "0", "0", "0"])
        return 200, out

    def _take_corruption(self, exchange, symbol_id, timeframe, open_ms) -> bool:
        key = (exchange, symbol_id, timeframe, open_ms)
        with self._lock:
            if key not in self.corrupted:
                return False
            left = self.corrupted[key]
            if left is not None:
                if left <= 1:
                    del self.corrupted[key]
                else:
                    self.corrupted[key] = left - 1
            return True

    def _binance_agg_trades(self, query) -> tuple[int, object]:
        symbol_id = query.get("symbol")
        if symbol_id not in self.binance_markets:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        trades = self.visible_trades(symbol_id)
        limit = min(int(query.get("limit", 500)), 1000)
        has_time = "startTime" in query or "endTime" in query
        if "fromId" in query and has_time:
            return 400, {"code": -1128, "msg": "Combination of optional parameters invalid."}
        if "fromId" in query:
            from_id = int(query["fromId"])
            selected = [t for t in trades if t["id"] >= from_id][:limit]
        elif "startTime" in query:
            start = int(query["startTime"])
            end = int(query.get("endTime", start + 3_600_000))
            if end - start > 3_600_000:
                return 400, {
                    "code": -1127,
                    "msg": "More than 1 hours between startTime and endTime.",
                }
            selected = [t for t in trades if start <= t["ts"] <= end][:limit]
        elif "endTime" in query:
            end = int(query["endTime"])
            selected = [t for t in trades if t["ts"] <= end][-limit:]
        else:
            selected = trades[-limit:]
        return 200, [agg_trade_rest(t) for t in selected]

    def _binance_trades(self, query) -> tuple[int, object]:
        symbol_id = query.get("symbol")
        if symbol_id not in self.binance_markets:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = min(int(query.get("limit", 500)), 1000)
        selected = self.visible_trades(symbol_id)[-limit:]
        return 200, [
            {
                "id": t["id"],
                "price": t["price"],
                "qty": t["amount"],
                "quoteQty": "0",
                "time": t["ts"],
                "isBuyerMaker": t["maker"],
                "isBestMatch": True,
            }
            for t in selected
        ]

    # OKX ----------------------------------------------------------------

    def _okx_instruments(self, query) -> tuple[int, dict]:
        if query.get("instType") != "SPOT":
            return 200, {"code": "51000", "msg": "Parameter instType error", "data": []}
        data = [
            {
                "instType": "SPOT",
                "instId": inst_id,
                "uly": "",
                "instFamily": "",
                "baseCcy": base,
                "quoteCcy": quote,
                "settleCcy": "",
                "ctVal": "",
                "ctMult": "",
                "ctValCcy": "",
                "optType": "",
                "stk": "",
                "listTime": "1548133413000",
                "expTime": "",
                "lever": "10",
                "tickSz": "0.1",
                "lotSz": "0.00000001",
                "minSz": "0.00001",
                "ctType": "",
                "alias": "",
                "state": "live",
                "maxLmtSz": "9999999999",
                "maxMktSz": "1000000",
            }
            for inst_id, (base, quote) in sorted(self.okx_markets.items())
        ]
        return 200, _okx(*data)

    def _okx_candles(self, query, cap: int) -> tuple[int, dict]:
        inst_id = query.get("instId")
        if inst_id not in self.okx_markets:
            return 200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
        timeframe = OKX_BARS.get(query.get("bar", "1m"))
        rows = self.okx_candles.get((inst_id, timeframe))
        if rows is None:
            return 200, {"code": "51000", "msg": "Parameter bar error", "data": []}
        tf = TIMEFRAME_MS[timeframe]
        limit = min(int(query.get("limit", 100)), cap)
        now = self.now_ms
        after = int(query["after"]) if "after" in query else None  # records earlier than `after`
        before = int(query["before"]) if "before" in query else None  # records newer than `before`
        low = 0 if before is None else bisect.bisect_right(rows, before, key=_open_time)
        high = bisect.bisect_right(rows, now, key=_open_time)
        if after is not None:
            high = min(high, bisect.bisect_left(rows, after, key=_open_time))
        newest_first = rows[max(low, high - limit) : high][::-1]
        data = []
        for row in newest_first:
            o, h, lo, c, v = row[1:6]
            if self._take_corruption("okx", inst_id, timeframe, row[0]):
                h, lo = lo, h
            confirm = "1" if row[0] + tf <= now else "0"
            data.append([str(row[0]), o, h, lo, c, v, "0", "0", confirm])
        return 200, _okx(*data)

    # ------------------------------------------------------------------ WebSocket

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            subscribe = json.loads(message.data)
            self.ws_subscriptions.append(subscribe)
            await ws.send_json({"result": None, "id": subscribe.get("id")})
            for stream in subscribe.get("params", []):
                symbol_id = stream.split("@")[0].upper()
                with self._lock:
                    index = self.ws_connections[symbol_id]
                    self.ws_connections[symbol_id] += 1
                    plans = self.ws_plan.get(symbol_id, [])
                events = plans[index] if index < len(plans) else []
                for event in events:
                    await ws.send_json(event)
                    await asyncio.sleep(0)
                if index < len(plans) - 1:  # more connections planned: drop this one
                    await asyncio.sleep(0.05)
                    await ws.close(code=1001, message=b"going away")
                    return ws
                if events and self.ws_repeat_last is not None:
                    asyncio.ensure_future(self._repeat(ws, events[-1]))
        return ws

    async def _repeat(self, ws: web.WebSocketResponse, event: dict) -> None:
        """Re-send the last event (a duplicate trade) until the client goes away.

        ccxt.pro resolves a ``watch_trades`` call only when a message arrives; trades cached
        while no call was pending are handed out with the next message. A live market keeps
        trading; this stands in for that tail.
        """
        while not ws.closed:
            await asyncio.sleep(self.ws_repeat_last)
            try:
                await ws.send_json(event)
            except (ConnectionError, RuntimeError):
                return


def agg_trade_rest(trade: dict) -> dict:
    """A trade as Binance's ``/api/v3/aggTrades`` returns it (one aggregate per recorded trade)."""
    return {
        "a": trade["id"],
        "p": trade["price"],
        "q": trade["amount"],
        "f": trade["id"],
        "l": trade["id"],
        "T": trade["ts"],
        "m": trade["maker"],
        "M": True,
    }


def agg_trade_event(symbol_id: str, trade: dict) -> dict:
    """A trade as Binance's ``<symbol>@aggTrade`` stream pushes it."""
    return {"e": "aggTrade", "E": trade["ts"], "s": symbol_id, **agg_trade_rest(trade)}


def _open_time(row: list) -> int:
    return row[0]


def _okx(*data) -> dict:
    return {"code": "0", "msg": "", "data": list(data)}


_EXCHANGE_INFO_SYMBOL: dict | None = None


def _real_exchange_info_symbol() -> dict:
    """The real ``BTCUSDT`` entry of Binance's 2021 ``exchangeInfo`` (filters, permissions)."""
    global _EXCHANGE_INFO_SYMBOL
    if _EXCHANGE_INFO_SYMBOL is None:
        from market_files import market_file

        path = market_file("exchange_samples/binance_spot_rest_exchangeInfo_2021-10-12.json.gz")
        with gzip.open(path, "rt") as handle:
            info = json.load(handle)
        _EXCHANGE_INFO_SYMBOL = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    return _EXCHANGE_INFO_SYMBOL
