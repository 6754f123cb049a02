"""Bounded retries with exponential backoff and jitter for exchange requests.

Retried: :class:`ccxt.OperationFailed`, which covers ``NetworkError`` (``RequestTimeout``,
``ExchangeNotAvailable``, ``DDoSProtection``, ``RateLimitExceeded``) and ``BadResponse``
(malformed bodies, see :mod:`data_pipeline.exchanges`). ``DDoSProtection`` (HTTP 429/418 on
Binance) and ``RateLimitExceeded`` wait :attr:`RetryPolicy.throttle_factor` times longer, and at
least as long as a ``Retry-After`` header asks. Anything else (``BadSymbol``, ``BadRequest``, ...)
is a mistake that waiting cannot fix and is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import ccxt

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)


class FetchError(RuntimeError):
    """A request failed for good; the message names exchange, market and time window.

    Attributes
    ----------
    unreachable : bool
        The last failure was on the network, below HTTP: connection refused, host name not
        found, no answer in time (the message says which).
    """

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def network_cause(error: BaseException, timeout_ms: float | None = None) -> str | None:
    """Name the network failure under a ccxt ``NetworkError``, or ``None`` if there was none.

    ccxt wraps the transport's exception (``raise ExchangeNotAvailable(url) from error``) and
    says only which URL failed; the wrapped exception says why. Returns ``"connection
    refused"``, ``"host name not found"``, ``"no answer within 10 s"`` (``timeout_ms`` given),
    ``"no answer in time"``, or the text of another ``OSError`` (``"network unreachable"`` ...).
    """
    if not isinstance(error, ccxt.NetworkError):
        return None
    if isinstance(error, ccxt.RequestTimeout):
        return f"no answer within {timeout_ms / 1000:g} s" if timeout_ms else "no answer in time"
    chain: list[BaseException] = []
    cause = error.__cause__ or error.__context__
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for kind, text in (
        (socket.gaierror, "host name not found"),
        (ConnectionRefusedError, "connection refused"),
        (TimeoutError, "no answer in time"),
    ):
        if any(isinstance(cause, kind) for cause in chain):
            return text
    os_errors = [cause for cause in chain if isinstance(cause, OSError) and cause.strerror]
    return os_errors[-1].strerror.lower() if os_errors else None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failing request.

    Attributes
    ----------
    attempts : int
        Total tries, the first included (``attempts - 1`` retries).
    base_delay : float
        Seconds before the first retry; doubles on every further retry.
    max_delay : float
        Cap on one wait, in seconds.
    throttle_factor : float
        Multiplier for waits after ``DDoSProtection``/``RateLimitExceeded``.
    jitter : float
        Each wait is multiplied by a uniform factor in ``[1, 1 + jitter]`` so concurrent
        markets do not retry in lockstep.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    throttle_factor: float = 4.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.jitter < 0:
            raise ValueError("delays and jitter must be non-negative")

    def delay(self, retry: int, error: BaseException, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``error``."""
        wait = self.base_delay * (2 ** (retry - 1))
        if isinstance(error, THROTTLED):
            wait *= self.throttle_factor
            if retry_after is not None:
                wait = max(wait, retry_after)
        wait = min(wait, self.max_delay)
        return wait * (1.0 + random.random() * self.jitter)


def _retry_after(exchange) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


async def call_with_retry(
    make_call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    describe: str,
    exchange=None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``make_call()``, retrying retryable ccxt errors as ``policy`` says.

    Parameters
    ----------
    make_call : callable
        Returns a fresh awaitable on every call.
    policy : RetryPolicy
        Attempts and waits.
    describe : str
        What is being fetched, e.g. ``"binance BTC/USDT 1m 2024-01-01T00:00Z .. 2024-01-02T00:00Z"``;
        it starts every log line and the final error message.
    exchange : ccxt exchange, optional
        Read for a ``Retry-After`` header after a throttling error.

    Raises
    ------
    FetchError
        After ``policy.attempts`` failures, or at once for an error that is not retryable.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return await make_call()
        except ccxt.OperationFailed as error:
            if attempt == policy.attempts:
                cause = network_cause(error, getattr(exchange, "timeout", None))
                raise FetchError(
                    f"{describe}: gave up after {attempt} attempt{'s' if attempt > 1 else ''}; last error "
                    f"{type(error).__name__}: {_short(error)}" + (f" ({cause})" if cause else ""),
                    unreachable=cause is not None,
                ) from error
            wait = policy.delay(
                attempt, error, _retry_after(exchange) if exchange is not None else None
            )
            log.warning(
                "%s: %s (%s), retry %d/%d in %.2f s",
                describe,
                type(error).__name__,
                _short(error),
                attempt,
                policy.attempts - 1,
                wait,
            )
            await sleep(wait)
        except ccxt.BaseError as error:
            raise FetchError(
                f"{describe}: {type(error).__name__} is not retryable: {_short(error)}"
            ) from error
    raise AssertionError("unreachable")


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
