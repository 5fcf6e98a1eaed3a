"""Session ids, field names and user ids: what is minted, what is accepted, and what logs show.

Ids carry 192 bits from :mod:`secrets`; ids of redis-session 0.2.1 are accepted too (any 16-128
URL-safe characters) so its sessions carry over. Logs get a salted fingerprint, never an id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from .errors import SessionTypeError, SessionValueError
from .protocol import RESERVED_PREFIX

ID_BYTES = 24  # 192 random bits, 32 URL-safe characters
# Ids this library mints, and the ids of redis-session 0.2.1 (so its sessions carry over).
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{16,128}$")
_FINGERPRINT_KEY = secrets.token_bytes(16)
#: The ids redis-session 0.2.1 minted: two UUID4s written one after the other (72 characters).
_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LEGACY_SESSION_ID_PATTERN = re.compile(_UUID4 * 2)


def fingerprint(session_id: str) -> str:
    """A short, salted, per-process digest of an id: enough to correlate log lines, useless to
    hijack a session (raw ids and cookies never reach the logs)."""
    return hashlib.blake2b(session_id.encode(), key=_FINGERPRINT_KEY, digest_size=6).hexdigest()


def is_valid_session_id(session_id: str) -> bool:
    return SESSION_ID_PATTERN.match(session_id) is not None


def is_legacy_session_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id redis-session 0.2.1 minted (see legacy-cookies-until)."""
    return LEGACY_SESSION_ID_PATTERN.fullmatch(value) is not None


def new_session_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


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


def check_user_id(user_id: str) -> str:
    """User ids are non-empty text that Redis keys can carry (``{prefix}:users:{user_id}``)."""
    if not user_id:
        raise SessionValueError("bind_user() needs a non-empty user id")
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise SessionValueError(f"user id {user_id!r} must be encodable as UTF-8") from None
    return user_id
