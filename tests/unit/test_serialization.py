"""JSON validation of task arguments and results (no database)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

import pytest

from django_taskengine import NotJSONError
from django_taskengine.serialization import dump_arguments, dump_result


def test_dump_arguments_returns_compact_json_of_args_and_kwargs():
    args_json, kwargs_json = dump_arguments("t", (1, "two", None), {"flag": True, "ratio": 0.5})
    assert args_json == '[1,"two",null]'
    assert kwargs_json == '{"flag":true,"ratio":0.5}'


def test_nested_containers_round_trip_with_tuples_as_lists():
    value = {"a": [1, (2, 3), {"b": [None, False, "ü€😀"]}], "big": 2**70, "neg": -1.5e-300}
    args_json, _ = dump_arguments("t", (value,), {})
    assert json.loads(args_json) == [
        {"a": [1, [2, 3], {"b": [None, False, "ü€😀"]}], "big": 2**70, "neg": -1.5e-300}
    ]


def test_not_json_error_is_a_type_error():
    assert issubclass(NotJSONError, TypeError)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "builtins.object"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "datetime.datetime"),
        (dt.date(2024, 1, 1), "datetime.date"),
        ({1, 2}, "builtins.set"),
        (frozenset(), "builtins.frozenset"),
        (b"bytes", "builtins.bytes"),
        (decimal.Decimal("1.5"), "decimal.Decimal"),
        (uuid.UUID(int=0), "uuid.UUID"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
    ],
)
def test_a_non_json_positional_argument_is_named(value, fragment):
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("app.tasks.resize", (1, value), {})
    message = str(excinfo.value)
    assert "app.tasks.resize" in message
    assert "positional argument 1" in message
    assert fragment in message
    assert "Nothing was enqueued" in message


def test_a_non_json_keyword_argument_is_named():
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("app.tasks.resize", (), {"ok": 1, "when": dt.time(12, 0)})
    assert "argument 'when'" in str(excinfo.value)
    assert "datetime.time" in str(excinfo.value)


def test_the_path_to_a_value_deep_inside_containers_is_named():
    payload = [0, {"items": [1, 2, {"deep": [object()]}]}]
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", (), {"payload": payload})
    assert "argument 'payload'[1]['items'][2]['deep'][0]" in str(excinfo.value)


def test_nan_deep_inside_a_list_is_rejected():
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", ([1.0, [2.0, float("nan")]],), {})
    assert "positional argument 0[1][1] is nan" in str(excinfo.value)


@pytest.mark.parametrize("key", [1, 1.5, None, True, (1, 2)])
def test_a_dict_with_a_non_string_key_is_rejected(key):
    # json.dumps would silently turn these keys into strings: the task would see other data.
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", ({"nested": {key: "x"}},), {})
    message = str(excinfo.value)
    assert "positional argument 0['nested'] has a key" in message
    assert type(key).__name__ in message


def test_nesting_deeper_than_100_levels_is_rejected_with_its_place():
    value: list = []
    for _ in range(150):
        value = [value]
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", (value,), {})
    assert "nested more than 100 levels deep" in str(excinfo.value)


def test_nesting_of_50_levels_is_accepted():
    value: list = []
    for _ in range(50):
        value = [value]
    args_json, _ = dump_arguments("t", (value,), {})
    assert json.loads(args_json) == [value]


def test_the_first_bad_argument_is_reported():
    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", (1, object()), {"later": set()})
    assert "positional argument 1" in str(excinfo.value)
    assert "later" not in str(excinfo.value)


def test_a_long_repr_is_truncated_in_the_message():
    class Huge:
        def __repr__(self) -> str:
            return "x" * 10_000

    with pytest.raises(NotJSONError) as excinfo:
        dump_arguments("t", (Huge(),), {})
    assert len(str(excinfo.value)) < 1_000


def test_dump_result_serializes_json_values():
    assert dump_result({"ids": [1, 2], "ok": True, "none": None}) == (
        '{"ids":[1,2],"ok":true,"none":null}'
    )
    assert dump_result(None) == "null"


@pytest.mark.parametrize("value", [object(), {1: "a"}, [float("nan")], {"s": {1}}])
def test_dump_result_rejects_non_json_return_values(value):
    with pytest.raises(NotJSONError) as excinfo:
        dump_result(value)
    message = str(excinfo.value)
    assert "the return value" in message
    assert "return only dicts, lists" in message
