"""The ``Value`` a session read returns, and the ``encode()`` rules every write goes through.

No store is involved: a ``Value`` wraps the bytes Redis handed back, and ``encode()`` decides what
bytes a write stores, so both are tested on their own.
"""

from __future__ import annotations

import copy
import enum
import math
import pickle
import sys

import pytest

from redis_session import Value
from redis_session.settings import SessionSettings
from redis_session.value import encode

#: JSON nesting no interpreter parses or writes without running out of stack: a million levels,
#: a thousand times the default recursion limit and a hundred times the fixed C recursion limits
#: of CPython 3.12 and 3.13 (whose json modules no longer stop at ``sys.getrecursionlimit()``).
TOO_DEEP_TO_ENCODE = max(1_000_000, 1_000 * sys.getrecursionlimit())
#: The deepest JSON array a session value can hold (``"[" * n + "]" * n`` fills the default
#: ``max-value-bytes``): 65536 levels, again far past every interpreter's limit.
DEEPEST_STORABLE_NESTING = SessionSettings().max_value_bytes // 2

# --- reading: one row per stored field, and what each typed view gives ----------------------


def test_raw_is_the_stored_bytes():
    """``.raw`` hands back exactly the bytes Redis stored."""
    assert Value(b"\x00caf\xc3\xa9").raw == b"\x00caf\xc3\xa9"


def test_raw_is_none_when_the_field_is_absent():
    """``.raw`` is ``None`` for a field the session does not hold."""
    assert Value(None).raw is None


@pytest.mark.parametrize(
    ("raw", "none"),
    [
        (None, True),
        (b"", False),
        (b"0", False),
        (b"anything", False),
    ],
)
def test_none_tells_absent_from_empty(raw, none):
    """``.none`` is ``True`` only for an absent field, not for an empty or zero one."""
    assert Value(raw).none is none


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"bob", "bob"),
        (b"caf\xc3\xa9", "café"),
        (b"", ""),
        (None, ""),
        (b"\xff\xfe", ""),  # not UTF-8
        (b"caf\xe9", ""),  # Latin-1, not UTF-8
    ],
)
def test_str_reads_utf8_text_or_empty(raw, text):
    """``.str`` gives the UTF-8 text, and ``''`` when absent or not valid UTF-8."""
    assert Value(raw).str == text


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (b"42", 42),
        (b"-7", -7),
        (b"0", 0),
        (b" 12 ", 12),
        (None, 0),
        (b"", 0),
        (b"abc", 0),
        (b"3.5", 0),
        (b"1e3", 0),
        (b"0x10", 0),
        (b"\xff", 0),
        (b"1_000", 0),  # Python's int() spelling, never written by encode()
        (b"\xd9\xa3", 0),  # an Arabic-Indic digit: int() would read it as 3
        (b"9" * 5000, 0),  # past Python's int/str digit limit
    ],
)
def test_int_reads_whole_numbers_or_zero(raw, number):
    """``.int`` gives the stored whole number, and ``0`` when absent or not an integer."""
    assert Value(raw).int == number


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (b"2.5", 2.5),
        (b"-0.25", -0.25),
        (b"3", 3.0),
        (b"1e3", 1000.0),
        (None, 0.0),
        (b"", 0.0),
        (b"abc", 0.0),
        (b"\xff", 0.0),
        (b"nan", 0.0),  # encode() refuses NaN and infinity, so such text is not a stored number
        (b"inf", 0.0),
        (b"-Infinity", 0.0),
        (b"1e999", 0.0),  # overflows to infinity
        (b"1_0.5", 0.0),
    ],
)
def test_float_reads_numbers_or_zero(raw, number):
    """``.float`` gives the stored number, and ``0.0`` when absent or not a number."""
    value = Value(raw).float
    assert isinstance(value, float)
    assert value == number


@pytest.mark.parametrize(
    "raw",
    [
        encode("flag", True),  # what writing True stores
        b"1",
        b"true",
        b"True",  # what redis-session 0.2.1 stored for True
        b"TRUE",
        b"yes",
        b"Yes",
        b"on",
        b"ON",
    ],
)
def test_bool_is_true_for_true_words(raw):
    """``.bool`` is ``True`` for what writing ``True`` stores and for 1/true/yes/on in any case."""
    assert Value(raw).bool is True


