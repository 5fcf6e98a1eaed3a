"""``flask.session`` on the session's Redis hash: the dict view Flask code (Flask-Login,
Flask-WTF, ``flash()``) expects, beside ``request.session``'s typed field access.

One session, one cookie, one hash, two views. :class:`ServerSideSession` loads every field in one
round trip on first access (a request that never touches it sends nothing) and, at the end of the
request, writes only the keys whose stored form changed, in one round trip, through the same
script as every other write (so a session that ended is never revived). Two requests that change
different keys both land: nothing is written back that the request did not change. A change
made in place (``session["cart"].append(x)``) is found by encoding every value again at the end,
so ``session.modified`` is never needed.

Values keep their Python type. Text is stored as UTF-8, as ``request.session`` stores it; other
types are stored in the form ``request.session`` reads (``.int``, ``.bool``, ``.json``) where
there is one, with the type in a field of the library's own (``__rs:t:<name>``), so the dict view
gets back exactly what it stored. See :data:`ENCODINGS`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import flask
from flask.json.tag import JSONTag, TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from markupsafe import Markup

from .errors import RedisSessionError, SessionTypeError, SessionUnavailableError
from .protocol import RESERVED_PREFIX, TYPE_TAG_PREFIX
from .session import Session

#: How each Python type is stored: (type, tag in __rs:t:<name>, stored form). ``request.session``
#: reads the stored form with the reading that says the same (``.str``, ``.int``, ``.raw``, ...).
ENCODINGS = (
    ("str", None, "UTF-8 text (.str)"),
    ("int", "int", "decimal text (.int)"),
    ("float", "float", "repr text (.float)"),
    ("bool", "bool", "1 or 0 (.bool)"),
    ("None", "none", "empty (.str is '', .none is False)"),
    ("bytes", "bytes", "as is (.raw)"),
    ("dict / list of JSON values", "json", "compact JSON (.json)"),
    ("datetime", "datetime", "ISO 8601 text (.str)"),
    ("uuid.UUID", "uuid", "canonical text (.str)"),
    ("markupsafe.Markup", "markup", "UTF-8 text (.str)"),
    ("tuple, and dict / list holding other types", "tagged", "Flask's tagged JSON (.json gives its raw structure)"),
)


class _TagIsoDateTime(JSONTag):
    """A datetime inside a tagged value as ISO 8601: Flask's own tag writes an HTTP date, which
    drops the microseconds and the time zone offset."""

    __slots__ = ()
    key = " dti"

    def check(self, value: Any) -> bool:
        return isinstance(value, datetime)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def to_python(self, value: Any) -> Any:
        return datetime.fromisoformat(value)


def _tagged_serializer() -> TaggedJSONSerializer:
    serializer = TaggedJSONSerializer()
    serializer.register(_TagIsoDateTime, index=0)
    return serializer


_TAGGED = _tagged_serializer()


def encode_value(name: str, value: Any) -> tuple[bytes, str | None]:
    """``(stored bytes, type tag)`` of a ``flask.session`` value.

    :raises SessionTypeError: for a value that would not read back as written (a set, an object,
        a dict with non-str keys), naming the key; nothing is written.
    """
    if isinstance(value, Markup):
        return str(value).encode("utf-8"), "markup"
    if isinstance(value, str):
        try:
            return value.encode("utf-8"), None
        except UnicodeEncodeError:
            raise SessionTypeError(f"flask.session[{name!r}]: the str holds characters UTF-8 cannot encode") from None
    if value is None:
        return b"", "none"
    if isinstance(value, bool):
        return (b"1" if value else b"0"), "bool"
    if isinstance(value, int):
        return int.__repr__(value).encode("ascii"), "int"
    if isinstance(value, float):
        return float.__repr__(value).encode("ascii"), "float"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "bytes"
    if isinstance(value, datetime):
        return value.isoformat().encode("ascii"), "datetime"
    if isinstance(value, uuid.UUID):
        return str(value).encode("ascii"), "uuid"
    if isinstance(value, (dict, list)) and _is_plain_json(value):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"), "json"
    try:
        text = _TAGGED.dumps(value)
        exact = _TAGGED.loads(text) == value
    except (TypeError, ValueError, RecursionError) as error:
        raise SessionTypeError(f"flask.session[{name!r}]: a {type(value).__name__} cannot be stored: {error}") from None
    if not exact:
        raise SessionTypeError(
            f"flask.session[{name!r}]: the {type(value).__name__} would not read back as written "
            "(a dict with non-str keys?); nothing was written"
        )
    return text.encode("utf-8"), "tagged"


def _is_plain_json(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is (str keys, no tuples, JSON leaves only)."""
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value) and _only_json_types(value)
    except (TypeError, ValueError, RecursionError):
        return False


