"""Typed views of one stored field, and the encoding rules for writes.

Redis stores bytes. Reads hand back a :class:`Value` so each call site picks the type it wants
and gets a harmless fallback (``''``, ``0``, ``False``, ``{}``) for a missing or malformed field
instead of an exception in the middle of a request. Writes go through :func:`encode`, which
refuses anything it cannot store losslessly *before* Redis is touched; nothing is ever pickled.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import sys
from typing import Any

from .errors import SessionTypeError, SessionValueError

TRUE_WORDS = frozenset({b"1", b"true", b"yes", b"on"})
# What .int accepts: decimal digits with an optional sign (and the spaces Python's int() allows).
# Python's int() would also take "1_000" and other spellings no writer of this library produces.
INTEGER_TEXT = re.compile(rb"\s*[+-]?[0-9]+\s*")


class Value:
    """One session field as read from Redis at the moment of the call.

    Read-only, like the reading it records: it is hashable and compares by content, so changing
    it afterwards would corrupt any set or dict holding it. Being immutable also lets every read
    of a field that is not there share one :data:`ABSENT`.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes | None) -> None:
        self._raw = raw

    @property
    def raw(self) -> bytes | None:
        """The stored bytes, or ``None`` when the field is absent."""
        return self._raw

    @property
    def none(self) -> bool:
        """``True`` when the field is absent."""
        return self._raw is None

    @property
    def str(self) -> builtins.str:
        """The field as text; ``''`` when absent or not valid UTF-8."""
        if self._raw is None:
            return ""
        try:
            return self._raw.decode("utf-8")
        except UnicodeDecodeError:
            return ""

    @property
    def int(self) -> builtins.int:
        """The field as an integer; ``0`` when absent or not an integer."""
        raw = self._raw
        if raw is None:
            return 0
        # isdigit() (ASCII digits only, for bytes) answers what every counter stores in a tenth
        # of the regular expression's time; signs and spaces take the slower test.
        if not raw.isdigit() and INTEGER_TEXT.fullmatch(raw) is None:
            return 0
        try:
            return int(raw)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return 0

    @property
    def float(self) -> builtins.float:
        """The field as a float; ``0.0`` when absent, not a number, or not finite (``nan``, ``inf``:
        writing them is refused too, so such text was not written as a number by this library)."""
        raw = self._raw
        if raw is None or b"_" in raw:
            return 0.0
        try:
            number = float(raw)
        except ValueError:
            return 0.0
        return number if math.isfinite(number) else 0.0

    @property
    def bool(self) -> builtins.bool:
        """``True`` for ``1``, ``true``, ``yes``, ``on`` in any case (what writing ``True`` stores)."""
        if self._raw is None:
            return False
        return self._raw.strip().lower() in TRUE_WORDS

    @property
    def json(self) -> Any:
        """The field parsed as JSON; ``{}`` when absent or not valid JSON."""
        if self._raw is None:
            return {}
        try:
            return json.loads(self._raw)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors;
            return {}                         # nesting deeper than Python's stack is a RecursionError

    def __eq__(self, other: object) -> builtins.bool:
        if isinstance(other, Value):
            return self._raw == other._raw
        return NotImplemented

    def __hash__(self) -> builtins.int:
        return hash(self._raw)

    def __bool__(self) -> builtins.bool:
        # A Value is neither true nor false on its own: b"0", b"" and an absent field would each
        # surprise someone. Saying which reading is meant avoids a silent logic bug.
        raise SessionTypeError(
            "a session Value has no truth value; use .none to test presence, .bool for a "
            "stored boolean, or .str / .int for the contents"
        )

    def __repr__(self) -> builtins.str:
        return f"Value({self._raw!r})"


#: What reading an absent field gives (reads with no session at all share it).
ABSENT = Value(None)


def encode(name: str, value: Any) -> bytes | None:
    """Turn a Python value into the bytes stored for field ``name``; ``None`` means delete.

    :raises TypeError: for a value without a lossless encoding (the message names the field):
        an unsupported type, NaN or infinity (``.float`` could not tell them from a number and
        ``incr()`` refuses them), or an int too long for Python to write as decimal text.
    """
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int subclass
        return b"1" if value else b"0"
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise SessionTypeError(
                f"session field {name!r}: the str holds characters UTF-8 cannot encode ({error.reason})"
            ) from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        # int.__repr__, not str(): an int subclass (IntEnum before Python 3.11) may print its name.
        try:
            return int.__repr__(value).encode("ascii")
        except ValueError:  # longer than sys.get_int_max_str_digits(); .int could not read it either
            raise SessionTypeError(
                f"session field {name!r}: the int has more than {sys.get_int_max_str_digits()} digits, "
                "past Python's int/str conversion limit; store it as bytes (int.to_bytes) instead"
            ) from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SessionTypeError(
                f"session field {name!r}: cannot store {value!r}; NaN and infinity do not read back as "
                "numbers incr() can add to; store a finite float, or None to delete the field"
            )
        return float.__repr__(value).encode("ascii")
    if isinstance(value, (dict, list)):
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as error:
            raise SessionTypeError(f"session field {name!r}: the {type(value).__name__} is not JSON-serialisable: {error}") from None
        # json.dumps turns 1, True and None keys into strings and tuples into lists without a
        # word: {1: "a", "1": "b"} would read back as {"1": "b"}. What would not read back as
        # written is refused instead.
        if json.loads(text) != value:
            loss = _json_loss(value, "the " + type(value).__name__) or "it would not read back as written"
            raise SessionTypeError(f"session field {name!r}: {loss}; nothing was written")
        return data
    raise SessionTypeError(
        f"session field {name!r}: cannot store a {type(value).__name__}; store str, bytes, int, "
        "float, bool, dict or list (None deletes the field)"
    )


def _json_loss(value: Any, where: str) -> str | None:
    """What in ``value`` JSON would not give back as it is (a non-str key, a tuple), for the
    error message of :func:`encode`."""
    if isinstance(value, tuple):
        return f"{where} holds a tuple, which JSON reads back as a list; store a list"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{where} has the {type(key).__name__} key {key!r}, which JSON reads back as the "
                        f"str {json.dumps(key)!r}; use str keys")
            found = _json_loss(item, f"{where}[{key!r}]")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _json_loss(item, f"{where}[{index}]")
            if found:
                return found
    return None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def encode_amount(name: str, amount: Any) -> tuple[builtins.str, builtins.str]:
    """``(amount as text, "int" | "float")`` for ``incr()`` of field ``name``: an int in Redis's
    64-bit range, or a finite float (not a bool, which is an int to Python only)."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise SessionTypeError(f"session field {name!r}: incr() takes an int or finite float amount, got {amount!r}")
    if isinstance(amount, int):
        if not INT64_MIN <= amount <= INT64_MAX:
            raise SessionValueError(f"session field {name!r}: incr() amount {amount} is outside the 64-bit range Redis counts in")
        return int.__repr__(amount), "int"
    return float.__repr__(amount), "float"


def encode_flash(message: Any, category: Any) -> bytes:
    """A flash message as stored: ``category\\0message`` in UTF-8 (the category cannot hold a NUL)."""
    if not isinstance(message, builtins.str) or not isinstance(category, builtins.str):
        raise SessionTypeError("flash() takes a str message and a str category")
    if "\0" in category or not category:
        raise SessionValueError(f"flash category {category!r} must be non-empty and hold no NUL character")
    try:
        return category.encode("utf-8") + b"\0" + message.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SessionTypeError(f"flash(): the message or category holds characters UTF-8 cannot encode ({error.reason})") from None
