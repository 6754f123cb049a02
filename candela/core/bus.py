"""Message bus: Redis pub/sub when ``CANDELA_REDIS_URL`` is set, an in-process bus otherwise.

Redis notifies, the database remembers (docs/architecture.md §5): every message is published **after** the
commit of the data it announces, and a subscriber that missed messages catches up from the
database. Payloads are JSON objects.

Channels
--------
``market:{exchange}:{symbol}:{timeframe}``  a closed bar
``signals:{bot_id}``                        a decision
``trades:{bot_id}``                         a virtual fill
``status:{bot_id}``                         lifecycle: started, heartbeat, stopped, crashed, restarted
``system:events``                           process-wide notices

Buses
-----
:func:`make_bus` returns a :class:`RedisBus` when ``CANDELA_REDIS_URL`` is set, else an
:class:`InProcessBus` for a single process. Both offer ``publish(channel, payload)`` (never
blocks), ``publish_many(messages)`` (several messages at once, in order), ``subscribe(channels,
callback)``, ``flush()`` and ``close()``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import redis

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


_STRICT = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode
_LENIENT = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
# built once: json.dumps with options builds a new encoder per call, which costs as much as the
# encoding of a small payload


class Encoded(dict):
    """A payload that carries its own encoding, :attr:`text`, which must be what
    :func:`encode` gives for the dict: a producer of many alike payloads may write it faster
    than the generic encoder (a replay publishes tens of thousands of decisions a second)."""

    __slots__ = ("text",)

    def __init__(self, payload: dict[str, Any], text: str) -> None:
        super().__init__(payload)
        self.text = text


def encode(payload: dict[str, Any]) -> str:
    """Encode a payload as compact JSON (NaN is written as ``null``); an :class:`Encoded`
    payload as its own text."""
    if type(payload) is Encoded:
        return payload.text
    try:  # the common case, without a walk through the payload
        return _STRICT(payload)
    except ValueError:  # a NaN (or an infinity) somewhere
        return _LENIENT(_nan_to_none(payload))


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


# --------------------------------------------------------------------------- buses

Callback = Callable[[str, dict[str, Any]], None]
"""Subscriber callback: ``callback(channel, payload)``; called from a bus thread."""

_log = logging.getLogger(__name__)


class Subscription:
    """Handle returned by :meth:`Bus.subscribe`; :meth:`close` stops the deliveries."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def close(self) -> None:
        """Stop delivering messages to this subscription's callback (idempotent)."""
        close, self._close = self._close, lambda: None
        close()


