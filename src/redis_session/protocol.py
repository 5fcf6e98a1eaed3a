"""What the session core, the Lua scripts and the stores agree on: calls, keys, status codes.

It imports no client and no framework, so the core can say what each operation does without any
I/O, and the scripts, the pipelines and both stores read the same names. The status codes and the
reserved field names are written once, here: :mod:`redis_session.scripts` builds its Lua source
from them.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

#: One plain command of a ``COMMANDS`` call: ``(redis-py method name, arguments)``.
Command = tuple[str, tuple[Any, ...]]


class Call(NamedTuple):
    """One thing the core asks a store to run: a script, or one of the plain :data:`PIPELINES`."""

    script: str
    key: str
    args: tuple[Any, ...]
    #: Safe to send twice: a read or an absolute write. incr, flash and flashes are not, so a
    #: store never sends them again when it cannot tell whether the first one ran.
    idempotent: bool
    #: Further keys a script touches, all in ``key``'s cluster slot (see :func:`moved_mark_key`).
    more_keys: tuple[str, ...] = ()


class Status:
    """The first element of every script reply (plain ints: they are compared on every call)."""

    OK = 1
    #: The session does not exist (never did, expired, or was ended).
    GONE = 0
    #: A freshly minted id already names a key (the random source is broken, or an attack).
    TAKEN = -1
    #: The write would take the session past session-max-fields.
    TOO_MANY_FIELDS = -2
    #: ``incr()`` found a field Redis cannot add to; the reply's second element says why.
    FIELD_ERROR = -3
    #: The key holds something other than a hash.
    CORRUPT = -4
    #: ``take`` found no session, but the mark a concurrent regenerate of it left (see
    #: SessionCore.regenerate); the reply's second element is the mark.
    MOVED = -5
    #: The write would take the session past session-max-session-bytes.
    TOO_BIG = -6


#: Field names the library keeps for itself; user fields can never start with it, so
#: bookkeeping and user data cannot collide, and iteration hides it.
RESERVED_PREFIX = "__rs:"
CREATED_FIELD = RESERVED_PREFIX + "created"
USER_FIELD = RESERVED_PREFIX + "user"
FLASH_PREFIX = RESERVED_PREFIX + "flash:"
FLASH_SEQUENCE_FIELD = RESERVED_PREFIX + "flashseq"
#: ``TYPE_TAG_PREFIX + name``: the Python type ``flask.session`` stored in field ``name`` (see
#: :mod:`redis_session.flask_view`), for the types whose text does not say it.
TYPE_TAG_PREFIX = RESERVED_PREFIX + "t:"
#: An upper bound of the session's bytes (names and values of every other field), kept by the
#: scripts so session-max-session-bytes costs one HINCRBY per write (see scripts.PRELUDE).
SIZE_FIELD = RESERVED_PREFIX + "size"

#: Calls that stores run as plain commands instead of scripts (see :mod:`redis_session.pipelines`).
PLAIN_READ = "plain_read"
COMMANDS = "commands"
PIPELINES = frozenset({PLAIN_READ, COMMANDS})
#: Calls that end a session: a store with session-redis-wait-replicas follows them with WAIT.
ENDING_SCRIPTS = frozenset({"destroy", "take"})
#: Calls that change what is stored: with session-redis-durable-writes, each is followed by WAIT.
WRITING_SCRIPTS = frozenset({"write", "incr", "flash", "flashes", "copy", "take", "destroy", "user_index"})


def constants(namespace: type) -> dict[str, Any]:
    """The upper-case names a class such as :class:`Status` defines, with their values."""
    return {name: value for name, value in vars(namespace).items() if name.isupper()}


#: Ids of this length (256 random bits) are stored under a digest of themselves; ids of any
#: other length (this library's before 1.1: 32 characters; redis-session 0.2.1's: 72) under
#: themselves. So the id itself says where its session lives, whatever ``hash-ids`` says now.
HASHED_ID_LENGTH = 43


def session_handle(session_id: str) -> str:
    """The public name of a session: the SHA-256 of its id, in hex. One-way, so it is safe to show
    (an admin listing, a "your sessions" page) and to post back to end a session, and useless as
    a cookie; not tied to the cookie secret, so rotating keys keeps sessions."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def storage_name(session_id: str) -> str:
    """What a session is stored under (its key's last part, its user-index entry): the handle of
    an id minted for hashed keying, so no id sits in Redis where MONITOR, SLOWLOG, a backup or
    an index listing would hand it out; the id itself for an older one (see HASHED_ID_LENGTH)."""
    return session_handle(session_id) if len(session_id) == HASHED_ID_LENGTH else session_id


def is_handle(name: str) -> bool:
    """Whether a storage name (a key suffix, an index entry) is a handle rather than an old raw id."""
    return len(name) == 64 and all(char in "0123456789abcdef" for char in name)


def handle_of_stored(name: str) -> str:
    """The handle of the session stored under ``name`` (a key suffix or an index entry)."""
    return name if is_handle(name) else session_handle(name)


def session_key(prefix: str, session_id: str) -> str:
    """The Redis key of the session ``session_id``: ``{prefix}:sessions:{storage name}``, the
    layout redis-session 0.2.1 used, so its sessions are found."""
    return stored_session_key(prefix, storage_name(session_id))


def moved_mark_key(key: str) -> str:
    """Where ``regenerate()`` leaves, for a minute, the mark that tells a concurrent regenerate of
    the same session where it went. The session key is its hash tag, so it lives in the same
    cluster slot and one script writes both (prefixes cannot hold braces)."""
    return "{" + key + "}:moved"


def ready_mark_key(key: str) -> str:
    """Where ``regenerate()`` signals, for a minute, that the session it moved to ``key`` is
    there: a concurrent request that follows the move waits on it (see SessionLifecycle._follow)."""
    return "{" + key + "}:ready"


def stored_session_key(prefix: str, name: str) -> str:
    """The Redis key of the session stored under ``name`` (as a scan or an index names it)."""
    return f"{prefix}:sessions:{name}"


def user_index_key(prefix: str, user_id: str) -> str:
    """The sorted set of one user's sessions (a key of its own: see ``bind_user``)."""
    return f"{prefix}:users:{user_id}"


def session_key_pattern(prefix: str) -> str:
    """The SCAN pattern of every session key under ``prefix``."""
    return glob_escape(f"{prefix}:sessions:") + "*"


def user_index_pattern(prefix: str) -> str:
    """The SCAN pattern of every user index under ``prefix``."""
    return glob_escape(f"{prefix}:users:") + "*"


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class Opening:
    """How a script opens the session key it was sent (its third argument)."""

    #: A freshly minted id: the key must not exist yet; it is created with its creation time.
    NEW = "new"
    #: The session the request holds: it must exist, and its TTL is refreshed.
    EXISTING = "old"
    #: As EXISTING, but this request refreshed the TTL a moment ago, so it is left alone.
    EXISTING_FRESH = "warm"
    #: regenerate()'s second half: the fields taken from the old key are written to a new one.
    COPY = "copy"
