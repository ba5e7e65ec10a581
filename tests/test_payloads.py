"""devices.payloads.check_json: what a JSON document crossing the hub may hold."""
import pytest

from devices.payloads import MAX_DEPTH, MAX_SAFE_INTEGER, UnsafeJson, check_json


def nested(depth):
    """`depth` objects and arrays, one in another."""
    document = 1
    for level in range(depth):
        document = {"a": document} if level % 2 else [document]
    return document


def test_plain_documents_pass():
    check_json({"seconds": 5, "mode": "eco", "ratio": 0.5, "on": True, "none": None, "list": [1, "a", [2]]})
    check_json(nested(MAX_DEPTH))
    check_json(MAX_SAFE_INTEGER)
    check_json(-MAX_SAFE_INTEGER)


@pytest.mark.parametrize(
    "document, problem",
    [
        (nested(MAX_DEPTH + 1), "nested deeper than 32"),
        (nested(10_000), "nested deeper than 32"),
        ({"note": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "key"),
        ({"big": 2**64}, "integer beyond"),
        ({"big": -(2**53)}, "integer beyond"),
        ({"x": float("nan")}, "not finite"),
        ({"x": float("inf")}, "not finite"),
        ({"x": b"bytes"}, "not a JSON value"),
        ({1: "key"}, "key"),
    ],
)
def test_what_no_database_encoder_or_device_takes_is_refused_with_where(document, problem):
    with pytest.raises(UnsafeJson, match=problem):
        check_json(document)


def test_the_message_says_where():
    with pytest.raises(UnsafeJson, match=r"^settings\.modes\[1\]: text holds a NUL"):
        check_json({"settings": {"modes": ["ok", "b\x00d"]}})


def test_limits_can_be_given():
    check_json({"big": 2**62}, max_integer=2**63 - 1)
    with pytest.raises(UnsafeJson):
        check_json([[1]], max_depth=1)