class InProcessBus:
    """A bus inside one process: :meth:`publish` calls the matching subscribers at once.

    Channel patterns may use ``*`` (``fnmatch`` rules), as Redis ``PSUBSCRIBE`` does. A callback
    that raises is logged and does not stop delivery to the others. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[tuple[str, ...], Callback]] = []
        self.published = 0

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` (encoded and decoded, as Redis would) to the matching subscribers."""
        self.publish_many(((channel, payload),))

    def publish_many(self, messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """:meth:`publish` each ``(channel, payload)`` of ``messages``, in order.

        Every payload is encoded (one that Redis could not carry raises here too); it is decoded
        again only for the subscribers that match its channel.
        """
        with self._lock:
            subscribers = list(self._subscribers)
        for channel, payload in messages:
            text = encode(payload)
            with self._lock:
                self.published += 1
            matching = [
                callback
                for patterns, callback in subscribers
                if any(fnmatch.fnmatchcase(channel, pattern) for pattern in patterns)
            ]
            for callback in matching:
                try:
                    callback(channel, decode(text))
                except Exception:  # noqa: BLE001 - a subscriber's bug must not stop the others
                    _log.exception("subscriber of %s raised", channel)

    def subscribe(self, channels: Iterable[str], callback: Callback) -> Subscription:
        """Call ``callback(channel, payload)`` for every message on ``channels`` (patterns allowed)."""
        entry = (tuple(channels), callback)
        with self._lock:
            self._subscribers.append(entry)

        def close() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return Subscription(close)

    def flush(self, timeout: float = 5.0) -> bool:
        """Return ``True``: in-process delivery is synchronous, nothing is ever queued."""
        return True

    def close(self) -> None:
        """Drop every subscriber."""
        with self._lock:
            self._subscribers.clear()


_PUBLISH_ALL = (
    "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end return #ARGV / 2"
)
"""Lua: publish ``ARGV = channel, message, channel, message, ...`` in order."""


class RedisBus:
    """Redis pub/sub that never blocks its caller and survives Redis outages.

    :meth:`publish` only appends to a bounded in-memory queue; a background thread sends the
    queue to Redis in order: whatever accumulated meanwhile in ONE command, a server-side script
    that publishes each message in turn (:data:`_PUBLISH_ALL`; a pipeline of ``PUBLISH``
    commands costs the client several times more per message, and Redis one reply per
    message). While Redis is unreachable the thread logs one warning, retries with
    exponential backoff (up to ``max_backoff`` seconds) and keeps the queue; when Redis returns,
    publishing resumes with the oldest queued message. If the queue fills up, the oldest messages
    are dropped (and counted in :attr:`dropped`): the database remembers, Redis only notifies.

    Subscriptions run in their own thread each and re-subscribe after a lost connection; a
    message published while a subscriber was disconnected is lost for it (subscribers catch up
    from the database).

    Parameters
    ----------
    url : str
        Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
    max_queue : int
        Most messages kept while Redis is unreachable.
    max_backoff : float
        Longest wait between reconnection attempts, in seconds.
    """

    BATCH = 2000
    """Most messages sent in one round trip."""

    def __init__(self, url: str, *, max_queue: int = 100_000, max_backoff: float = 2.0) -> None:
        self.url = url
        self._client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        self._queue: deque[tuple[str, str]] = deque()
        self._max_queue = max_queue
        self._max_backoff = max_backoff
        self._condition = threading.Condition()
        self._closed = False
        self._sending = 0
        self.published = 0
        self.dropped = 0
        self.connected = True
        self._subscriptions: list[Subscription] = []
        self._publish_all = self._client.register_script(_PUBLISH_ALL)
        self._thread = threading.Thread(
            target=self._publish_loop, name="redis-bus-publisher", daemon=True
        )
        self._thread.start()

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for ``channel`` and return at once (never blocks on Redis)."""
        self.publish_many(((channel, payload),))

    def publish_many(self, messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Queue each ``(channel, payload)`` of ``messages``, in order, and return at once.

        The messages are queued together, so the publisher thread sends them in one pipelined
        round trip (up to :attr:`BATCH` at a time).
        """
        encoded = [(channel, encode(payload)) for channel, payload in messages]
        with self._condition:
            if self._closed:
                return
            for item in encoded:
                if len(self._queue) >= self._max_queue:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(item)
            self._condition.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message was sent; return ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True

    def _publish_loop(self) -> None:
        backoff = 0.05
        while True:
            with self._condition:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if self._closed and not self._queue:
                    return
                batch = [self._queue[index] for index in range(min(len(self._queue), self.BATCH))]
                self._sending = len(batch)
            try:
                if len(batch) == 1:
                    self._client.publish(*batch[0])
                else:  # one command for everything queued meanwhile, order kept
                    self._publish_all(args=[part for item in batch for part in item])
            except redis.RedisError as exc:
                with self._condition:
                    self._sending = 0
                    if self._closed:
                        return
                if self.connected:
                    _log.warning(
                        "Redis unreachable at %s (%s): queueing messages and retrying",
                        self.url,
                        exc,
                    )
                    self.connected = False
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.05
            if not self.connected:
                _log.warning("Redis at %s is back: publishing resumed", self.url)
                self.connected = True
            with self._condition:
                for item in batch:  # drop what was sent (unless the queue overflowed meanwhile)
                    if self._queue and self._queue[0] is item:
                        self._queue.popleft()
                self._sending = 0
                self.published += len(batch)
                self._condition.notify_all()

    def subscribe(self, channels: Iterable[str], callback: Callback) -> Subscription:
        """Call ``callback(channel, payload)`` from a background thread for every message.

        Channels containing ``*`` are subscribed as patterns. The thread reconnects after a lost
        connection (with backoff) and re-subscribes.
        """
        channels = tuple(channels)
        stop = threading.Event()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._subscribe_loop,
            args=(channels, callback, stop, ready),
            name="redis-bus-subscriber",
            daemon=True,
        )
        thread.start()
        ready.wait(2.0)

        def close() -> None:
            stop.set()
            thread.join(timeout=3.0)

        subscription = Subscription(close)
        self._subscriptions.append(subscription)
        return subscription

    def _subscribe_loop(
        self, channels, callback, stop: threading.Event, ready: threading.Event
    ) -> None:
        patterns = [channel for channel in channels if "*" in channel]
        plain = [channel for channel in channels if "*" not in channel]
        backoff = 0.05
        warned = False
        while not stop.is_set():
            client = redis.Redis.from_url(self.url, socket_connect_timeout=1.0, socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                if plain:
                    pubsub.subscribe(*plain)
                if patterns:
                    pubsub.psubscribe(*patterns)
                if warned:
                    _log.warning("Redis subscription to %s restored", ", ".join(channels))
                    warned = False
                ready.set()
                backoff = 0.05
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None or message["type"] not in ("message", "pmessage"):
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    try:
                        callback(channel, decode(message["data"]))
                    except Exception:  # noqa: BLE001 - a subscriber's bug must not kill the thread
                        _log.exception("subscriber of %s raised", channel)
            except redis.RedisError as exc:
                if not warned:
                    _log.warning(
                        "Redis subscription to %s lost (%s): reconnecting", ", ".join(channels), exc
                    )
                    warned = True
                ready.set()
                stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:  # noqa: BLE001 - closing a dead connection may fail
                    pass

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop every thread."""
        self.flush(timeout)
        for subscription in self._subscriptions:
            subscription.close()
        with self._condition:
            self._closed = True
            self._queue.clear()
            self._condition.notify_all()
        self._thread.join(timeout=3.0)
        self._client.close()


@runtime_checkable
class Bus(Protocol):
    """What every message bus offers; :class:`InProcessBus` and :class:`RedisBus` both satisfy it.

    Code that publishes or subscribes takes a ``Bus``, so a test can hand it either bus (or its
    own) without patching.
    """

    published: int
    """Messages handed to subscribers (in-process) or sent to Redis so far."""

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` on ``channel``; never blocks on the transport."""

    def publish_many(self, messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Send each ``(channel, payload)`` of ``messages``, in order."""

    def subscribe(self, channels: Iterable[str], callback: Callback) -> Subscription:
        """Call ``callback(channel, payload)`` for every message on ``channels`` (``*`` patterns
        allowed) until the returned subscription is closed."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything published was sent; ``False`` if ``timeout`` seconds passed."""

    def close(self) -> None:
        """Send what is queued, then release the bus's connections and threads."""


def make_bus(url: str | None = None) -> Bus:
    """Return a :class:`RedisBus` for ``url`` or ``CANDELA_REDIS_URL``, else an :class:`InProcessBus`."""
    url = redis_url(url)
    return RedisBus(url) if url else InProcessBus()
