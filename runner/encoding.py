"""The JSON a bot writes for every decision, spelt out for speed (a replay writes tens of
thousands a second): each function returns exactly what the generic encoder gives, or ``None``
(the caller then uses the generic encoder) for a value it does not spell out itself.

Floats are written as JSON writes them (``float.__repr__``); an infinity or a ``nan``, which
JSON writes otherwise, is left to the generic encoder.
"""

from __future__ import annotations

import json

compact_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode
"""The bus's encoder (:func:`candela.core.bus.encode` without the ``nan`` fallback)."""

_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode  # json.dumps(sort_keys=True), made once
_QUOTED: dict[str, str] = {}
_SIGNAL_KEYS = frozenset(
    ("action", "bot_id", "created_at", "executed", "indicators", "price")
    + ("published_at", "raw_target", "target", "ts")
)


def _quoted(text: str) -> str:
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = _QUOTED[text] = compact_json(text)
    return quoted


def _number(value) -> str | None:
    """``value`` (a float or ``None``) as JSON, or ``None`` if not spelt out here."""
    if value is None:
        return "null"
    if type(value) is float and value - value == 0.0:  # finite
        return float.__repr__(value)
    return None


def indicators_json(indicators: dict) -> str:
    """``json.dumps(indicators, sort_keys=True)`` (the ``signals.indicators_json`` column)."""
    parts = []
    for name in sorted(indicators):
        value = _number(indicators[name])
        if value is None or type(name) is not str:
            return _SORTED_JSON(indicators)
        parts.append(f"{_quoted(name)}: {value}")
    return "{" + ", ".join(parts) + "}"


def signal_json(signal: dict, quoted_id: str) -> str | None:
    """:func:`candela.core.bus.encode` of a decision's payload on ``signals:{bot_id}`` (keys
    ``action, bot_id, created_at, executed, indicators, price, published_at, raw_target,
    target, ts``), or ``None``.

    ``quoted_id`` is ``compact_json(signal["bot_id"])``.
    """
    if signal.keys() != _SIGNAL_KEYS or type(signal["action"]) is not str:
        return None
    if type(signal["executed"]) is not bool:
        return None
    if not all(type(signal[key]) is int for key in ("created_at", "published_at", "ts")):
        return None
    indicators = signal["indicators"]
    parts = []
    for name in sorted(indicators):
        value = _number(indicators[name])
        if value is None or type(name) is not str:
            return None
        parts.append(f"{_quoted(name)}:{value}")
    price = _number(signal["price"])
    raw = _number(signal["raw_target"])
    target = _number(signal["target"])
    if price is None or raw is None or target is None:
        return None
    return (
        f'{{"action":{_quoted(signal["action"])},"bot_id":{quoted_id},'
        f'"created_at":{signal["created_at"]},'
        f'"executed":{"true" if signal["executed"] else "false"},'
        f'"indicators":{{{",".join(parts)}}},"price":{price},'
        f'"published_at":{signal["published_at"]},"raw_target":{raw},'
        f'"target":{target},"ts":{signal["ts"]}}}'
    )


def number_texts(values) -> list[str | None]:
    """Each of ``values`` (floats or ``None``) as JSON, ``None`` where not spelt out here."""
    return [_number(value) for value in values]


def indicator_texts(indicators: dict[str, list], bars: int) -> tuple[list, list] | None:
    """``(indicators_json of each bar, the compact JSON of each bar's indicators)`` of
    ``{name: values per bar}``, or ``None`` if one value is not spelt out here."""
    loose, compact = [], []
    for name in sorted(indicators):
        if type(name) is not str:
            return None
        texts = number_texts(indicators[name])
        if None in texts:
            return None
        quoted = _quoted(name)
        loose.append([f"{quoted}: {text}" for text in texts])
        compact.append([f"{quoted}:{text}" for text in texts])
    if not loose:
        return ["{}"] * bars, [""] * bars
    return (
        ["{" + ", ".join(row) + "}" for row in zip(*loose)],
        [",".join(row) for row in zip(*compact)],
    )


SIGNAL_TEMPLATE = (
    '{"action":"%s","bot_id":%s,"created_at":%d,"executed":%s,"indicators":{%s},"price":%s,'
    '"published_at":%d,"raw_target":%s,"target":%s,"ts":%d}'
)
""":func:`signal_json`'s text with its values left out (the action needs no escaping)."""
