"""Tornado glue: flags, ``SessionMixin`` and ``SessionHandler``.

Importing this module defines the ``--session-*`` flags on :data:`tornado.options.options` so
``parse_command_line()`` and ``parse_config_file()`` see them. Settings are resolved once per
Application, on its first request that touches a session, from the flags and the Application's
``redis_session={...}`` setting (which wins).
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

import tornado.web
import tornado.websocket

from .admin import AsyncSessionAdmin, SessionAdmin
from .aio import AsyncSession
from .backend import SessionBackend, report_due
from .cookies import session_cookie_values
from .errors import ConfigurationError, SessionConflictError, SessionLimitError, SessionStateError, SessionUnavailableError
from .identity import is_legacy_session_id, is_valid_session_id
from .session import Session
from .settings import SessionSettings
from .tornado_cookies import TornadoCookie, WebSocketCookie, signed_at
from .tornado_settings import define_flags, resolve_settings

logger = logging.getLogger("redis_session")

__all__ = [
    "AsyncSessionHandler",
    "AsyncSessionMixin",
    "AsyncSessionUserMixin",
    "AsyncUserSessionHandler",
    "SessionHandler",
    "SessionMixin",
    "SessionUserMixin",
    "UserSessionHandler",
    "backend_for",
    "close_session_stores",
    "define_flags",
    "resolve_settings",
    "setup_session",
]


define_flags()


#: The attribute of an Application holding its :class:`SessionBackend`: each Application keeps
#: its own settings and stores, and they go when it goes (no registry in this module).
_BACKEND_ATTRIBUTE = "_redis_session_backend"


def setup_session(application: tornado.web.Application, check_store: bool = False) -> SessionBackend:
    """Resolve the Application's session settings now, so a misconfigured app fails at start
    (before ``listen()``) rather than answering 500 on every request; with ``check_store``, also
    ask the store for a reply now (this blocks: call it before the IOLoop serves).

    Apps that do not call it resolve their settings on their first session request, as before.

    :raises ConfigurationError: listing every problem with the flags, the ``redis_session``
        setting and ``cookie_secret``; with ``check_store``, also a store that refuses this
        configuration (a wrong password, a missing permission).
    :raises SessionUnavailableError: with ``check_store``, when the store does not answer.
    """
    backend = SessionBackend(resolve_settings(application.settings))
    setattr(application, _BACKEND_ATTRIBUTE, backend)
    if check_store:
        backend.check_store()
    return backend


def backend_for(application: tornado.web.Application) -> SessionBackend:
    """The Application's settings and stores, resolved by ``setup_session`` or on its first
    session request."""
    backend: SessionBackend | None = getattr(application, _BACKEND_ATTRIBUTE, None)
    if backend is None:
        backend = SessionBackend(resolve_settings(application.settings))
        setattr(application, _BACKEND_ATTRIBUTE, backend)
    return backend


async def close_session_stores(application: tornado.web.Application) -> None:
    """Close the connections the Application's sessions opened on the running loop (and its
    blocking ones): for a clean shutdown, or a test that starts and stops apps."""
    backend: SessionBackend | None = getattr(application, _BACKEND_ATTRIBUTE, None)
    if backend is not None:
        await backend.aclose()


if TYPE_CHECKING:  # pragma: no cover - lets mypy see the RequestHandler API the mixin relies on
    _MixinBase = tornado.web.RequestHandler
else:
    _MixinBase = object


class _SessionGlue(_MixinBase):
    """What the sync and async mixins share: reading the cookie, 503s, settings and admin."""

    #: This request's session (None until first use); each mixin narrows the type.
    _redis_session: Any = None
    #: True once this response sets or expires the session cookie (it must then stay private).
    _session_cookie_sent = False
    #: The id the request's session cookie carried, when it was signed, and whether it came in
    #: a cookie of redis-session 0.2.1 (see _renew_session_cookie).
    _session_cookie_read: tuple[str | None, float, bool] = (None, 0.0, False)

    def _session_arguments(self) -> tuple[SessionBackend, str | None, TornadoCookie]:
        backend = backend_for(self.application)
        header = self.request.headers.get("Cookie")
        # With no Cookie header at all (a first visit, most crawlers) there is nothing to read.
        session_id = self._session_id_from_header(backend.settings, header) if header else None
        sink = WebSocketCookie if isinstance(self, tornado.websocket.WebSocketHandler) else TornadoCookie
        return backend, session_id, sink(self)

    def flush(self, include_footers: bool = False) -> Future[None]:
        """Send the headers; a response that used the session says ``Vary: Cookie``, and one that
        sets or expires the session cookie stays private.

        Done here, where the headers leave, rather than when the session is first used: an error
        page (``send_error()`` clears every header but keeps pending cookies) and a handler that
        sets ``Cache-Control: public`` after the session write are both covered, with no
        per-request cost of overriding ``clear()``.
        """
        if self._redis_session is not None:
            headers = self._headers
            # Caches must key on the session cookie. add_header() appends to a Vary the application
            # set; otherwise a plain set is a third of the cost of add_header().
            if "Vary" not in headers:
                headers["Vary"] = "Cookie"
            elif "cookie" not in {token.strip().lower() for token in headers["Vary"].split(",")}:
                self.add_header("Vary", "Cookie")
            if not self._session_cookie_sent and not self._headers_written:
                self._renew_session_cookie()
            if self._session_cookie_sent:
                headers["Cache-Control"] = "private, no-store"
        return super().flush(include_footers)

    def _session_id_from_header(self, settings: SessionSettings, header: str) -> str | None:
        """The id in the request's session cookie if it is validly signed, or ``None`` for an
        empty, oversized, unsigned, tampered, expired or malformed one (each simply means "no
        session yet"), and for a request that carries two (see :mod:`redis_session.cookies`)."""
        values = session_cookie_values(header, settings.cookie_name)
        if len(values) > 1:
            # Cookie tossing: a sibling subdomain or a more specific path can plant a second,
            # validly signed cookie of the same name. Browsers send both in an order the server
            # cannot trust, so neither is used: the request starts a new session.
            logger.warning(
                "%s %s: %d cookies named %r in one request; using neither (possible cookie tossing)",
                self.request.method, self.request.path, len(values), settings.cookie_name,
            )
            return None
        if not values or not values[0] or len(values[0]) > settings.max_cookie_length:
            return None
        raw = values[0]
        try:
            value = self.get_signed_cookie(settings.cookie_name, raw, max_age_days=settings.cookie_max_age_days, min_version=2)
        except (ValueError, TypeError, UnicodeError):
            value = None
        if value is None:
            if settings.legacy_cookies_accepted and is_legacy_session_id(raw):
                # redis-session 0.2.1 with --session-cookie-secure=false sent the bare id: taken
                # only if its session exists, and then sent back signed (see _renew_session_cookie)
                self._session_cookie_read = (raw, 0.0, True)
                return raw
            return None
        try:
            session_id = value.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not is_valid_session_id(session_id):
            return None
        self._session_cookie_read = (session_id, signed_at(raw), False)
        return session_id

    def _renew_session_cookie(self) -> None:
        """Sign the session cookie anew when a request uses a session whose cookie was signed
        ``cookie_renewal_age`` ago or more: the same id, a fresh signature and Max-Age, so an
        active user is never logged out by the cookie's expiry. No Redis round trip: the
        request has used the session, and a session that turned out to be gone has no id left.

        A cookie of redis-session 0.2.1 is sent back signed as soon as the request has found its
        session in Redis, so an upgraded site moves its users over as they come back."""
        cookie_id, signed, legacy = self._session_cookie_read
        session = self._redis_session
        if cookie_id is None or session.session_id != cookie_id:
            return
        if session.known_to_exist if legacy else time.time() - signed >= self.session_settings.cookie_renewal_age:
            TornadoCookie(self).issue(cookie_id)

    @property
    def session_settings(self) -> SessionSettings:
        """The settings this Application resolved (the flags plus its ``redis_session`` setting)."""
        return backend_for(self.application).settings

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        # One line per failed request: a traceback per request during an outage, or for a
        # configuration mistake that every request meets, buries the logs.
        if isinstance(value, SessionUnavailableError):
            logger.warning("503 %s %s: %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, SessionConflictError):
            logger.warning("409 %s %s: %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, SessionLimitError):
            logger.warning("413 %s %s: %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, ConfigurationError):
            if report_due(self.application.__dict__, str(value)):
                logger.error("500 %s %s: %s (setup_session(app) before listen() finds this at start-up, with "
                             "check_store=True also what the store refuses; the same error is logged again at most "
                             "once a minute)", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], SessionUnavailableError):
            status_code = 503
        elif exc_info is not None and isinstance(exc_info[1], SessionConflictError):
            status_code = 409
        elif exc_info is not None and isinstance(exc_info[1], SessionLimitError):
            status_code = 413
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], SessionUnavailableError):
            self.set_header("Retry-After", "1")
        super().write_error(status_code, **kwargs)


class SessionMixin(_SessionGlue):
    """Adds ``self.session`` to any ``RequestHandler`` (``WebSocketHandler`` included).

    List it before the handler class (``class H(SessionMixin, RequestHandler)``) so that a store
    outage becomes a 503 rather than a 500.
    """

    _redis_session: Session | None = None

    @property
    def session(self) -> Session:
        """This request's session, built on first access (no Redis command until a field is used)."""
        session = self._redis_session
        if session is None:
            backend, session_id, cookie = self._session_arguments()
            session = self._redis_session = Session(backend.store, backend.settings, session_id, cookie)
        return session

    @property
    def session_admin(self) -> SessionAdmin:
        """Per-user session management on this Application's store ("your sessions" pages)."""
        return backend_for(self.application).admin()

    def flash(self, message: str, category: str = "message") -> None:
        """Queue a message for the next page (sugar for ``self.session.flash``)."""
        self.session.flash(message, category)

    def get_flashed_messages(self, category: str | Iterable[str] | None = None) -> list[tuple[str, str]]:
        """Pop waiting messages as ``[(category, message), ...]`` (sugar for ``self.session.flashes``)."""
        return self.session.flashes(category)


class AsyncSessionMixin(_SessionGlue):
    """Adds an awaitable ``self.session`` (:class:`~redis_session.aio.AsyncSession`) for
    coroutine handlers: ``count = (await self.session.count).int``. Redis never blocks the loop."""

    _redis_session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """This request's session, built on first access (no Redis command until a field is used)."""
        session = self._redis_session
        if session is None:
            backend, session_id, cookie = self._session_arguments()
            session = self._redis_session = AsyncSession(backend.async_store, backend.settings, session_id, cookie)
        return session

    @property
    def session_admin(self) -> AsyncSessionAdmin:
        """Per-user session management for coroutine handlers: every method is awaited."""
        return backend_for(self.application).async_admin()

    def flash(self, message: str, category: str = "message") -> Awaitable[None]:
        """``await self.flash(...)``: sugar for ``await self.session.flash(...)``."""
        return self.session.flash(message, category)

    def get_flashed_messages(self, category: str | Iterable[str] | None = None) -> Awaitable[list[tuple[str, str]]]:
        """``await self.get_flashed_messages()``: sugar for ``await self.session.flashes()``."""
        return self.session.flashes(category)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Finish the response, unless a session operation was called but never awaited.

        A forgotten ``await`` (``self.session.incr("count")``, ``if self.session.user_id:``)
        means an operation that never ran, and a page that would claim it did: the request
        fails instead, with a 500 and an error naming the call.
        """
        session = self._redis_session
        if session is not None:
            forgotten = session.close_unawaited()
            if forgotten:
                calls = ", ".join(f"self.session.{call}" for call in forgotten)
                raise SessionStateError(
                    f"{calls} {'was' if len(forgotten) == 1 else 'were'} never awaited, so "
                    f"{'it' if len(forgotten) == 1 else 'they'} did nothing: write await before each session operation"
                )
        return super().finish(chunk)


class SessionHandler(SessionMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with ``self.session``: the class redis-session 0.2.1 users know."""


class AsyncSessionHandler(AsyncSessionMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with an awaitable ``self.session`` for ``async def get(self)``."""


class SessionUserMixin(SessionMixin):
    """``current_user`` is the user the session was bound to with ``bind_user`` (``None`` when
    signed out), so ``@tornado.web.authenticated`` works. Tornado asks once per request, and
    only when something reads ``current_user``: at most one round trip, none without a session
    cookie."""

    def get_current_user(self) -> str | None:
        """The user ``bind_user`` bound the session to, or ``None`` (signed out, or no session)."""
        return self.session.user_id


class AsyncSessionUserMixin(AsyncSessionMixin):
    """``current_user`` for coroutine handlers: ``get_current_user()`` cannot await, so
    ``prepare()`` reads the bound user (one round trip; none without a session cookie) before
    the method and ``@tornado.web.authenticated`` run. A subclass that overrides ``prepare``
    calls ``await super().prepare()`` first."""

    async def prepare(self) -> None:
        """Set ``current_user`` to the session's bound user before the method runs."""
        self.current_user = await self.session.user_id
        parent = super().prepare()
        if parent is not None:
            await parent


class UserSessionHandler(SessionUserMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with ``self.session`` and ``current_user`` from it (blocking)."""


class AsyncUserSessionHandler(AsyncSessionUserMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with ``self.session`` and ``current_user`` from it (coroutine handlers)."""
