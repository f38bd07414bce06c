"""The declarative checks of user-written data: messages name the data, the key and the value."""

from __future__ import annotations

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.data_spec import (
    DataSpec,
    check_mapping,
    exact_bool,
    number,
    whole_number,
)

SPEC = DataSpec(
    {
        "size": {"type": whole_number, "min": 1},
        "share": {"type": number, "above": 0, "below": 1},
        "flag": {"type": "bool"},
        "names": {"type": "list", "elements": "str", "unique": True},
        "inner": {"type": "dict", "options": DataSpec({"enabled": {"type": exact_bool, "required": True}})},
    }
)


def check(data: dict) -> dict:
    return check_mapping(data, SPEC, "thing t1", ValueError)


def test_values_are_converted_and_empty_ones_are_unset():
    assert check(
        {"size": "4", "share": "0.5", "flag": "yes", "names": "a,b", "inner": {"enabled": True}}
    ) == {
        "size": 4,
        "share": 0.5,
        "flag": True,
        "names": ["a", "b"],
        "inner": {"enabled": True},
    }
    assert check({"size": None, "share": ""}) == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sise": 4}, "thing t1: unknown fields ['sise']; did you mean size?"),
        ({"size": 0}, "thing t1: size must be a whole number at least 1, got 0"),
        ({"size": True}, "thing t1: size must be a whole number at least 1, got True"),
        ({"share": 1}, "thing t1: share must be a number above 0 and below 1, got 1"),
        ({"flag": "maybe"}, "thing t1: flag must be true or false, got 'maybe'"),
        ({"names": ["a", "a"]}, "thing t1: names: a is listed twice"),
        ({"inner": {}}, "thing t1: inner.enabled is missing; it must be true or false"),
        ({"inner": {"enabled": "yes"}}, "thing t1: inner.enabled must be true or false, got 'yes'"),
        (
            {"inner": {"enabeld": True}},
            "thing t1: unknown fields ['inner.enabeld']; did you mean inner.enabled?",
        ),
    ],
)
def test_messages_name_the_data_the_key_and_the_value(data, message):
    with pytest.raises(ValueError) as err:
        check(data)
    assert str(err.value) == message
