"""What every session operation does, once, without any I/O.

Each operation of :class:`SessionCore` is a generator of store calls (see
:mod:`redis_session.operation`). The blocking :class:`~redis_session.session.Session` runs it
with blocking calls, the :class:`~redis_session.aio.AsyncSession` with ``await``; neither knows
what an operation does. Lazy creation, the no-resurrection rule, limits, encoding and the cookie
changes live here only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from . import user_index
from .errors import RedisSessionError, SessionLimitError, SessionStateError, SessionValueError
from .identity import check_name, check_user_id, fingerprint, new_session_id, seal, unseal, user_digest
from .operation import CookieSink, Number, Operation
from .protocol import (
    CREATED_FIELD,
    HASHED_ID_LENGTH,
    PLAIN_READ,
    RESERVED_PREFIX,
    USER_FIELD,
    Call,
    Opening,
    Status,
    moved_mark_key,
    session_key,
    storage_name,
    stored_session_key,
)
from .settings import SessionSettings
from .value import ABSENT, Value, encode, encode_amount, encode_flash

logger = logging.getLogger("redis_session")

#: How long after setting a session's TTL a request skips setting it again (see _ttl_needed).
FRESH_SECONDS = 1.0
#: How many freshly minted ids may all be taken before the random source is declared broken.
MINT_ATTEMPTS = 3
#: How long the mark ``regenerate()`` leaves where a session was lasts: a double-submitted
#: login arrives within seconds.
MOVED_MARK_SECONDS = 60


class SessionCore:
    """The state of one request's session and the operations that act on it."""

    __slots__ = ("settings", "cookie", "session_id", "_key", "_fresh_until", "asked", "_stored_by_id", "_superseded")

    def __init__(self, settings: SessionSettings, session_id: str | None, cookie: CookieSink) -> None:
        self.settings = settings
        self.cookie = cookie
        self.session_id = session_id
        self._key = session_key(settings.prefix, session_id) if session_id else ""
        #: Until then the TTL this request last set is as good as new (see _ttl_needed).
        self._fresh_until = 0.0
        #: True once a call about the current id went to Redis. A session that is still held
        #: after that exists: every call that finds it gone forgets the id.
        self.asked = False
        #: The session is stored under its id (an older release's, or 0.2.1's): its first use
        #: moves it to a new id stored under a digest (see _move_to_hashed_key).
        self._stored_by_id = bool(settings.hash_ids and session_id and len(session_id) != HASHED_ID_LENGTH)
        #: A concurrent request regenerated this session first (see regenerate): this one must
        #: not start a second session in its place.
        self._superseded = False

    # -- building blocks -------------------------------------------------------------------

    def _ttl_needed(self) -> bool:
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

    def _call(self, script: str, *args: Any, idempotent: bool = True, more_keys: tuple[str, ...] = ()) -> Call:
        """A script call on the session the request holds (it refreshes the TTL if due)."""
        opening = Opening.EXISTING if self._ttl_needed() else Opening.EXISTING_FRESH
        return self._script(script, opening, *args, idempotent=idempotent, more_keys=more_keys)

    def _script(self, script: str, opening: str, *args: Any, idempotent: bool = True, more_keys: tuple[str, ...] = ()) -> Call:
        self.asked = True
        settings = self.settings
        return Call(script, self._key, (settings.expire, settings.max_lifetime, opening, *args), idempotent, more_keys)

    def _read_call(self, what: str, *names: str) -> Call:
        """A read of the session the request holds: a plain pipeline (EXPIRE + the read, or the
        read alone when the TTL is fresh) unless an absolute lifetime needs the script."""
        if self.settings.max_lifetime:
            return self._script("read", Opening.EXISTING, what, *names)
        self.asked = True
        return Call(PLAIN_READ, self._key, (self.settings.expire if self._ttl_needed() else 0, what, *names), True)

    def _use(self, session_id: str | None) -> None:
        self.session_id = session_id
        self._key = session_key(self.settings.prefix, session_id) if session_id else ""
        self._fresh_until = 0.0
        self.asked = False

    def _forget(self, status: int) -> None:
        """The id the client sent names no usable session: drop it so it is never revived.

        The cookie of a session that is gone stays as it is: a concurrent request may have just
        moved the session (a login in another tab, a page loading beside the login form) and sent
        the new cookie, which this response must not expire. A key that is not a hash is damaged,
        and the cookie that names it goes."""
        if status == Status.CORRUPT:
            logger.warning(
                "session %s: the key %s:sessions:<id> is not a hash; starting a new session",
                fingerprint(self.session_id or ""), self.settings.prefix,
            )
            self._end()
        else:
            self._use(None)

    def _end(self) -> None:
        self._use(None)
        self.cookie.expire()

    def _check_status(self, reply: Any, field: str = "") -> None:
        """Raise for a status that is an error; return for OK and for the ones that mean "gone"."""
        status = reply[0]
        if status == Status.TOO_MANY_FIELDS:
            raise SessionLimitError(
                f"session field {field!r}: the session already holds the maximum of "
                f"{self.settings.max_fields} fields (session-max-fields); nothing was written"
                if field else
                f"this write would take the session past {self.settings.max_fields} fields "
                "(session-max-fields); nothing was written"
            )
        if status == Status.TOO_BIG:
            raise SessionLimitError(
                f"session field {field!r}: this write would take the session past {self.settings.max_session_bytes} "
                "bytes of field names and values (session-max-session-bytes); nothing was written"
                if field else
                f"this write would take the session past {self.settings.max_session_bytes} bytes of field names "
                "and values (session-max-session-bytes); nothing was written"
            )
        if status == Status.FIELD_ERROR:
            message = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else str(reply[1])
            raise SessionValueError(f"session field {field!r}: incr() failed: {message}")
        if status not in (Status.OK, Status.GONE, Status.CORRUPT, Status.TAKEN, Status.MOVED):
            raise RedisSessionError(f"unexpected reply from the session store: {reply!r}")

    def _writable_name(self, name: str) -> str:
        """A field name that may be written: valid, and within session-max-name-bytes."""
        check_name(name)
        size = len(name) if name.isascii() else len(name.encode("utf-8"))
        if size > self.settings.max_name_bytes:
            raise SessionLimitError(
                f"session field {name[:40]!r}...: a name of {size} bytes is over the limit of "
                f"{self.settings.max_name_bytes} (session-max-name-bytes); nothing was written"
            )
        return name

    def _encode(self, name: str, value: Any) -> bytes | None:
        data = encode(self._writable_name(name), value)
        if data is not None and len(data) > self.settings.max_value_bytes:
            raise SessionLimitError(
                f"session field {name!r}: {len(data)} bytes is over the limit of "
                f"{self.settings.max_value_bytes} (session-max-value-bytes); nothing was written"
            )
        return data

    def _create(self, action: str, script: str, *args: Any, idempotent: bool = True) -> Operation[Any]:
        """Mint an id and run ``script`` against the new key; send the cookie once it exists."""
        if self._superseded:
            raise SessionStateError(
                f"cannot {action} here: a concurrent request has just regenerated this session (its new cookie "
                "is on its way to the browser), and a second session would replace it; nothing was written"
            )
        self.cookie.check_can_change(action, issuing=True)
        for _ in range(MINT_ATTEMPTS):
            self._use(new_session_id(self.settings.hash_ids))
            self._ttl_needed()  # the new key gets its TTL in this very call: later ones may skip it
            reply = yield self._script(script, Opening.NEW, *args, idempotent=idempotent)
            if reply[0] == Status.OK:
                self.cookie.issue(self.session_id or "")
                return reply
            self._use(None)  # the script created nothing (or deleted what it created)
            self._check_status(reply)
        raise RedisSessionError(f"{MINT_ATTEMPTS} freshly minted session ids were all taken; check the random source")

    def _user_of(self, raw: bytes | None) -> str | None:
        return user_index.user_of(raw, self.session_id or "")

    def _move_to_hashed_key(self) -> Operation[None]:
        """On its first use, a session stored under its id (an older release's, or 0.2.1's) moves
        to a new id stored under that id's digest: regenerate()'s take-then-copy, so no field is
        lost, no second live copy exists (on a cluster too, where the keys sit in different
        slots), and the user index follows. The old id, which sat in Redis in the clear (keys,
        MONITOR, backups), stops working. When the response can no longer take the new cookie
        the session is used where it is, this once."""
        self._stored_by_id = False
        try:
            self.cookie.check_can_change("move the session to its hashed key", issuing=True)
        except SessionStateError:
            return None
        yield from self.regenerate()
        return None

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
        if self._stored_by_id:
            yield from self._move_to_hashed_key()
        if self.session_id is None:
            return {}
        reply = yield self._read_call("all")
        if reply[0] != Status.OK:
            self._forget(reply[0])
            return {}
        fields: dict[str, Value] = {}
        for raw_name, raw in _items(reply[1]):
            name = raw_name.decode("utf-8", "surrogateescape")
            if not name.startswith(RESERVED_PREFIX):
                fields[name] = Value(raw)
        return fields

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
        incoming = 0
        for name, value in values:
            data = self._encode(name, value)
            if data is None:
                deletes.append(name)
            else:
                pairs.extend((name, data))
                incoming += len(name) + len(data)
        settings = self.settings
        max_fields = settings.max_fields
        if len(pairs) // 2 > max_fields:
            raise SessionLimitError(
                f"{len(pairs) // 2} fields in one write is over the limit of {max_fields} "
                "(session-max-fields); nothing was written"
            )
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

    # -- lifecycle -------------------------------------------------------------------------

    def destroy(self) -> Operation[None]:
        """Delete the session and expire its cookie; a later write starts a new session."""
        self.cookie.check_can_change("destroy the session", issuing=False)
        if self.session_id is not None:
            old_id = self.session_id
            reply = yield Call("destroy", self._key, ("", "0"), True)
            user = self._user_of(reply[1]) if reply[0] == Status.OK else None
            if user is not None:
                yield from user_index.unlist(self.settings, user, storage_name(old_id))
        self._end()
        return None

    def regenerate(self, user_id: str | None = None) -> Operation[None]:
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
            self.cookie.check_can_change("bind a user" if user_id is not None else "regenerate the session", issuing=True)
        self._stored_by_id = False
        settings = self.settings
        pairs: list[bytes] = []
        old_id = self.session_id
        new_id = new_session_id(settings.hash_ids)  # before the take: its mark says where the session went
        if old_id is not None:
            mark = f"{user_digest(user_id) if user_id is not None else ''}:{seal(new_id, old_id)}"
            reply = yield self._call("take", mark, MOVED_MARK_SECONDS, idempotent=False, more_keys=(moved_mark_key(self._key),))
            if reply[0] == Status.OK:
                pairs = list(reply[1])
            elif reply[0] == Status.MOVED:
                if self._follow(reply[1], old_id, user_id):
                    return None
                if user_id is None:
                    return None  # see _follow: this request leaves the cookie (and the session) alone
                old_id = None  # another user signs in here: a session of its own
            else:
                self._forget(reply[0])
                old_id = None
        old_user = self._user_of(_field(pairs, USER_FIELD))
        if user_id is not None:
            pairs = _without(pairs, USER_FIELD) + [USER_FIELD.encode(), user_id.encode("utf-8")]
        if not pairs:
            return None
        new_user = user_id if user_id is not None else old_user
        replacing = storage_name(old_id) if old_id is not None and old_user == new_user else None
        evicted: list[str] = []
        for attempt in range(MINT_ATTEMPTS):
            self._use(new_id if attempt == 0 else new_session_id(settings.hash_ids))
            new_id = self.session_id or ""
            if new_user is not None:
                evicted.extend((yield from user_index.list_pending(settings, new_user, storage_name(new_id), replacing)))
            copied = yield self._script("copy", Opening.COPY, *pairs)
            if copied[0] != Status.TAKEN:
                break
            if new_user is not None:
                yield from user_index.unlist(settings, new_user, storage_name(new_id))
        else:
            raise RedisSessionError(f"{MINT_ATTEMPTS} freshly minted session ids were all taken; check the random source")
        for member in evicted:
            yield Call("destroy", stored_session_key(settings.prefix, member), ("", "0"), True)
        if old_user is not None and old_id is not None and replacing is None:
            yield from user_index.unlist(settings, old_user, storage_name(old_id))
        if copied[0] != Status.OK:  # the absolute deadline had passed: the session ends here
            if new_user is not None:
                yield from user_index.unlist(settings, new_user, storage_name(new_id))
            self._end()
            return None
        if new_user is not None:
            listed = yield from user_index.confirm(settings, new_user, storage_name(new_id), replacing)
            if not listed:
                logger.warning(
                    "session %s: its user's sessions were revoked while it was being bound; ending it",
                    fingerprint(new_id),
                )
                yield Call("destroy", self._key, ("", "0"), True)
                self._end()
                return None
        self.cookie.issue(new_id)
        return None

    def _follow(self, mark: bytes, old_id: str, user_id: str | None) -> bool:
        """A concurrent request regenerated this session a moment ago (``take`` found its mark).

        When both bind the same user (a double-submitted login), this request follows the
        session to its new id, so the user ends up with exactly one live session whichever
        response arrives last; returns ``True``. Otherwise (a plain regenerate, or a different
        user) nothing is followed: following on a bare old id would hand the new session to
        whoever planted the old one (session fixation). The request then leaves the cookie
        alone (the winner's is on its way) and starts no second session (see _create)."""
        self._use(None)
        user_mark, _, sealed = mark.decode("ascii", "replace").partition(":")
        if user_id is not None and user_mark == user_digest(user_id):
            new_id = unseal(sealed, old_id)
            if new_id is not None:
                self._use(new_id)
                self.cookie.issue(new_id)
                return True
        self._superseded = user_id is None
        return False


def _items(data: Any) -> Iterable[tuple[bytes, bytes]]:
    """The (name, value) pairs of a whole hash: a dict from a pipeline, a flat list from a script."""
    if isinstance(data, dict):
        return data.items()
    return zip(data[0::2], data[1::2])


def _field(pairs: list[bytes], name: str) -> bytes | None:
    wanted = name.encode()
    for index in range(0, len(pairs) - 1, 2):
        if pairs[index] == wanted:
            return pairs[index + 1]
    return None


def _without(pairs: list[bytes], name: str) -> list[bytes]:
    wanted = name.encode()
    kept: list[bytes] = []
    for index in range(0, len(pairs) - 1, 2):
        if pairs[index] != wanted:
            kept.extend(pairs[index:index + 2])
    return kept
