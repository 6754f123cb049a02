"""Retry policy: which errors are retried, how long it waits, and the final message."""

from __future__ import annotations

import asyncio

import ccxt
import pytest

from data_pipeline.retry import FetchError, RetryPolicy, call_with_retry


def run(errors, policy, exchange=None):
    """Call a function failing with ``errors`` in turn, then returning "ok"; record the waits."""
    calls, waits = [], []

    async def flaky():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    async def sleep(seconds):
        waits.append(seconds)

    async def main():
        return await call_with_retry(
            flaky,
            policy=policy,
            describe="binance BTC/USDT 1m window X .. Y",
            exchange=exchange,
            sleep=sleep,
        )

    return asyncio.run(main()), len(calls), waits


def test_retryable_errors_back_off_exponentially_with_bounded_jitter():
    policy = RetryPolicy(
        attempts=5, base_delay=1.0, max_delay=100.0, throttle_factor=4.0, jitter=0.5
    )
    errors = [ccxt.RequestTimeout("t"), ccxt.ExchangeNotAvailable("n"), ccxt.BadResponse("b")]
    result, calls, waits = run(errors, policy)
    assert result == "ok" and calls == 4
    for wait, base in zip(waits, (1.0, 2.0, 4.0)):
        assert base <= wait <= base * 1.5


def test_throttling_waits_longer_and_honours_retry_after():
    class Exchange:
        last_response_headers = {"Retry-After": "30"}

    policy = RetryPolicy(
        attempts=3, base_delay=1.0, max_delay=60.0, throttle_factor=4.0, jitter=0.0
    )
    _, _, waits = run(
        [ccxt.DDoSProtection("429"), ccxt.RateLimitExceeded("-1003")], policy, Exchange()
    )
    assert waits == [30.0, 30.0]  # max(4 * base * 2**n, Retry-After)
    _, _, waits = run([ccxt.DDoSProtection("429")], RetryPolicy(base_delay=1.0, jitter=0.0))
    assert waits == [4.0]


def test_waits_are_capped():
    policy = RetryPolicy(attempts=8, base_delay=1.0, max_delay=5.0, jitter=0.0)
    _, _, waits = run([ccxt.NetworkError("x")] * 7, policy)
    assert max(waits) == 5.0


def test_gives_up_after_the_bounded_attempts_naming_the_window():
    policy = RetryPolicy(attempts=3, base_delay=0.0, jitter=0.0)
    with pytest.raises(
        FetchError,
        match=r"^binance BTC/USDT 1m window X \.\. Y: gave up after 3 attempts; "
        r"last error RequestTimeout: slow",
    ):
        run([ccxt.RequestTimeout("slow")] * 3, policy)


def test_mistakes_are_not_retried():
    with pytest.raises(FetchError, match="BadSymbol is not retryable"):
        run([ccxt.BadSymbol("no such market")], RetryPolicy(attempts=5, base_delay=0.0))
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        RetryPolicy(attempts=0)
