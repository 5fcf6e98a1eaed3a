"""What the doctests on the pages share: sessions on the in-process ``memory://`` store, built
as the web glue builds them, and the admin command run in-process.

``from doc_sessions import *`` runs before every doctest (``doctest_global_setup``). In an
application ``self.session`` (Tornado) and ``request.session`` (Flask) are these same
:class:`~redis_session.Session` objects; here a :class:`Browser` stands in for the cookie jar.
"""

from __future__ import annotations

import io
import shlex
import uuid

from redis_session import Session, SessionAdmin, SessionSettings, Store
from redis_session.__main__ import run

__all__ = ["Browser", "new_store", "redis_session_command"]


class Browser:
    """The cookie jar of one browser: the session id the last response set (or ``None``).

    :meth:`request` gives the session a request from this browser would get, built the way
    ``SessionMixin.session`` builds it, so a doctest can follow a user across requests.
    """

    def __init__(self, store: Store, settings: SessionSettings) -> None:
        self.store = store
        self.settings = settings
        self.cookie: str | None = None

    def request(self) -> Session:
        return Session(self.store, self.settings, self.cookie, self)

    # the CookieSink protocol: what a response does with the session cookie
    def issue(self, session_id: str) -> None:
        self.cookie = session_id

    def expire(self) -> None:
        self.cookie = None

    def check_can_change(self, action: str, issuing: bool) -> None:
        pass  # the response is never finished here


def new_store(**settings: object) -> tuple[SessionSettings, Store, SessionAdmin]:
    """Settings, a store and an admin on a fresh ``memory://`` server of their own."""
    resolved = SessionSettings.from_mapping({"redis": f"memory://docs-{uuid.uuid4().hex[:8]}", **settings})
    store = Store.connect(resolved)
    return resolved, store, SessionAdmin(resolved, store)


def redis_session_command(line: str) -> int:
    """Run ``redis-session LINE`` in this process (so it sees this process's memory:// store),
    print what it prints (stderr after stdout) and return its exit code."""
    out, err = io.StringIO(), io.StringIO()
    code = run(shlex.split(line), out, err)
    print((out.getvalue() + err.getvalue()).rstrip("\n"))
    return code
