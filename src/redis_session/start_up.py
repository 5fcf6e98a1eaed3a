"""What a start-up check asks of the store: every kind of command a request will send, on a probe
session of its own, before the application serves.

A PING proves the store answers, not that this configuration may use it: an ACL user without
EVALSHA, HSET or access to the key pattern, or a read-only replica, answers PING and then
refuses every session. The probe creates a session under a fresh id (a script, plain reads), ends
it (the logout script), and reads and edits a user index (the other key pattern), so each
refusal surfaces once, at start-up, as a StoreRefusedError naming what is missing, instead of
as a 500 on every request.
"""

from __future__ import annotations

import secrets

from . import user_index
from .core import SessionCore
from .operation import Operation
from .protocol import RESERVED_PREFIX
from .settings import SessionSettings

#: The field the probe session holds, for the length of the check.
PROBE_FIELD = "start-up-check"


class NoCookie:
    """The cookie sink of a session with no browser (the probe here, a script that writes
    sessions): it sends no cookie and refuses nothing."""

    def issue(self, session_id: str) -> None:
        pass

    def expire(self) -> None:
        pass

    def check_can_change(self, action: str, issuing: bool) -> None:
        pass


def probe(settings: SessionSettings) -> Operation[None]:
    """Create, read and end a probe session, then read and edit a probe user's index. Leaves
    nothing behind: the session is ended, the index entry it removes never existed."""
    session = SessionCore(settings, None, NoCookie())
    yield from session.write(((PROBE_FIELD, "1"),))
    yield from session.read((PROBE_FIELD,))
    yield from session.destroy()
    probe_user = f"{RESERVED_PREFIX}probe:{secrets.token_hex(8)}"
    yield from user_index.members(settings, probe_user)
    yield from user_index.unlist(settings, probe_user, "none")
    return None
