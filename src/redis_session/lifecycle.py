"""Ending and moving a session: ``destroy()``, ``regenerate()`` (and ``bind_user()``), and the
move of a session stored under its id to a hashed key.

These are the operations where concurrent requests meet: a logout beside a page load, a login
submitted twice, an administrator revoking a user while they sign in. Each step is ordered so
that none of them is undone by another (see :meth:`SessionLifecycle.regenerate`).
"""

from __future__ import annotations

from . import user_index
from .errors import RedisSessionError, SessionStateError
from .identity import check_user_id, fingerprint, new_session_id, seal, unseal, user_digest
from .operation import Operation
from .protocol import USER_FIELD, Call, Opening, Status, moved_mark_key, storage_name, stored_session_key
from .session_state import MINT_ATTEMPTS, SessionState, logger

#: How long the mark ``regenerate()`` leaves where a session was lasts: a double-submitted
#: login arrives within seconds.
MOVED_MARK_SECONDS = 60


class SessionLifecycle(SessionState):
    """The operations that end a session or move it to a new id."""

    __slots__ = ()

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
