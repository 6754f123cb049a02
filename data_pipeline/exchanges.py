"""ccxt exchange instances with production settings and strict response handling.

:func:`create_exchange` builds one ``ccxt.async_support`` (REST) or ``ccxt.pro`` (REST +
WebSocket) instance for an exchange id with the settings a data collector wants:

* ``enableRateLimit`` on, with the exchange's own ``rateLimit`` unless told otherwise;
* spot markets only (``options.fetchMarkets.types = ['spot']``: one request in ``load_markets``
  instead of one per market type), no ``fetchCurrencies``/``fetchMargins`` calls;
* **strict JSON**: stock ccxt turns a ``200`` with an HTML, empty or malformed body into garbage
  rows without raising (its async client parses whatever JSON it can and returns the rest as
  data). The subclass made here raises
  :class:`ccxt.BadResponse` instead, and raises on unmapped ``4xx/5xx`` statuses that the async
  client would otherwise return as data.

Tests point an instance at a loopback mock by passing :class:`Endpoints` (base URLs); every
``urls['api']`` entry keeps its path and gets the mock's scheme and host, so a request nobody
expected shows up as a 404 at the mock, never as a real request. ccxt itself is not patched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro

PAGE_LIMITS = {"binance": 1000, "okx": 100}
"""Candles per ``fetch_ohlcv`` page. OKX documents a cap of 100 for ``history-candles``; asking
for more makes the server cut the window at the old end, which a forward loop would skip."""

DEFAULT_PAGE_LIMIT = 500

_JSON_SHAPES: dict[str, dict[str, str]] = {
    # path suffix -> expected top-level JSON shape ("list", or "data-list": {"data": [...]})
    "binance": {
        "/klines": "list",
        "/aggTrades": "list",
        "/trades": "list",
        "/exchangeInfo": "symbols",
    },
    "okx": {
        "/market/candles": "data-list",
        "/market/history-candles": "data-list",
        "/market/trades": "data-list",
        "/market/history-trades": "data-list",
        "/public/instruments": "data-list",
        "/public/time": "data-list",
    },
}


@dataclass(frozen=True)
class Endpoints:
    """Base URLs replacing an exchange's hosts, e.g. a loopback mock in tests.

    Attributes
    ----------
    rest : str
        Scheme and host (and optional path prefix) for every REST API, e.g.
        ``"http://127.0.0.1:8765"``. Each ccxt URL keeps its own path after it.
    ws : str, optional
        Base for WebSocket URLs, e.g. ``"ws://127.0.0.1:8765/stream"``; each ccxt.pro WS URL
        keeps its path after it (Binance's spot URL becomes ``<ws>/ws``). Binance needs
        ``/stream`` somewhere in the final URL to file trades as spot.
    """

    rest: str
    ws: str | None = None


def page_limit(exchange_id: str) -> int:
    """Number of candles to ask for per ``fetch_ohlcv`` page on ``exchange_id``."""
    return PAGE_LIMITS.get(exchange_id, DEFAULT_PAGE_LIMIT)


def _strict_mixin(exchange_id: str) -> type:
    shapes = _JSON_SHAPES.get(exchange_id, {})

    class StrictJSON:
        """Raise instead of returning garbage for malformed successful responses."""

        def handle_errors(
            self, code, reason, url, method, headers, body, response, request_headers, request_body
        ):
            arguments = (
                code,
                reason,
                url,
                method,
                headers,
                body,
                response,
                request_headers,
                request_body,
            )
            if not method:  # ccxt.pro reuses handle_errors for WebSocket messages
                return super().handle_errors(*arguments)  # type: ignore[misc]
            # an error envelope ({"code": ...}) or an error status: the exchange's own mapping first
            envelope = isinstance(response, dict) and "code" in response
            failed = code is not None and code >= 400
            if envelope or failed:
                super().handle_errors(*arguments)  # type: ignore[misc]
            if failed:
                self.handle_http_status_code(code, reason or "", url, method, body or "")  # type: ignore[attr-defined]
                raise ccxt.ExchangeError(f"{self.id} {method} {url} answered HTTP {code}")  # type: ignore[attr-defined]
            if response is None:
                snippet = (body or "")[:80]
                raise ccxt.BadResponse(f"{self.id} {method} {url}: body is not JSON: {snippet!r}")  # type: ignore[attr-defined]
            path = urlsplit(url).path
            for suffix, shape in shapes.items():
                if path.endswith(suffix) and not _has_shape(response, shape):
                    raise ccxt.BadResponse(
                        f"{self.id} {method} {url}: unexpected JSON shape "  # type: ignore[attr-defined]
                        f"(wanted {shape}): {(body or '')[:80]!r}"
                    )
            if not envelope:
                return super().handle_errors(*arguments)  # type: ignore[misc]
            return None

    return StrictJSON


def _has_shape(response: Any, shape: str) -> bool:
    if shape == "list":
        return isinstance(response, list)
    if shape == "symbols":
        return isinstance(response, dict) and isinstance(response.get("symbols"), list)
    if shape == "data-list":
        return isinstance(response, dict) and isinstance(response.get("data"), list)
    return True


def exchange_class(exchange_id: str, *, streaming: bool = False) -> type:
    """Return the strict ccxt class for ``exchange_id`` (``ccxt.pro`` when ``streaming``).

    Raises
    ------
    ValueError
        If ccxt does not know the exchange (or has no WebSocket support for it when
        ``streaming``); the message says which ids exist.
    """
    module = ccxt.pro if streaming else ccxt.async_support
    base = getattr(module, exchange_id, None)
    if not isinstance(base, type):
        known = "ccxt.pro.exchanges" if streaming else "ccxt.exchanges"
        raise ValueError(
            f"ccxt {'pro ' if streaming else ''}has no exchange {exchange_id!r}: pick one of {known} "
            "(e.g. 'binance', 'okx')"
        )
    return type(f"Strict{base.__name__}", (_strict_mixin(exchange_id), base), {})


def create_exchange(
    exchange_id: str,
    *,
    streaming: bool = False,
    endpoints: Endpoints | None = None,
    rate_limit_ms: float | None = None,
    timeout_ms: int = 10_000,
    options: dict[str, Any] | None = None,
):
    """Create a strict, rate-limited, spot-only async ccxt exchange instance.

    Parameters
    ----------
    exchange_id : str
        A ccxt exchange id, e.g. ``"binance"`` or ``"okx"``.
    streaming : bool
        ``True`` for a ``ccxt.pro`` instance (``watch_*`` methods); REST works on both.
    endpoints : Endpoints, optional
        Replace the exchange's hosts (tests: a loopback mock). ``None`` keeps the real hosts.
    rate_limit_ms : float, optional
        Milliseconds per request-cost unit; ``None`` keeps the exchange's own value. The limiter
        stays enabled either way (tests use ``1`` so the throttle path still runs).
    timeout_ms : int
        Per-request timeout; a slower answer raises :class:`ccxt.RequestTimeout`.
    options : dict, optional
        Extra ccxt ``options``, merged over the defaults.

    Returns
    -------
    ccxt.async_support.Exchange
        The caller must ``await exchange.close()``.
    """
    cls = exchange_class(exchange_id, streaming=streaming)
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_ms)}
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange = cls(config)
    fetch_markets = exchange.options.get("fetchMarkets")
    exchange.options["fetchMarkets"] = {
        **(fetch_markets if isinstance(fetch_markets, dict) else {}),
        "types": ["spot"],
    }
    exchange.options.update(
        {
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
            "defaultType": "spot",
        }
    )
    if options:
        exchange.options.update(options)
    if endpoints is not None:
        _point_at(exchange, endpoints)
    return exchange


def _point_at(exchange, endpoints: Endpoints) -> None:
    api = exchange.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            api[key] = endpoints.rest.rstrip("/") + urlsplit(url).path
    if endpoints.ws is not None:
        _rewrite_ws(api, endpoints.ws.rstrip("/"))
    spot_exceptions = (
        exchange.exceptions.get("spot") if isinstance(exchange.exceptions, dict) else None
    )
    if isinstance(spot_exceptions, dict) and isinstance(spot_exceptions.get("exact"), dict):
        # production error codes are picked by host name; keep them on the mock's host
        exchange.exceptions["exact"].update(spot_exceptions["exact"])


def _rewrite_ws(node: dict, base: str) -> None:
    for key, url in list(node.items()):
        if isinstance(url, dict):
            _rewrite_ws(url, base)
        elif isinstance(url, str) and url.startswith(("ws://", "wss://")):
            node[key] = base + urlsplit(url).path
