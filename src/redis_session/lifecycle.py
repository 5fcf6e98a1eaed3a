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
from .protocol import (
    COMMANDS,
    USER_FIELD,
    Call,
    Opening,
    Status,
    moved_mark_key,
    ready_mark_key,
    storage_name,
    stored_session_key,
)
from .session_state import MINT_ATTEMPTS, SessionState, logger

#: How long the mark ``regenerate()`` leaves where a session was lasts: a double-submitted
#: login arrives within seconds.
MOVED_MARK_SECONDS = 60
#: What a mark says about the move that left it, before the sealed new id: the digest of the user
#: a login bound, MOVE_MARK for the move to a hashed key, or nothing for a plain regenerate().
MOVE_MARK = "move"
#: How long the old id of a session moved to a hashed key still follows it there: long enough
#: for the requests of the page that moved it (a second tab, its XHRs), short enough that an id
#: that sat in Redis in the clear stops working soon after.
MOVE_FOLLOW_SECONDS = 10
#: Longest a request that follows a move waits for its data to arrive at the new id.
FOLLOW_WAIT_SECONDS = 1.0


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
        yield from self._regenerate(None, moving=True)
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

        A second regenerate of the same session a moment later (a double-submitted login) finds
        the mark ``take`` left and follows the session to its new id, or not (see _follow).
        """
        return (yield from self._regenerate(user_id, moving=False))

    def _regenerate(self, user_id: str | None, moving: bool) -> Operation[None]:
        if user_id is not None:
            check_user_id(user_id, self.settings.max_name_bytes)
        if self.session_id is not None or user_id is not None:
            self.cookie.check_can_change("bind a user" if user_id is not None else "regenerate the session", issuing=True)
        self._stored_by_id = False
        settings = self.settings
        pairs: list[bytes] = []
        old_id = self.session_id
        new_id = new_session_id(settings.hash_ids)  # before the take: its mark says where the session went
        if old_id is not None:
            kind = user_digest(user_id) if user_id is not None else MOVE_MARK if moving else ""
            mark = f"{kind}:{seal(new_id, old_id)}"
            mark_seconds = MOVE_FOLLOW_SECONDS if moving else MOVED_MARK_SECONDS
            reply = yield self._call("take", mark, mark_seconds, idempotent=False, more_keys=(moved_mark_key(self._key),))
            if reply[0] == Status.OK:
                pairs = list(reply[1])
            elif reply[0] == Status.MOVED:
                followed = yield from self._follow(reply[1], old_id, user_id, moving)
                if followed == "done":
                    return None
                if followed == "moved":  # the session moved to a hashed key; this request moves it on
                    return (yield from self._regenerate(user_id, moving=False))
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
            copied = yield self._script("copy", Opening.COPY, MOVED_MARK_SECONDS, *pairs,
                                        more_keys=(ready_mark_key(self._key),))
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

    def _follow(self, mark: bytes, old_id: str, user_id: str | None, moving: bool) -> Operation[str]:
        """A concurrent request moved this session a moment ago (``take`` found its mark).

        This request follows the session to its new id when that hands nothing to anyone who
        did not already have it: when both bind the same user (a double-submitted login: the
        user ends up with exactly one live session whichever response arrives last), and when
        the move was the one to a hashed key (which changes no privilege: anyone with the old id
        could use the session anyway). Following waits (one round trip, at most
        FOLLOW_WAIT_SECONDS) until the mover has written the data to the new id, so this
        request's reads and writes find it there. Returns ``"done"`` when this request holds
        the session at its new id, ``"moved"`` when it must still regenerate it itself (it
        followed a move to a hashed key), ``""`` when it followed nothing.

        Otherwise (a plain regenerate, or a login as another user) nothing is followed: that
        would hand the new session to whoever planted the old id (session fixation). The request
        then leaves the cookie alone (the winner's is on its way), and a write that would start a
        session in its place raises SessionConflictError instead (see _create)."""
        self._use(None)
        kind, _, sealed = mark.decode("ascii", "replace").partition(":")
        follows = kind == MOVE_MARK or (user_id is not None and kind == user_digest(user_id))
        new_id = unseal(sealed, old_id) if follows else None
        if new_id is None:
            self._superseded = user_id is None
            return ""
        self._use(new_id)
        ready = ready_mark_key(self._key)
        timeout = min(FOLLOW_WAIT_SECONDS, self.settings.redis_timeout / 2)
        yield Call(COMMANDS, "", (("blmove", (ready, ready, timeout, "LEFT", "LEFT")),), True)
        self.cookie.issue(new_id)
        if kind == MOVE_MARK and (user_id is not None or not moving):
            return "moved"
        return "done"


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