@pytest.mark.parametrize(
    "raw",
    [
        None,
        encode("flag", False),  # what writing False stores
        b"0",
        b"false",
        b"False",
        b"no",
        b"off",
        b"",
        b"2",
        b"garbage",
        b"\xff",
    ],
)
def test_bool_is_false_for_everything_else(raw):
    """``.bool`` is ``False`` when absent, for 0/false/no, and for anything it does not recognise."""
    assert Value(raw).bool is False


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b'{"user":"bob","roles":["admin"]}', {"user": "bob", "roles": ["admin"]}),
        (b"[1,2,3]", [1, 2, 3]),
        (b'"text"', "text"),
        (b"7", 7),
        ('{"city":"Zürich"}'.encode(), {"city": "Zürich"}),
    ],
)
def test_json_parses_stored_json(raw, parsed):
    """``.json`` gives the parsed JSON document."""
    assert Value(raw).json == parsed


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"{unclosed",
        b'{"a": 1} trailing',
        b"\xff\xfe\x00",  # not UTF-8 (nor any JSON encoding)
        b'{"a":"\xff"}',  # JSON-shaped but not UTF-8
        pytest.param(  # nested deeper than Python's stack, yet a value a session may hold
            b"[" * DEEPEST_STORABLE_NESTING + b"]" * DEEPEST_STORABLE_NESTING, id="nested-deeper-than-the-stack"
        ),
    ],
)
def test_json_is_an_empty_dict_when_absent_or_malformed(raw):
    """``.json`` gives ``{}`` when the field is absent, not JSON, or not UTF-8."""
    assert Value(raw).json == {}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"bob", "Value(b'bob')"),
        (None, "Value(None)"),
    ],
)
def test_repr_shows_the_stored_bytes(raw, shown):
    """A ``Value`` prints as ``Value(<raw bytes>)`` in logs and the debugger."""
    assert repr(Value(raw)) == shown


def test_values_with_the_same_bytes_are_equal():
    """Two reads of the same stored bytes compare equal, and hash alike."""
    assert Value(b"bob") == Value(b"bob")
    assert Value(None) == Value(None)
    assert hash(Value(b"bob")) == hash(Value(b"bob"))
    assert len({Value(b"bob"), Value(b"bob"), Value(None)}) == 2


def test_a_value_is_read_only_so_a_set_holding_it_stays_sound():
    """Assigning ``.raw`` raises: a Value records a reading, and its hash must not change under a set."""
    value = Value(b"bob")
    seen = {value}
    with pytest.raises(AttributeError):
        value.raw = b"alice"
    assert value.raw == b"bob" and value in seen


def test_a_value_survives_pickle_and_copy():
    """A Value can be pickled or copied (a task queue, a cache) and comes back equal."""
    value = Value(b"42")
    assert pickle.loads(pickle.dumps(value)) == value and pickle.loads(pickle.dumps(value)).int == 42
    assert copy.copy(value) == value and copy.deepcopy(Value(None)).none


def test_values_with_different_bytes_are_not_equal():
    """Different stored bytes, or absent against empty, compare unequal."""
    assert Value(b"bob") != Value(b"alice")
    assert Value(None) != Value(b"")


@pytest.mark.parametrize("raw", [None, b"", b"0", b"1", b"true"])
def test_a_value_has_no_truth_value(raw):
    """``if session.user:`` raises a TypeError that points to ``.none`` and ``.bool``."""
    with pytest.raises(TypeError, match=r"\.none.*\.bool"):
        bool(Value(raw))


def test_a_value_in_an_if_statement_raises_too():
    """Using a ``Value`` directly as a condition fails loudly instead of guessing."""
    user = Value(None)
    with pytest.raises(TypeError, match="no truth value"):
        if user:
            pass


# --- writing: what encode() stores for each Python type -------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("bob", b"bob"),
        ("café", b"caf\xc3\xa9"),
        ("", b""),
        (b"\x00\xff raw", b"\x00\xff raw"),
        (bytearray(b"array"), b"array"),
        (memoryview(b"view"), b"view"),
        (42, b"42"),
        (-7, b"-7"),
        (0, b"0"),
        (2.5, b"2.5"),
        (-0.125, b"-0.125"),
        (True, b"1"),
        (False, b"0"),
    ],
)
def test_encode_stores_scalars(value, stored):
    """Text is stored as UTF-8, bytes-like values as they are, numbers and booleans as text."""
    encoded = encode("field", value)
    assert encoded == stored
    assert type(encoded) is bytes


@pytest.mark.parametrize("number", [0, 1, -1, 42, 2**63 - 1, -(2**63), 10**30])
def test_int_round_trips_through_int(number):
    """An int written to the session reads back unchanged through ``.int``."""
    assert Value(encode("count", number)).int == number


@pytest.mark.parametrize("number", [0.0, 2.5, -0.1, 1 / 3, 1e20, 5e-324, 1.7976931348623157e308])
def test_float_round_trips_through_float(number):
    """A float written to the session reads back exactly through ``.float``."""
    assert Value(encode("price", number)).float == number


