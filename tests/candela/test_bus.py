"""The message buses: in-process delivery, real Redis pub/sub, and publishing that never blocks."""

from __future__ import annotations

import inspect
import socket
import threading
import time
import uuid

import pytest

from candela.core.bus import Bus, InProcessBus, RedisBus, make_bus


def test_in_process_bus_delivers_to_matching_subscribers_and_survives_a_bad_one():
    bus = InProcessBus()
    got: list[tuple[str, dict]] = []

    def broken(_channel, _payload):
        raise RuntimeError("subscriber bug")

    bus.subscribe(["signals:*"], broken)
    subscription = bus.subscribe(["signals:*", "system:events"], lambda c, p: got.append((c, p)))
    bus.publish("signals:a", {"x": float("nan"), "n": 1})
    bus.publish("trades:a", {"n": 2})
    bus.publish_many([("system:events", {"n": 3}), ("trades:a", {"n": 5}), ("signals:b", {"n": 6})])
    subscription.close()
    bus.publish("signals:a", {"n": 4})
    assert got == [
        ("signals:a", {"x": None, "n": 1}),
        ("system:events", {"n": 3}),
        ("signals:b", {"n": 6}),
    ]


@pytest.mark.parametrize("bus_class", [InProcessBus, RedisBus])
def test_both_buses_satisfy_the_bus_protocol(bus_class):
    """Every method of :class:`Bus` exists on both buses and accepts the protocol's arguments."""
    protocol_methods = ["publish", "publish_many", "subscribe", "flush", "close"]
    for name in protocol_methods:
        expected = inspect.signature(getattr(Bus, name))
        actual = inspect.signature(getattr(bus_class, name))
        for parameter in expected.parameters.values():
            assert parameter.name in actual.parameters, (
                f"{bus_class.__name__}.{name} lacks {parameter.name}"
            )
            if parameter.default is not inspect.Parameter.empty:
                assert actual.parameters[parameter.name].default == parameter.default
        required = [
            p.name
            for p in actual.parameters.values()
            if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        assert set(required) <= set(expected.parameters), f"{bus_class.__name__}.{name} needs more"


def test_an_in_process_bus_is_a_bus():
    assert isinstance(InProcessBus(), Bus)


@pytest.mark.redis
def test_a_redis_bus_is_a_bus(redis_url):
    bus = RedisBus(redis_url)
    try:
        assert isinstance(bus, Bus)
    finally:
        bus.close()


def test_make_bus_picks_redis_only_when_configured(monkeypatch):
    monkeypatch.delenv("CANDELA_REDIS_URL", raising=False)
    assert isinstance(make_bus(), InProcessBus)


@pytest.mark.redis
def test_redis_bus_round_trip_with_patterns(redis_url):
    bus = RedisBus(redis_url)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    got: list[tuple[str, dict]] = []
    done = threading.Event()

    def collect(channel, payload):
        got.append((channel, payload))
        if len(got) == 3:
            done.set()

    bus.subscribe([f"signals:{prefix}-*", f"status:{prefix}"], collect)
    bus.publish(f"signals:{prefix}-0", {"index": 0})
    bus.publish_many(
        [
            (f"signals:{prefix}-1", {"index": 1}),
            (f"trades:{prefix}", {"ignored": True}),
            (f"status:{prefix}", {"index": 2}),
        ]
    )
    assert bus.flush(5)
    assert done.wait(5)
    bus.close()
    assert got == [
        (f"signals:{prefix}-0", {"index": 0}),
        (f"signals:{prefix}-1", {"index": 1}),
        (f"status:{prefix}", {"index": 2}),
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _finishes(function, *args) -> bool:
    """Run ``function`` in a thread; whether it returned (a hang detector, not a speed check)."""
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    thread.join(30)
    return not thread.is_alive()


def test_publishing_to_an_unresponsive_redis_never_blocks_and_is_bounded():
    with socket.socket() as silent:  # accepts connections, never answers a byte
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        bus = RedisBus(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", max_queue=500)

        def publish_all() -> None:
            for index in range(2000):
                bus.publish("signals:x", {"index": index})

        assert _finishes(publish_all)  # a publish that waited on Redis would hang here
        assert not bus.flush(0.3)
        assert bus.dropped >= 1500 - 1  # the oldest are dropped beyond max_queue (the DB remembers)
        assert _finishes(bus.close, 0.2)


def test_a_refused_connection_is_reported_and_nothing_is_sent():
    bus = RedisBus(f"redis://127.0.0.1:{_closed_port()}/0")
    bus.publish("signals:x", {"index": 0})
    deadline = time.monotonic() + 10
    while bus.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not bus.connected
    assert bus.published == 0 and not bus.flush(0.1)
    assert _finishes(bus.close, 0.2)
