"""The stored bot state (``bot_state.state_json``): what earlier versions wrote still loads."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from research.kernels.execution import step
from research.kernels.records import State, make_config, new_fills, new_state
from research.types import Costs, RiskLimits, Stops
from runner.ledger import decode_state, encode_state

# The slots of the state vector that ``state_json`` held before the state was a named tuple:
# a JSON list of 15 numbers in this order, ``null`` for ``nan``.
VECTOR_SLOTS = (
    "cash",
    "position",
    "entry_price",
    "trail_extreme",
    "pending_target",
    "pending_reason",
    "ordered_target",
    "stopped_target",
    "day",
    "day_start_equity",
    "peak_equity",
    "halt",
    "equity",
    "last_ts",
    "bars",
)
HOUR = 3_600_000
T0 = 1_700_006_400_000


def traded_state() -> State:
    """A state in a position with a trailing extreme and an order pending: few nan fields."""
    config = make_config(Costs(0.001, 5.0), Stops(trailing_stop=0.05), RiskLimits())
    state, fills = new_state(10_000.0), new_fills(3)
    for i, (price, target) in enumerate([(100.0, 1.0), (101.0, 1.0), (103.0, 0.5)]):
        _, state = step(
            state,
            config,
            T0 + (i + 1) * HOUR,
            price,
            price + 1.0,
            price - 1.0,
            price + 0.5,
            target,
            fills,
        )
    assert state.position > 0.0 and not math.isnan(state.pending_target)
    return state


def test_a_row_in_the_state_vector_format_loads_field_by_field():
    state = traded_state()
    vector_row = json.dumps(
        [
            None if math.isnan(value) else value
            for value in (getattr(state, slot) for slot in VECTOR_SLOTS)
        ]
    )
    loaded = decode_state(vector_row)
    assert type(loaded) is State
    np.testing.assert_array_equal(loaded, state)
    assert encode_state(loaded) == vector_row  # and is written back in the same format


def test_encoding_round_trips_exactly_with_nan_as_null():
    state = traded_state()._replace(cash=0.1 + 0.2, stopped_target=math.nan)
    text = encode_state(state)
    assert json.loads(text)[VECTOR_SLOTS.index("stopped_target")] is None
    assert all(type(value) is float for value in decode_state(text))
    np.testing.assert_array_equal(decode_state(text), state)


@pytest.mark.parametrize("text", ["[1.0, 2.0]", '{"cash": 1.0}'])
def test_a_malformed_row_names_the_expected_fields(text):
    with pytest.raises(ValueError, match="15 numbers .*cash, position"):
        decode_state(text)