@pytest.mark.parametrize(("flag", "as_int"), [(True, 1), (False, 0)])
def test_bool_round_trips_through_bool_and_int(flag, as_int):
    """``True``/``False`` read back through ``.bool``, and as ``1``/``0`` through ``.int``."""
    stored = Value(encode("admin", flag))
    assert stored.bool is flag
    assert stored.int == as_int


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"user": "bob", "roles": ["admin", "ops"]}, b'{"user":"bob","roles":["admin","ops"]}'),
        ([1, 2.5, None, True, "x"], b'[1,2.5,null,true,"x"]'),
        ({}, b"{}"),
        ([], b"[]"),
        ({"city": "Zürich", "emoji": "🙂"}, '{"city":"Zürich","emoji":"🙂"}'.encode()),
    ],
)
def test_encode_stores_dicts_and_lists_as_compact_json(value, stored):
    """Dicts and lists are stored as compact UTF-8 JSON, non-ASCII text kept as is."""
    assert encode("profile", value) == stored


@pytest.mark.parametrize(
    "value",
    [
        {"user": "bob", "roles": ["admin"], "limits": {"daily": 10, "ratio": 0.5}},
        [1, "two", 3.0, None, False, {"nested": ["list"]}],
        {"city": "Zürich", "emoji": "🙂", "quote": 'say "hi"\n'},
    ],
)
def test_dicts_and_lists_round_trip_through_json(value):
    """A dict or list written to the session reads back equal through ``.json``."""
    assert Value(encode("profile", value)).json == value


def test_none_means_delete():
    """Writing ``None`` encodes to ``None``: the field is deleted rather than stored."""
    assert encode("field", None) is None


class Custom:
    """A user-defined class the session has no lossless encoding for."""


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1, 2}, id="set"),
        pytest.param(frozenset({1}), id="frozenset"),
        pytest.param((1, 2), id="tuple"),
        pytest.param(object(), id="object"),
        pytest.param(Custom(), id="custom-class"),
        pytest.param(1 + 2j, id="complex"),
        pytest.param({"tags": {"a", "b"}}, id="dict-holding-a-set"),
        pytest.param([object()], id="list-holding-an-object"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(float("-inf"), id="minus-infinity"),
        pytest.param(10**5000, id="int-past-the-digit-limit"),
        pytest.param({"score": float("nan")}, id="nan-inside-a-dict"),
        pytest.param([float("inf")], id="inf-inside-a-list"),
        pytest.param("lone \ud800 surrogate", id="str-with-lone-surrogate"),
        pytest.param({"name": "lone \udfff surrogate"}, id="dict-holding-a-lone-surrogate"),
    ],
)
def test_encode_refuses_values_it_cannot_store_losslessly(value):
    """Anything without a lossless encoding raises a TypeError that names the field."""
    with pytest.raises(TypeError, match="'favourite_things'"):
        encode("favourite_things", value)


def test_encode_refuses_a_list_nested_deeper_than_the_stack():
    """A list nested deeper than any interpreter's stack (json.dumps raises RecursionError) is
    refused like the values above. Built here, not as a parameter: it takes some 90 MB."""
    with pytest.raises(TypeError, match="'favourite_things'"):
        encode("favourite_things", nested(TOO_DEEP_TO_ENCODE))


def test_refusal_message_lists_the_types_that_can_be_stored():
    """The TypeError for an unsupported type says which types a session can store."""
    with pytest.raises(TypeError) as caught:
        encode("cart", {1, 2})
    message = str(caught.value)
    assert "'cart'" in message
    assert "set" in message
    for kind in ("str", "bytes", "int", "float", "bool", "dict", "list"):
        assert kind in message


def test_refused_json_keeps_the_value_out_of_the_message_chain():
    """The TypeError for unserialisable JSON is a clean error naming the field and the type."""
    with pytest.raises(TypeError) as caught:
        encode("prefs", {"tags": {"a"}})
    assert "'prefs'" in str(caught.value)
    assert "dict" in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_naming_the_field_and_the_value(number):
    """``session.score = float("nan")`` raises a TypeError naming the field and the value; nothing is stored."""
    with pytest.raises(TypeError, match=f"session field 'score': cannot store {number!r}"):
        encode("score", number)


def test_an_int_past_pythons_digit_limit_is_refused_with_a_way_out():
    """An int too long to write as decimal text raises a TypeError naming the field and suggesting bytes."""
    with pytest.raises(TypeError, match="session field 'big'.*digits.*bytes"):
        encode("big", 10**5000)


def test_an_int_enum_is_stored_as_its_number():
    """An IntEnum (or other int subclass) member is stored as its number, which ``.int`` reads back."""
    stored = encode("colour", Colour.RED)
    assert stored == b"1"
    assert Value(stored).int == Colour.RED


def test_nan_inside_json_is_refused_rather_than_written_as_invalid_json():
    """NaN inside a dict is refused, since ``NaN`` is not JSON other readers could parse."""
    with pytest.raises(TypeError, match="'stats'"):
        encode("stats", {"mean": math.nan})
