"""The decision JSON spelt out by ``runner.encoding`` is the generic encoders' text, exactly."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from candela.core.bus import Encoded, decode, encode
from runner.encoding import compact_json, indicator_texts, indicators_json, signal_json

_values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
_names = st.text(min_size=1, max_size=12)


def _plain(value):
    return None if isinstance(value, float) and math.isnan(value) else value


@given(st.dictionaries(_names, _values, max_size=5))
def test_indicators_json_is_json_dumps_sorted(indicators):
    indicators = {name: _plain(value) for name, value in indicators.items()}
    assert indicators_json(indicators) == json.dumps(indicators, sort_keys=True)


@given(
    indicators=st.dictionaries(_names, _values, max_size=4),
    price=st.floats(allow_nan=False, min_value=1e-12, max_value=1e9),
    target=st.floats(min_value=-100, max_value=100),
    raw=st.one_of(st.floats(allow_nan=False), st.just(math.inf)),
    executed=st.booleans(),
    action=st.sampled_from(["buy", "sell", "hold", "halt"]),
    bot_id=_names,
    ts=st.integers(0, 2**62),
)
def test_signal_json_is_the_bus_encoding(
    indicators, price, target, raw, executed, action, bot_id, ts
):
    signal = dict(
        bot_id=bot_id,
        ts=ts,
        action=action,
        target=target,
        raw_target=raw,
        price=price,
        executed=executed,
        created_at=ts + 1,
        indicators={name: _plain(value) for name, value in indicators.items()},
        published_at=ts + 2,
    )
    text = signal_json(signal, compact_json(bot_id))
    finite = all(
        value is None or math.isfinite(value) for value in signal["indicators"].values()
    ) and math.isfinite(raw)
    assert (text is not None) == finite  # infinities are left to the generic encoder
    if text is not None:
        assert text == encode(signal)
        assert encode(Encoded(signal, text)) == text
        assert decode(text) == json.loads(encode(signal))


def test_a_signal_with_other_keys_is_left_to_the_generic_encoder():
    signal = dict(bot_id="b", ts=1, action="hold", target=0.0, raw_target=0.0, price=1.0)
    signal.update(executed=False, created_at=1, indicators={}, published_at=2, extra=1)
    assert signal_json(signal, '"b"') is None


@given(st.dictionaries(_names, st.lists(_values, min_size=3, max_size=3), max_size=4))
def test_indicator_texts_are_the_generic_encodings_of_each_bar(columns):
    columns = {name: [_plain(value) for value in values] for name, values in columns.items()}
    texts = indicator_texts(columns, 3)
    finite = all(v is None or math.isfinite(v) for values in columns.values() for v in values)
    assert (texts is not None) == finite
    if texts is not None:
        loose, compact = texts
        for i in range(3):
            bar = {name: values[i] for name, values in columns.items()}
            assert loose[i] == json.dumps(bar, sort_keys=True)
            assert "{" + compact[i] + "}" == compact_json(bar)
