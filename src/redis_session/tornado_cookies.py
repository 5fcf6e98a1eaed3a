"""The session cookie on a Tornado response: the sink a session calls to issue or expire its
cookie, and the refusal to change it once the response has finished (or on a WebSocket, which
cannot set cookies at all).
"""

from __future__ import annotations

import datetime
import weakref
from typing import TYPE_CHECKING

from .errors import SessionStateError

if TYPE_CHECKING:  # pragma: no cover - the handler mixin, which imports this module
    from .tornado_session import _SessionGlue


class TornadoCookie:
    """Sets and expires the session cookie on one handler's response.

    It holds the handler weakly: the handler holds the session and the session holds this sink,
    so a strong reference back would make every request a reference cycle that only the cyclic
    garbage collector frees (measured: about 15% of the throughput of a session-free page).
    """

    __slots__ = ("_handler",)

    def __init__(self, handler: _SessionGlue) -> None:
        self._handler = weakref.ref(handler)

    def check_can_change(self, action: str, issuing: bool) -> None:
        """Asked before the first Redis command of an operation that changes the cookie: once the
        response has finished (``finish()``, ``redirect()``, ``render()``, or in ``on_finish()``)
        the cookie could never reach the browser, so nothing is written and the caller hears why."""
        handler = self._handler()
        if handler is None or handler._finished:
            raise SessionStateError(
                f"cannot {action} after the response has finished: the session cookie could no longer be "
                "sent, so nothing was changed; do it before finish(), redirect() or render() (not in on_finish())"
            )

    @property
    def handler(self) -> _SessionGlue:
        handler = self._handler()
        if handler is None:
            raise RuntimeError("the request this session belonged to has finished; its cookie can no longer be set")
        return handler

    def issue(self, session_id: str) -> None:
        handler = self.handler
        settings = handler.session_settings
        # expires_days=None: the lifetime is Max-Age alone (or a browser-session cookie).
        handler.set_signed_cookie(
            settings.cookie_name, session_id, expires_days=None,
            max_age=settings.cookie_max_age_for_new_sessions, **settings.cookie_attributes()
        )
        # A response that sets a session cookie must never be stored by a shared cache (see the
        # glue's flush() in tornado_session).
        handler._session_cookie_sent = True

    def expire(self) -> None:
        handler = self.handler
        settings = handler.session_settings
        name = settings.cookie_name
        past = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        handler.set_cookie(name, "", expires=past, **settings.cookie_attributes())
        # set_cookie() drops a zero max_age (it tests "if max_age"), so add Max-Age=0 to the
        # morsel it just stored: browsers that honour Max-Age over Expires drop the cookie at once,
        # as with Flask's delete_cookie(). Without that attribute, Expires in 1970 still deletes it.
        morsel = getattr(handler, "_new_cookie", {}).get(name)
        if morsel is not None:
            morsel["max-age"] = "0"
        handler._session_cookie_sent = True


class WebSocketCookie(TornadoCookie):
    """The sink of a WebSocket's session: Tornado refuses set_cookie on one, so its session can be
    read, written and ended, but never created or given a new id."""

    __slots__ = ()

    def check_can_change(self, action: str, issuing: bool) -> None:
        if issuing:
            raise SessionStateError(
                f"cannot {action} here: the new session id would have to be sent in a cookie, and a "
                "WebSocket cannot set cookies; create the session (or regenerate it) in an ordinary "
                "request, such as the page that opens the socket"
            )

    def expire(self) -> None:
        pass  # the browser keeps a cookie naming a session that is gone, which reads as none

def signed_at(signed_value: str) -> float:
    """When Tornado signed a (valid, version 2) signed value: its third field, ``10:<seconds>``."""
    try:
        return float(signed_value.split("|", 3)[2].split(":", 1)[1])
    except (IndexError, ValueError):
        return 0.0
