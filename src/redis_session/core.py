"""What every session operation does, once, without any I/O.

Each operation of :class:`SessionCore` is a generator of store calls (see
:mod:`redis_session.operation`). The blocking :class:`~redis_session.session.Session` runs it
with blocking calls, the :class:`~redis_session.aio.AsyncSession` with ``await``; neither knows
what an operation does. Reads and writes are here; ending and moving a session in
:mod:`redis_session.lifecycle`; the state they share and the calls they are made of in
:mod:`redis_session.session_state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import SessionLimitError
from .identity import check_name
from .lifecycle import SessionLifecycle
from .operation import Number, Operation
from .protocol import CREATED_FIELD, RESERVED_PREFIX, TYPE_TAG_PREFIX, USER_FIELD, Status, session_handle
from .value import ABSENT, Value, encode_amount, encode_flash


class SessionCore(SessionLifecycle):
    """The state of one request's session and the operations that act on it."""

    __slots__ = ()

    # -- reads -----------------------------------------------------------------------------

    def read(self, names: tuple[str, ...]) -> Operation[list[Value]]:
        """Values of ``names`` (absent fields as ``Value(None)``), in one round trip."""
        for name in names:
            check_name(name)
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None or not names:
            return [ABSENT] * len(names)
        reply = yield self._read_call("fields", *names)
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return [ABSENT] * len(names)
        return [ABSENT if raw is None else Value(raw) for raw in reply[1]]

    def read_all(self) -> Operation[dict[str, Value]]:
        """``{name: Value}`` of every user field, in one round trip."""
        stored = yield from self.read_stored()
        return {name: Value(raw) for name, raw in stored.items() if not name.startswith(RESERVED_PREFIX)}

    def read_stored(self) -> Operation[dict[str, bytes]]:
        """Every field as stored, the library's own included (one round trip): what a view with
        an encoding of its own (``flask.session``) decodes itself."""
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None:
            return {}
        reply = yield self._read_call("all")
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return {}
        return {raw_name.decode("utf-8", "surrogateescape"): raw for raw_name, raw in _items(reply[1])}

    def names(self) -> Operation[list[str]]:
        """Names of every user field, in one round trip."""
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None:
            return []
        reply = yield self._read_call("names")
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return []
        decoded = (raw.decode("utf-8", "surrogateescape") for raw in reply[1])
        return [name for name in decoded if not name.startswith(RESERVED_PREFIX)]

    def user_id(self) -> Operation[str | None]:
        """The user this session is bound to, or ``None``."""
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None:
            return None
        reply = yield self._read_call("fields", USER_FIELD)
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return None
        return self._user_of(reply[1][0])

    def touch(self) -> Operation[None]:
        """Restart the idle timer now, in one round trip, even if this request just did (the
        call redis-session 0.2.1 users know). A session that is gone is forgotten."""
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None:
            return None
        self._fresh_until = 0.0
        reply = yield self._read_call("fields", CREATED_FIELD)
        if reply[0] != Status.OK:
            self._forget(reply[0])
        return None

    # -- writes ----------------------------------------------------------------------------

    def write(self, values: Iterable[tuple[str, Any]], clear: bool = False) -> Operation[None]:
        """Set (or, for ``None``, delete) fields in one round trip; ``clear`` drops the rest first.

        Every value is encoded and checked before Redis is touched, so a bad one writes nothing.
        A write to a session that is gone starts a new session (it never revives the old one);
        deleting from, or clearing, a session that does not exist does nothing.
        """
        pairs: list[Any] = []
        deletes: list[str] = []
        for name, value in values:
            data = self._encode(name, value)
            if data is None:
                deletes.append(name)
            else:
                pairs.extend((name, data))
            if self.view_tags:  # what flask.session stored there is replaced
                deletes.append(TYPE_TAG_PREFIX + name)
        return (yield from self._write_encoded(pairs, deletes, clear))

    def write_encoded(self, values: Iterable[tuple[str, bytes, str | None]], deletes: Iterable[str]) -> Operation[None]:
        """Write values a view encoded itself (``flask.session``), each with the tag of its type
        (``None``: text), and delete fields, in one round trip, by the rules of :meth:`write`."""
        pairs: list[Any] = []
        removed: list[str] = []
        for name, data, tag in values:
            self._writable_name(name)
            self._check_value_size(name, data)
            pairs.extend((name, data))
            if tag is None:
                removed.append(TYPE_TAG_PREFIX + name)
            else:
                pairs.extend((TYPE_TAG_PREFIX + name, tag))
        for name in deletes:
            removed.extend((check_name(name), TYPE_TAG_PREFIX + name))
        return (yield from self._write_encoded(pairs, removed, False))

    def _write_encoded(self, pairs: list[Any], deletes: list[str], clear: bool) -> Operation[None]:
        settings = self.settings
        max_fields = settings.max_fields
        if len(pairs) // 2 > max_fields:
            raise SessionLimitError(
                f"{len(pairs) // 2} fields in one write is over the limit of {max_fields} "
                "(session-max-fields); nothing was written"
            )
        incoming = sum(len(item) for item in pairs)
        if incoming > settings.max_session_bytes:  # could never fit, whatever the session holds
            raise SessionLimitError(
                f"{incoming} bytes of field names and values in one write is over the limit of "
                f"{settings.max_session_bytes} (session-max-session-bytes); nothing was written"
            )
        if not pairs and not deletes and not clear:
            return None  # an empty update(): nothing to send
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is not None:
            reply = yield self._call(
                "write", max_fields, settings.max_session_bytes, "1" if clear else "0", len(pairs) // 2, *pairs, *deletes
            )
            if reply[0] == Status.OK:
                return None
            self._check_status(reply, pairs[0] if len(pairs) == 2 else "")
            self._forget(reply[0])
        if pairs:
            yield from self._create("start a session", "write", max_fields, settings.max_session_bytes, "0", len(pairs) // 2, *pairs)
        return None

    def incr(self, name: str, amount: Number = 1) -> Operation[Number]:
        """Add ``amount`` to an integer (or, for a float amount, numeric) field atomically."""
        argument, kind = encode_amount(self._writable_name(name), amount)
        args = (self.settings.max_fields, self.settings.max_session_bytes, name, argument, kind)
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is not None:
            reply = yield self._call("incr", *args, idempotent=False)
            if reply[0] != Status.OK:
                self._check_status(reply, name)
                self._forget(reply[0])
        if self.session_id is None:
            reply = yield from self._create("start a session", "incr", *args, idempotent=False)
        return int(reply[1]) if kind == "int" else float(reply[1])

    def flash(self, message: str, category: str) -> Operation[None]:
        """Queue a message for a later request (it survives redirects: it is in Redis)."""
        data = encode_flash(message, category)
        # What is stored is "category\0message": both count against the per-value limit.
        if len(data) > self.settings.max_value_bytes:
            raise SessionLimitError(
                f"a flash message of {len(data)} bytes with its category is over the limit of "
                f"{self.settings.max_value_bytes} (session-max-value-bytes); nothing was written"
            )
        args = (self.settings.max_fields, self.settings.max_session_bytes, data)
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is not None:
            reply = yield self._call("flash", *args, idempotent=False)
            if reply[0] == Status.OK:
                return None
            if reply[0] == Status.TOO_MANY_FIELDS:
                raise SessionLimitError(
                    f"{self.settings.max_fields} flash messages are already waiting (session-max-fields); "
                    "nothing was written"
                )
            self._check_status(reply)
            self._forget(reply[0])
        yield from self._create("flash a message", "flash", *args, idempotent=False)
        return None

    def flashes(self, categories: tuple[str, ...] | None) -> Operation[list[tuple[str, str]]]:
        """Pop waiting messages (all, or those of ``categories``) as ``[(category, message), ...]``."""
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None or categories == ():
            return []  # no session, or an empty list of categories: nothing can match
        reply = yield self._call("flashes", *(categories or ()), idempotent=False)
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return []
        flat = reply[1]
        return [
            (flat[index].decode("utf-8", "replace"), flat[index + 1].decode("utf-8", "replace"))
            for index in range(0, len(flat), 2)
        ]


def _items(data: Any) -> Iterable[tuple[bytes, bytes]]:
    """The (name, value) pairs of a whole hash: a dict from a pipeline, a flat list from a script."""
    if isinstance(data, dict):
        return data.items()
    return zip(data[0::2], data[1::2])


class CoreFacts:
    """What :class:`~redis_session.session.Session` and :class:`~redis_session.aio.AsyncSession`
    both say about their core without asking Redis: written once, so the two cannot drift."""

    __slots__ = ()
    _core: SessionCore

    @property
    def session_id(self) -> str | None:
        """The current id, or ``None`` until the first write creates the session."""
        return self._core.session_id

    @property
    def handle(self) -> str | None:
        """The session's public name (what ``sessions_for_user`` lists and ``revoke`` takes), or
        ``None`` without a session: a one-way digest of the id, safe to show and post back."""
        return session_handle(self._core.session_id) if self._core.session_id else None

    @property
    def known_to_exist(self) -> bool:
        """Whether this request has asked Redis about the current session and found it there."""
        return self._core.asked and self._core.session_id is not None