def _only_json_types(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(key, str) and _only_json_types(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_only_json_types(item) for item in value)
    return value is None or isinstance(value, (str, int, float)) and not isinstance(value, Markup)


def decode_value(raw: bytes, tag: str | None) -> Any:
    """The Python value of a stored field. A field written through ``request.session`` (no tag)
    reads as str (bytes when it is not UTF-8); a tag whose form the bytes do not have (the field
    was rewritten another way since) reads the same way, never as an error."""
    try:
        if tag == "none":
            return None
        if tag == "bool" and raw in (b"1", b"0"):
            return raw == b"1"
        if tag == "int":
            return int(raw)
        if tag == "float":
            number = float(raw)
            if math.isfinite(number) or raw.strip().lower() in (b"nan", b"inf", b"-inf"):
                return number
        if tag == "bytes":
            return raw
        if tag == "datetime":
            return datetime.fromisoformat(raw.decode("ascii"))
        if tag == "uuid":
            return uuid.UUID(raw.decode("ascii"))
        if tag == "markup":
            return Markup(raw.decode("utf-8"))
        if tag == "json":
            return json.loads(raw)
        if tag == "tagged":
            return _TAGGED.loads(raw.decode("utf-8"))
    except (ValueError, TypeError, KeyError, RecursionError):
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class ServerSideSession(SessionMixin):
    """``flask.session``: a dict of the session's fields, loaded on first access and saved, key by
    key, at the end of the request (see the module's docstring)."""

    def __init__(self, request_session: Any) -> None:
        #: Builds (or returns) the request's :class:`~redis_session.session.Session`: only on
        #: first access, so a request that never touches the session pays nothing.
        self._request_session = request_session
        self._values: dict[str, Any] | None = None
        #: The stored form of each field as loaded, to write back only what changed.
        self._stored: dict[str, tuple[bytes, str | None]] = {}
        self.accessed = False
        self.modified = False
        self.new = False
        #: What kept the session from loading (an outage: the response becomes a 503) or from
        #: saving (a value that cannot be stored: the request's 500); nothing is saved after it.
        self.failure: RedisSessionError | None = None
        #: Set once the view has returned its response (see RedisSessionInterface.open_session).
        self._response_built = False

    def response_built(self, response: flask.Response) -> flask.Response:
        """The view has returned: from now on an outage no longer raises (an ``after_request``
        function such as Flask-Login's reads the session of every request, and an exception
        there would turn the view's answer into a 500); the session reads as empty, and nothing
        is saved."""
        self._response_built = True
        return response

    @property
    def session(self) -> Session:
        """The typed view of the same session (``request.session``)."""
        session: Session = self._request_session()
        return session

    def _data(self) -> dict[str, Any]:
        values = self._values
        if values is None:
            self.accessed = True
            try:
                stored = self.session.load_stored()
            except SessionUnavailableError as error:
                self.failure, self._values = error, {}
                if self._response_built:
                    return self._values
                raise
            tags = {name[len(TYPE_TAG_PREFIX):]: raw.decode("ascii", "replace")
                    for name, raw in stored.items() if name.startswith(TYPE_TAG_PREFIX)}
            values = {}
            for name, raw in stored.items():
                if not name.startswith(RESERVED_PREFIX):
                    values[name] = decode_value(raw, tags.get(name))
                    self._stored[name] = (raw, tags.get(name))
            self.new = not stored
            self._values = values
        return values

    @property
    def loaded(self) -> bool:
        """Whether this request read the session through this view."""
        return self._values is not None

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._data()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        state = "not loaded" if self._values is None else f"{len(self._values)} keys"
        return f"<ServerSideSession {state}>"

    def changes(self) -> tuple[list[tuple[str, bytes, str | None]], list[str]]:
        """What to write back: ``(changed or new keys with their stored form, deleted keys)``.
        Every value is encoded again, so a change made in place is found too."""
        if self._values is None:
            return [], []
        written = []
        for name, value in self._values.items():
            encoded = encode_value(name, value)
            if self._stored.get(name) != encoded:
                written.append((name, *encoded))
        deleted = [name for name in self._stored if name not in self._values]
        return written, deleted

    def saved(self) -> None:
        """The changes are stored: what is held now is what the hash holds."""
        if self._values is not None:
            self._stored = {name: encode_value(name, value) for name, value in self._values.items()}

    def forget_stored(self) -> None:
        """The session this view was loaded from has ended (a logout): every key still held is
        new, and goes to the next session if the request keeps any."""
        self._stored = {}


class RedisSessionInterface(SessionInterface):
    """Makes ``flask.session`` a :class:`ServerSideSession` of the request's session. Installed by
    ``setup_session(app, flask_session=True)``; saving, and every cookie change of either view,
    happen in :meth:`save_session` (after every ``after_request`` function)."""

    def open_session(self, app: flask.Flask, request: flask.Request) -> SessionMixin:
        """A view of ``request``'s session that reads nothing until it is first used."""
        from .flask_session import request_session_of

        view = ServerSideSession(lambda: request_session_of(request, app))
        if flask.has_request_context() and flask.request._get_current_object() is request:  # type: ignore[attr-defined]
            flask.after_this_request(view.response_built)  # runs before the app's after_request functions
        return view

    def save_session(self, app: flask.Flask, session: SessionMixin, response: flask.Response) -> None:
        """Write the keys the request changed, then apply what either view asked of the cookie."""
        from .flask_session import finish_response

        finish_response(app, flask.request._get_current_object(), response,  # type: ignore[attr-defined]
                        session if isinstance(session, ServerSideSession) else None)
