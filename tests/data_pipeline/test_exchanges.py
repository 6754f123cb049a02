"""Exchange construction: production settings, loopback endpoints, strict response handling."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from data_pipeline.exchanges import Endpoints, create_exchange, page_limit


def test_production_settings_without_endpoints():
    async def main():
        exchange = create_exchange("binance")
        try:
            assert exchange.enableRateLimit is True
            assert exchange.rateLimit == 50  # Binance's own pace is kept unless asked otherwise
            assert exchange.options["fetchMarkets"]["types"] == ["spot"]
            assert (
                exchange.options["fetchCurrencies"] is False
                and exchange.options["fetchMargins"] is False
            )
            assert exchange.urls["api"]["public"].startswith("https://api.binance.com")
        finally:
            await exchange.close()

    asyncio.run(main())


def test_every_rest_and_ws_url_points_at_the_loopback(mock):
    async def main():
        exchange = create_exchange(
            "binance",
            streaming=True,
            rate_limit_ms=1,
            endpoints=Endpoints(mock.http_url, mock.ws_url),
        )
        try:
            for key, url in exchange.urls["api"].items():
                if isinstance(url, str):
                    assert url.startswith(mock.http_url), key
            assert exchange.urls["api"]["ws"]["spot"] == mock.ws_url + "/ws"
            await exchange.load_markets()
            assert "BTC/USDT" in exchange.markets and "BTC/USDT:USDT" not in exchange.markets
        finally:
            await exchange.close()

    asyncio.run(main())
    assert mock.paths() == ["/api/v3/exchangeInfo"]  # spot only: one request, nothing else touched


def test_okx_loads_spot_instruments_only(mock):
    async def main():
        exchange = create_exchange("okx", rate_limit_ms=1, endpoints=Endpoints(mock.http_url))
        try:
            await exchange.load_markets()
            return sorted(exchange.markets)
        finally:
            await exchange.close()

    assert asyncio.run(main()) == ["BTC/USDT"]
    assert mock.requests == [("/api/v5/public/instruments", {"instType": "SPOT"})]


@pytest.mark.parametrize(
    "fault,error",
    [
        ("malformed_json", ccxt.BadResponse),
        ("html_body", ccxt.BadResponse),
        ("empty_body", ccxt.BadResponse),
        ("wrong_shape", ccxt.BadResponse),
        ("http_429", ccxt.DDoSProtection),
        ("http_418", ccxt.DDoSProtection),
        ("http_500", ccxt.ExchangeNotAvailable),
        ("http_504", ccxt.RequestTimeout),
        ("slow", ccxt.RequestTimeout),
    ],
)
def test_malformed_or_failed_answers_raise_instead_of_returning_garbage(mock, fault, error):
    """Stock ccxt returns rows like [[2, None, ...]] for a 200 with a broken body (guide §3)."""

    async def main():
        exchange = create_exchange(
            "binance", rate_limit_ms=1, timeout_ms=1000, endpoints=Endpoints(mock.http_url)
        )
        try:
            await exchange.load_markets()
            mock.inject("/klines", fault)
            await exchange.fetch_ohlcv("BTC/USDT", "1m", since=1_529_297_280_000, limit=5)
        finally:
            await exchange.close()

    with pytest.raises(error):
        asyncio.run(main())


def test_every_error_the_retry_policy_retries_is_operation_failed():
    for error in (
        ccxt.BadResponse,
        ccxt.DDoSProtection,
        ccxt.RateLimitExceeded,
        ccxt.RequestTimeout,
        ccxt.ExchangeNotAvailable,
        ccxt.NetworkError,
    ):
        assert issubclass(error, ccxt.OperationFailed)
    assert not issubclass(ccxt.BadSymbol, ccxt.OperationFailed)


def test_unknown_exchange_is_a_clear_error():
    with pytest.raises(ValueError, match="ccxt has no exchange 'binanse'"):
        create_exchange("binanse")
    assert page_limit("okx") == 100 and page_limit("binance") == 1000
