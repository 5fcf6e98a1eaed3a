"""Session ids, field names and user ids: what is minted, what is accepted, and what logs show.

Ids carry 256 bits from :mod:`secrets` (192 with ``hash-ids`` off, in the older format); ids of
redis-session 0.2.1 and of this library's earlier releases are accepted too (any 16-128
URL-safe characters) so their sessions carry over. Logs get a salted fingerprint, never an id.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any

from .errors import SessionLimitError, SessionTypeError, SessionValueError
from .protocol import RESERVED_PREFIX

#: Random bytes of an id stored under its digest (43 URL-safe characters: HASHED_ID_LENGTH), and
#: of an id stored under itself (32 characters, the format of the releases before 1.1).
HASHED_ID_BYTES, RAW_ID_BYTES = 32, 24
# Ids this library mints, and the ids of redis-session 0.2.1 (so its sessions carry over);
# fullmatch() only: a "$" anchor would also let a trailing newline through into a Redis key.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]{16,128}")
_FINGERPRINT_KEY = secrets.token_bytes(16)
#: The ids redis-session 0.2.1 minted: two UUID4s written one after the other (72 characters).
_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LEGACY_SESSION_ID_PATTERN = re.compile(_UUID4 * 2)


def fingerprint(session_id: str) -> str:
    """A short, salted, per-process digest of an id: enough to correlate log lines, useless to
    hijack a session (raw ids and cookies never reach the logs)."""
    return hashlib.blake2b(session_id.encode(), key=_FINGERPRINT_KEY, digest_size=6).hexdigest()


def is_valid_session_id(session_id: str) -> bool:
    """Whether ``session_id`` is shaped like an id this library or 0.2.1 minted: nothing else
    ever becomes part of a Redis key."""
    return SESSION_ID_PATTERN.fullmatch(session_id) is not None


def is_legacy_session_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id redis-session 0.2.1 minted (see legacy-cookies-until)."""
    return LEGACY_SESSION_ID_PATTERN.fullmatch(value) is not None


def seal(new_id: str, old_id: str) -> str:
    """``new_id`` readable only by whoever holds ``old_id`` (a one-time pad derived from it), for
    the mark ``regenerate()`` leaves where a session was: Redis sees no usable id, and only the
    request that carried the old cookie can follow the session to its new id."""
    data = new_id.encode()
    pad = hashlib.blake2b(old_id.encode(), digest_size=len(data), person=b"rs-moved-to").digest()
    return base64.urlsafe_b64encode(bytes(left ^ right for left, right in zip(data, pad))).decode("ascii")


def unseal(sealed: str, old_id: str) -> str | None:
    """The id :func:`seal` hid, or ``None`` when ``sealed`` is no such thing."""
    try:
        data = base64.urlsafe_b64decode(sealed.encode("ascii"))
    except (ValueError, UnicodeError):
        return None
    if not 0 < len(data) <= 64:
        return None
    pad = hashlib.blake2b(old_id.encode(), digest_size=len(data), person=b"rs-moved-to").digest()
    try:
        new_id = bytes(left ^ right for left, right in zip(data, pad)).decode("ascii")
    except UnicodeDecodeError:
        return None
    return new_id if is_valid_session_id(new_id) else None


def user_digest(user_id: str) -> str:
    """A one-way name for a user id, for marks that must say which user without naming it."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def new_session_id(hashed: bool = True) -> str:
    """A fresh id: one stored under its digest, or (``hash-ids`` off) one stored under itself."""
    return secrets.token_urlsafe(HASHED_ID_BYTES if hashed else RAW_ID_BYTES)


def check_name(name: Any) -> str:
    """Field names are non-empty text outside the library's reserved prefix."""
    if not isinstance(name, str):
        raise SessionTypeError(f"session field names are str, got {type(name).__name__} {name!r}")
    if not name:
        raise SessionValueError("session field names cannot be empty")
    if name.startswith(RESERVED_PREFIX):
        raise SessionValueError(f"session field {name!r}: names starting with {RESERVED_PREFIX!r} are reserved for the library")
    if not name.isascii():  # the common case needs no trial encoding
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise SessionValueError(f"session field {name!r}: names must be encodable as UTF-8") from None
    return name


def check_user_id(user_id: str, max_bytes: int) -> str:
    """User ids are non-empty text that Redis keys can carry (``{prefix}:users:{user_id}``),
    no longer than a field name may be: the id becomes part of a key and of every listing."""
    if not user_id:
        raise SessionValueError("bind_user() needs a non-empty user id")
    try:
        size = len(user_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise SessionValueError(f"user id {user_id!r} must be encodable as UTF-8") from None
    if size > max_bytes:
        raise SessionLimitError(
            f"a user id of {size} bytes is over the limit of {max_bytes} (session-max-name-bytes); nothing was written"
        )
    return user_id
