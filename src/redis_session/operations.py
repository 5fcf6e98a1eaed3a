"""Session semantics without I/O: every operation is a generator that yields
:class:`~redis_session.store.Call` objects and receives their Redis replies.

The asyncio session drives these generators with ``await``; the sync
:class:`~redis_session.session.Session` drives them with blocking calls, except that for the
common one-round-trip cases (read, write, incr of an existing session) it runs the two plain
steps each generator is built from (``fields_call``/``fields_of``, ``write_call``/``written``,
``incr_call``/``incremented``) itself. Lazy creation, the no-resurrection rule, limits and
encoding exist exactly once.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Generator, Iterable, List, Mapping, Optional, Protocol, Tuple, TypeVar, Union

from .errors import RedisSessionError, SessionLimitError, SessionTypeError, SessionValueError
from .identity import check_name, check_user_id, fingerprint, new_session_id
from .pipelines import PLAIN_READ
from .scripts import RESERVED_PREFIX, USER_FIELD
from .settings import SessionSettings
from .store import Call, session_key
from .user_index import confirm, list_pending, unlist, user_of
from .value import ABSENT, Value, encode, is_finite_number

logger = logging.getLogger("redis_session")

OK, GONE, TAKEN, TOO_MANY_FIELDS, FIELD_ERROR, CORRUPT = 1, 0, -1, -2, -3, -4
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: How long after setting a session's TTL a request skips setting it again (see _sets_ttl).
FRESH_SECONDS = 1.0
T = TypeVar("T")
#: A session operation: yields store calls, receives their replies, returns a T.
Operation = Generator[Call, Any, T]
Number = Union[int, float]
# Call(...) runs a Python-level __new__; tuple.__new__ builds the same Call in half the
# instructions, and every session operation builds one.
_new_tuple = tuple.__new__


class CookieSink(Protocol):
    """What the web glue does when the session id changes (the core never sees a response).

    A sink may set ``can_issue = False`` (a WebSocket, which cannot set cookies): the session is
    then never created or given a new id, since no browser could learn the id.
    """

    def issue(self, session_id: str) -> None:
        """Send a cookie carrying ``session_id``."""

    def expire(self) -> None:
        """Tell the browser to drop the session cookie."""


class SessionCore:
    """The state of one request's session and the generators that act on it."""

    __slots__ = ("settings", "cookie", "session_id", "_key", "_fresh_until")

    def __init__(self, settings: SessionSettings, session_id: Optional[str], cookie: CookieSink) -> None:
        self.settings = settings
        self.cookie = cookie
        self.session_id = session_id
        self._key = session_key(settings.prefix, session_id) if session_id else ""
        #: Until then the TTL this request last set is as good as new (see _sets_ttl).
        self._fresh_until = 0.0

    # -- building blocks -------------------------------------------------------------------

    def _sets_ttl(self) -> bool:
        """Whether the next call must set the session's TTL.

        Every access restarts the idle timer, but a request that has just set it (its previous
        call, less than FRESH_SECONDS ago) would only set it again to the same value: a page
        reading three fields pays for one EXPIRE, not three. With an absolute lifetime every
        call computes the TTL in a script anyway.
        """
        now = time.monotonic()
        if now < self._fresh_until:
            return False
        if not self.settings.max_lifetime:
            self._fresh_until = now + min(FRESH_SECONDS, self.settings.expire / 10)
        return True

    def _call(self, script: str, mode: str, *args: Any, idempotent: bool = True) -> Call:
        settings = self.settings
        if mode == "old":
            if not self._sets_ttl():
                mode = "warm"  # the script checks that the session exists, but leaves its TTL alone
        elif mode == "new":
            self._sets_ttl()  # the new key gets its TTL in this call
        return _new_tuple(Call, (script, self._key, (settings.expire, settings.max_lifetime, mode) + args, idempotent))

    def read_call(self, what: str, *names: str) -> Call:
        """The call reading ``what`` of the current session (the caller knows there is one): a
        plain pipeline (EXPIRE + the read, or the read alone when the TTL is fresh) unless an
        absolute lifetime makes the TTL need a script."""
        settings = self.settings
        if settings.max_lifetime:
            return _new_tuple(Call, ("read", self._key, (settings.expire, settings.max_lifetime, "old", what) + names, True))
        return _new_tuple(Call, (PLAIN_READ, self._key, (settings.expire if self._sets_ttl() else 0, what) + names, True))

    def _mint(self) -> None:
        self.session_id = new_session_id()
        self._key = session_key(self.settings.prefix, self.session_id)
        self._fresh_until = 0.0

    def _forget(self, status: int) -> None:
        """The id the client sent names no usable session: drop it so it is never revived."""
        if status == CORRUPT:
            logger.warning(
                "session %s: the key %s:sessions:<id> is not a hash; starting a new session",
                fingerprint(self.session_id or ""), self.settings.prefix,
            )
        self.session_id = None
        self._key = ""
        self._fresh_until = 0.0
        self.cookie.expire()

    def _check_status(self, reply: Any, field: str = "") -> None:
        status = reply[0]
        if status == TOO_MANY_FIELDS:
            raise SessionLimitError(
                f"session field {field!r}: the session already holds the maximum of "
                f"{self.settings.max_fields} fields (session-max-fields); nothing was written"
                if field else
                f"this write would take the session past {self.settings.max_fields} fields "
                "(session-max-fields); nothing was written"
            )
        if status == FIELD_ERROR:
            message = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else str(reply[1])
            raise SessionValueError(f"session field {field!r}: incr() failed: {message}")
        if status not in (OK, GONE, CORRUPT, TAKEN):
            raise RedisSessionError(f"unexpected reply from the session store: {reply!r}")

    def _encode(self, name: str, value: Any) -> Optional[bytes]:
        data = encode(check_name(name), value)
        if data is not None and len(data) > self.settings.max_value_bytes:
            raise SessionLimitError(
                f"session field {name!r}: {len(data)} bytes is over the limit of "
                f"{self.settings.max_value_bytes} (session-max-value-bytes); nothing was written"
            )
        return data

    # -- reads -----------------------------------------------------------------------------
    #
    # The operations that usually take one round trip are built from two plain steps, the call
    # to send and what its reply means, so the blocking session runs the common case without
    # driving a generator (callgrind: a generator round costs as much as the steps themselves).
    # The generators compose the very same steps for every other case and driver.

    def fields_call(self, names: Tuple[str, ...]) -> Optional[Call]:
        """The call reading ``names``, or ``None`` when there is no session (all are absent)."""
        for name in names:
            check_name(name)
        if self.session_id is None or not names:
            return None
        return self.read_call("fields", *names)

    def fields_of(self, reply: Any, count: int) -> List[Value]:
        """The Values of a ``fields_call`` reply (all absent when the session is gone)."""
        if reply[0] != OK:
            self._forget(reply[0])
            return [ABSENT] * count
        return [ABSENT if raw is None else Value(raw) for raw in reply[1]]

    def read(self, names: Tuple[str, ...]) -> Operation[List[Value]]:
        """Values of ``names`` (absent fields as ``Value(None)``)."""
        call = self.fields_call(names)
        if call is None:
            return [ABSENT] * len(names)
        return self.fields_of((yield call), len(names))

    def read_all(self) -> Operation[Dict[str, Value]]:
        """``{name: Value}`` of every user field, in one round trip."""
        if self.session_id is None:
            return {}
        reply = yield self.read_call("all")
        if reply[0] != OK:
            self._forget(reply[0])
            return {}
        fields: Dict[str, Value] = {}
        for raw_name, raw in _items(reply[1]):
            name = raw_name.decode("utf-8", "surrogateescape")
            if not name.startswith(RESERVED_PREFIX):
                fields[name] = Value(raw)
        return fields

    def names(self) -> Operation[List[str]]:
        """Names of every user field."""
        if self.session_id is None:
            return []
        reply = yield self.read_call("names")
        if reply[0] != OK:
            self._forget(reply[0])
            return []
        decoded = (raw.decode("utf-8", "surrogateescape") for raw in reply[1])
        return [name for name in decoded if not name.startswith(RESERVED_PREFIX)]

    # -- writes ----------------------------------------------------------------------------

    def encode_values(self, values: Iterable[Tuple[str, Any]]) -> Tuple[List[Any], List[str]]:
        """``([name, data, ...], [deleted name, ...])`` for a write, every value encoded and
        checked first, so a bad value raises before Redis is touched and nothing is written."""
        pairs: List[Any] = []
        deletes: List[str] = []
        for name, value in values:
            data = self._encode(name, value)
            if data is None:
                deletes.append(name)
            else:
                pairs.extend((name, data))
        if len(pairs) // 2 > self.settings.max_fields:
            raise SessionLimitError(
                f"{len(pairs) // 2} fields in one write is over the limit of {self.settings.max_fields} "
                "(session-max-fields); nothing was written"
            )
        return pairs, deletes

    def write_call(self, pairs: List[Any], deletes: List[str], clear: bool = False) -> Optional[Call]:
        """The write to the session the request holds, or ``None`` when it holds none."""
        if self.session_id is None:
            return None
        return self._call(
            "write", "old", self.settings.max_fields, "1" if clear else "0", len(pairs) // 2, *pairs, *deletes
        )

    def written(self, reply: Any, pairs: List[Any]) -> bool:
        """Whether a ``write_call`` landed; ``False`` when the session was gone (it is then
        forgotten: the write must go to a new session, see ``create_with``)."""
        if reply[0] == OK:
            return True
        self._check_status(reply, pairs[0] if len(pairs) == 2 else "")
        self._forget(reply[0])
        return False

    def create_with(self, pairs: List[Any]) -> Operation[None]:
        """Start a new session holding ``pairs`` (nothing to do without any: deleting from, or
        clearing, a session that does not exist)."""
        if pairs:
            yield from self._create("write", self.settings.max_fields, "0", len(pairs) // 2, *pairs)
        return None

    def write(self, values: Iterable[Tuple[str, Any]], clear: bool = False) -> Operation[None]:
        """Set (or, for ``None``, delete) fields in one round trip; ``clear`` drops the rest first."""
        pairs, deletes = self.encode_values(values)
        if not pairs and not deletes and not clear:
            return None  # an empty update(): nothing to send
        call = self.write_call(pairs, deletes, clear)
        if call is not None and self.written((yield call), pairs):
            return None
        yield from self.create_with(pairs)
        return None

    def incr_arguments(self, name: str, amount: Number) -> Tuple[str, str]:
        """``(amount as text, "int" | "float")`` for the incr script; refuses a bad amount."""
        check_name(name)
        if not is_finite_number(amount):
            raise SessionTypeError(f"session field {name!r}: incr() takes an int or finite float amount, got {amount!r}")
        if isinstance(amount, int):
            if not INT64_MIN <= amount <= INT64_MAX:
                raise SessionValueError(
                    f"session field {name!r}: incr() amount {amount} is outside the 64-bit range Redis counts in"
                )
            return str(amount), "int"
        return repr(amount), "float"

    def incr_call(self, name: str, argument: str, kind: str) -> Optional[Call]:
        """The incr of the session the request holds, or ``None`` when it holds none."""
        if self.session_id is None:
            return None
        return self._call("incr", "old", self.settings.max_fields, name, argument, kind, idempotent=False)

    def incremented(self, reply: Any, name: str, kind: str) -> Optional[Number]:
        """The new number of an ``incr_call``, or ``None`` when the session was gone (forgotten)."""
        if reply[0] == OK:
            return self._number(reply[1], kind)
        self._check_status(reply, name)
        self._forget(reply[0])
        return None

    def create_counting(self, name: str, argument: str, kind: str) -> Operation[Number]:
        """Start a new session whose field ``name`` holds ``argument``."""
        reply = yield from self._create("incr", self.settings.max_fields, name, argument, kind, idempotent=False)
        return self._number(reply[1], kind)

    def incr(self, name: str, amount: Number = 1) -> Operation[Number]:
        """Add ``amount`` to an integer (or, for a float amount, numeric) field atomically."""
        argument, kind = self.incr_arguments(name, amount)
        call = self.incr_call(name, argument, kind)
        if call is not None:
            number = self.incremented((yield call), name, kind)
            if number is not None:
                return number
        return (yield from self.create_counting(name, argument, kind))

    @staticmethod
    def _number(raw: Any, kind: str) -> Number:
        return int(raw) if kind == "int" else float(raw)

    def _check_can_issue(self, action: str) -> None:
        if not getattr(self.cookie, "can_issue", True):
            raise RedisSessionError(
                f"cannot {action} here: the new session id would have to be sent in a cookie, and a "
                "WebSocket cannot set cookies; create the session (or regenerate it) in an ordinary "
                "request, such as the page that opens the socket"
            )

    def _create(self, script: str, *args: Any, idempotent: bool = True) -> Operation[Any]:
        """Mint an id and run ``script`` against the new key; send the cookie once it exists."""
        self._check_can_issue("start a session")
        for _ in range(3):
            self._mint()
            reply = yield self._call(script, "new", *args, idempotent=idempotent)
            if reply[0] == OK:
                self.cookie.issue(self.session_id or "")
                return reply
            self._check_status(reply)
        raise RedisSessionError("three freshly minted session ids were all taken; check the random source")

    def destroy(self) -> Operation[None]:
        """Delete the session and expire its cookie; a later write starts a new session."""
        if self.session_id is not None:
            old_id = self.session_id
            reply = yield Call("destroy", self._key, (), True)
            user = self._user_of(reply[1])
            if user is not None:
                yield from unlist(self.settings, user, old_id)
        self.session_id = None
        self._key = ""
        self.cookie.expire()
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def regenerate(self, user_id: Optional[str] = None) -> Operation[None]:
        """Move the data to a new id and send the new cookie; with ``user_id`` also bind the
        session to that user. A session that does not exist yet is created only when binding a
        user; otherwise there is nothing to move.

        Order matters, because other requests (a logout, an admin's ``revoke_user``) may act on
        this session while it moves, and none of them may be undone:

        1. ``take``: read and delete the old key in one step (a later write by another request
           goes to a new session; a logout that came first leaves nothing to take);
        2. list the new id in the user's index *before* its key exists, so a concurrent
           ``revoke_user`` sees it;
        3. ``copy`` the fields to the new key (a second key, usually in another cluster slot:
           never ``RENAME``);
        4. ``confirm`` that the index still lists the new id; if a revoke removed it meanwhile,
           the new session is ended too.

        If Redis fails between 1 and 3 the session is lost, never duplicated or revived.
        """
        if user_id is not None:
            check_user_id(user_id)
        if self.session_id is not None or user_id is not None:
            self._check_can_issue("bind a user" if user_id is not None else "regenerate the session")
        pairs: List[bytes] = []
        old_id = self.session_id
        if old_id is not None:
            reply = yield self._call("take", "old", idempotent=False)
            if reply[0] == OK:
                pairs = list(reply[1])
            else:
                self._forget(reply[0])
                old_id = None
        old_user = self._user_of(_field(pairs, USER_FIELD))
        if user_id is not None:
            pairs = _without(pairs, USER_FIELD) + [USER_FIELD.encode(), user_id.encode("utf-8")]
        if not pairs:
            return None
        new_user = user_id if user_id is not None else old_user
        replacing = old_id if old_id is not None and old_user == new_user else None
        settings = self.settings
        evicted: List[str] = []
        for _ in range(3):
            self._mint()
            if new_user is not None:
                evicted.extend((yield from list_pending(settings, new_user, self.session_id or "", replacing)))
            copied = yield Call("copy", self._key, (settings.expire, settings.max_lifetime, "copy") + tuple(pairs), True)
            if copied[0] != TAKEN:
                break
            if new_user is not None:
                yield from unlist(settings, new_user, self.session_id or "")
        else:
            raise RedisSessionError("three freshly minted session ids were all taken; check the random source")
        new_id = self.session_id or ""
        for member in evicted:
            yield Call("destroy", session_key(settings.prefix, member), (), True)
        if old_user is not None and old_id is not None and replacing is None:
            yield from unlist(settings, old_user, old_id)
        if copied[0] != OK:  # the absolute deadline had passed: the session ends here
            if new_user is not None:
                yield from unlist(settings, new_user, new_id)
            self._end()
            return None
        if new_user is not None:
            listed = yield from confirm(settings, new_user, new_id, replacing)
            if not listed:
                logger.warning(
                    "session %s: its user's sessions were revoked while it was being bound; ending it",
                    fingerprint(new_id),
                )
                yield Call("destroy", self._key, (), True)
                self._end()
                return None
        self.cookie.issue(new_id)
        return None

    def _end(self) -> None:
        self.session_id, self._key = None, ""
        self.cookie.expire()

    def _user_of(self, raw: Optional[bytes]) -> Optional[str]:
        return user_of(raw, self.session_id or "")

    def user_id(self) -> Operation[Optional[str]]:
        """The user this session is bound to, or ``None``."""
        if self.session_id is None:
            return None
        reply = yield self.read_call("fields", USER_FIELD)
        if reply[0] != OK:
            self._forget(reply[0])
            return None
        return self._user_of(reply[1][0])

    def flash(self, message: str, category: str) -> Operation[None]:
        """Queue a message for a later request (it survives redirects: it is in Redis)."""
        if not isinstance(message, str) or not isinstance(category, str):
            raise SessionTypeError("flash() takes a str message and a str category")
        if "\0" in category or not category:
            raise SessionValueError(f"flash category {category!r} must be non-empty and hold no NUL character")
        data = message.encode("utf-8")
        # What is stored is "category\0message": both count against the per-value limit.
        stored = len(category.encode("utf-8")) + 1 + len(data)
        if stored > self.settings.max_value_bytes:
            raise SessionLimitError(
                f"a flash message of {stored} bytes with its category is over the limit of "
                f"{self.settings.max_value_bytes} (session-max-value-bytes); nothing was written"
            )
        args = (self.settings.max_fields, category, data)
        if self.session_id is not None:
            reply = yield self._call("flash", "old", *args, idempotent=False)
            if reply[0] == OK:
                return None
            self._check_flash(reply)
            self._forget(reply[0])
        yield from self._create("flash", *args, idempotent=False)
        return None

    def _check_flash(self, reply: Any) -> None:
        if reply[0] == TOO_MANY_FIELDS:
            raise SessionLimitError(
                f"{self.settings.max_fields} flash messages are already waiting (session-max-fields); "
                "nothing was written"
            )

    def flashes(self, categories: Optional[Tuple[str, ...]]) -> Operation[List[Tuple[str, str]]]:
        """Pop waiting messages (all, or those of ``categories``) as ``[(category, message), ...]``."""
        if self.session_id is None or categories == ():
            return []  # no session, or an empty list of categories: nothing can match
        reply = yield self._call("flashes", "old", *(categories or ()), idempotent=False)
        if reply[0] != OK:
            self._forget(reply[0])
            return []
        flat = reply[1]
        return [
            (flat[index].decode("utf-8", "replace"), flat[index + 1].decode("utf-8", "replace"))
            for index in range(0, len(flat), 2)
        ]


def _items(data: Any) -> Iterable[Tuple[bytes, bytes]]:
    """The (name, value) pairs of a whole hash: a dict from a pipeline, a flat list from a script."""
    if isinstance(data, dict):
        return data.items()
    return zip(data[0::2], data[1::2])


def _field(pairs: List[bytes], name: str) -> Optional[bytes]:
    wanted = name.encode()
    for index in range(0, len(pairs) - 1, 2):
        if pairs[index] == wanted:
            return pairs[index + 1]
    return None


def _without(pairs: List[bytes], name: str) -> List[bytes]:
    wanted = name.encode()
    kept: List[bytes] = []
    for index in range(0, len(pairs) - 1, 2):
        if pairs[index] != wanted:
            kept.extend(pairs[index:index + 2])
    return kept


def categories_of(category: Union[str, Iterable[str], None]) -> Optional[Tuple[str, ...]]:
    """``None`` (all), one category, or several (an empty list matches nothing)."""
    if category is None:
        return None
    if isinstance(category, str):
        return (category,)
    categories = tuple(category)
    for name in categories:
        if not isinstance(name, str):
            raise SessionTypeError(f"flash categories are str, got {type(name).__name__} {name!r}")
    return categories


def merge_updates(mapping: Optional[Mapping[str, Any]], keywords: Mapping[str, Any]) -> List[Tuple[str, Any]]:
    """``update()`` takes a mapping, keywords, or both (keywords win), like ``dict.update``."""
    merged: Dict[str, Any] = dict(mapping) if mapping is not None else {}
    merged.update(keywords)
    return list(merged.items())
