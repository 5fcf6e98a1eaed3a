"""The state of one request's session, and the building blocks every operation is made of.

:class:`SessionState` holds what a request knows of its session (the id, its key, whether Redis
was asked, when the TTL was last set) and turns that into store calls: a script call that
refreshes the TTL only when due, a plain read pipeline, id minting for a new session, the
meaning of each status a script returns. The operations themselves are in
:mod:`redis_session.lifecycle` (ending and moving a session) and :mod:`redis_session.core`
(reads and writes).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import user_index
from .errors import RedisSessionError, SessionConflictError, SessionLimitError, SessionValueError
from .identity import check_name, fingerprint, new_session_id
from .operation import CookieSink, Operation
from .protocol import HASHED_ID_LENGTH, PLAIN_READ, Call, Opening, Status, session_key
from .settings import SessionSettings
from .value import encode

logger = logging.getLogger("redis_session")

#: How long after setting a session's TTL a request skips setting it again (see _ttl_needed).
FRESH_SECONDS = 1.0
#: How many freshly minted ids may all be taken before the random source is declared broken.
MINT_ATTEMPTS = 3


class SessionState:
    """What one request knows of its session, and the calls that act on it."""

    __slots__ = ("settings", "cookie", "session_id", "_key", "_fresh_until", "asked", "_stored_by_id", "_superseded",
                 "view_tags")

    def __init__(self, settings: SessionSettings, session_id: str | None, cookie: CookieSink,
                 view_tags: bool = False) -> None:
        self.settings = settings
        #: ``flask.session`` shares this hash and tags the types of what it stores: a write here
        #: drops the tag of each field it writes (see redis_session.flask_view).
        self.view_tags = view_tags
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
        if data is not None:
            self._check_value_size(name, data)
        return data

    def _check_value_size(self, name: str, data: bytes) -> None:
        if len(data) > self.settings.max_value_bytes:
            raise SessionLimitError(
                f"session field {name!r}: {len(data)} bytes is over the limit of "
                f"{self.settings.max_value_bytes} (session-max-value-bytes); nothing was written"
            )

    def _create(self, action: str, script: str, *args: Any, idempotent: bool = True) -> Operation[Any]:
        """Mint an id and run ``script`` against the new key; send the cookie once it exists."""
        if self._superseded:
            raise SessionConflictError(
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
