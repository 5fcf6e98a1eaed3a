"""Tornado glue: flags, ``SessionMixin`` and ``SessionHandler``.

Importing this module defines the ``--session-*`` flags on :data:`tornado.options.options` so
``parse_command_line()`` and ``parse_config_file()`` see them. Settings are resolved once per
Application, on its first request that touches a session, from the flags and the Application's
``redis_session={...}`` setting (which wins).
"""

from __future__ import annotations

import datetime
import logging
import weakref
from asyncio import Future
from typing import TYPE_CHECKING, Any, Awaitable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import tornado.web
import tornado.websocket
from tornado.options import OptionParser, options

from .admin import SessionAdmin
from .aio import AsyncSession, async_stores
from .errors import ConfigurationError, SessionUnavailableError
from .identity import is_valid_session_id
from .session import Session
from .settings import SETTINGS, SessionSettings, normalise_name
from .store import Store, stores

logger = logging.getLogger("redis_session")

__all__ = [
    "AsyncSessionHandler",
    "AsyncSessionMixin",
    "SessionHandler",
    "SessionMixin",
    "define_flags",
    "resolve_settings",
]


def define_flags(parser: OptionParser = options) -> None:
    """Define every ``--session-*`` flag on ``parser`` (skipping any already defined)."""
    for setting in SETTINGS:
        flag = f"session-{setting.name}"
        if flag not in parser:
            parser.define(flag, default=setting.default, type=setting.type, help=setting.help, group="redis_session")


define_flags()


def flag_values(parser: OptionParser = options) -> Dict[str, Any]:
    """The current value of every ``--session-*`` flag, by setting name."""
    return {setting.name: parser[f"session-{setting.name}"] for setting in SETTINGS}


def resolve_settings(application_settings: Mapping[str, Any], parser: OptionParser = options) -> SessionSettings:
    """Settings for one Application: the flags, overridden by its ``redis_session`` setting.

    :raises ConfigurationError: listing every invalid value, or naming a missing ``cookie_secret``.
    """
    problems = _cookie_secret_problems(application_settings)
    values = flag_values(parser)
    overrides = application_settings.get("redis_session") or {}
    if not isinstance(overrides, Mapping):
        problems.append(f"the Application setting redis_session must be a dict, got {type(overrides).__name__}")
        overrides = {}
    for name in overrides:
        if not isinstance(name, str):
            problems.append(f"the Application setting redis_session has a key {name!r}; keys are setting names (str)")
    # None means "not overridden": the flag's value stands, as if the key were not there
    overrides = {name: value for name, value in overrides.items() if isinstance(name, str) and value is not None}
    values.update({normalise_name(name): value for name, value in overrides.items()})

    def describe(name: str) -> str:
        if name in {normalise_name(key) for key in overrides}:
            return f"redis_session[{name!r}]"
        return f"--session-{name}"

    try:
        settings = SessionSettings.from_mapping(values, describe)
    except ConfigurationError as error:
        problems.extend(error.problems)
    if problems:
        raise ConfigurationError(problems)
    return settings


def _cookie_secret_problems(application_settings: Mapping[str, Any]) -> List[str]:
    """Why Tornado could not sign the session cookie with this Application's settings.

    Checked here, before the first session write: Tornado only finds a bad secret when it signs
    the cookie, after the session key already exists in Redis.
    """
    secret = application_settings.get("cookie_secret")
    if not secret:
        return [
            "the Application has no 'cookie_secret' setting; the session-id cookie is signed with it, "
            "so pass cookie_secret=... (a long random string, or a dict of them with key_version) "
            "to tornado.web.Application"
        ]
    if not isinstance(secret, dict):  # Tornado treats only a dict as a set of rotating keys
        return []
    key_version = application_settings.get("key_version")
    if key_version is None:
        return [
            "the Application's 'cookie_secret' is a dict of keys but it has no 'key_version' setting; "
            f"pass key_version=... naming the key new cookies are signed with (one of {sorted(secret, key=repr)})"
        ]
    if key_version not in secret:
        return [
            f"the Application's 'key_version' {key_version!r} is not a key of its 'cookie_secret' dict "
            f"(keys: {sorted(secret, key=repr)}); new cookies could not be signed"
        ]
    return []


class _ApplicationSessions:
    """What one Application resolved on first use: its settings and its (shared) store.

    The blocking store is built on first use only: coroutine handlers never need it, and
    building a cluster client already talks to the cluster, which would block the IOLoop (and,
    with the cluster down, fail: that failure is a 503 and the next request tries again).
    """

    __slots__ = ("settings", "_store")

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._store: Optional[Store] = None

    @property
    def store(self) -> Store:
        store = self._store
        if store is None:
            store = self._store = stores.store_for(self.settings)
        return store


#: The attribute of an Application holding what it resolved: each Application keeps its own
#: settings and store, and they go when it goes (no registry in this module to keep it alive). A
#: plain attribute read costs a fifth of a WeakKeyDictionary lookup, on every session request.
_RESOLVED_ATTRIBUTE = "_redis_session_resolved"


def sessions_for(application: tornado.web.Application) -> _ApplicationSessions:
    resolved: Optional[_ApplicationSessions] = getattr(application, _RESOLVED_ATTRIBUTE, None)
    if resolved is None:
        resolved = _ApplicationSessions(resolve_settings(application.settings))
        setattr(application, _RESOLVED_ATTRIBUTE, resolved)
    return resolved


class _TornadoCookie(weakref.ref["_SessionGlue"]):
    """Sets and expires the session cookie on one handler's response.

    It *is* a weak reference to the handler: the handler holds the session and the session holds
    this sink, so a strong reference back would make every request a reference cycle that only
    the cyclic garbage collector frees (measured: about 15% of the throughput of a session-free
    page). Being a ``weakref.ref`` also makes it cheap: built in C, with no ``__init__`` of its
    own, on every request that touches the session.
    """

    __slots__ = ()

    @property
    def can_issue(self) -> bool:
        """Asked before a session is created or given a new id: a request that has finished
        raises here, before Redis holds a key whose cookie could never be sent."""
        return self.handler is not None  # the handler property raises for a finished request

    @property
    def handler(self) -> _SessionGlue:
        handler = self()
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
        # A response that sets a session cookie must never be stored by a shared cache (see flush).
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


class _WebSocketCookie(_TornadoCookie):
    """The sink of a WebSocket's session: Tornado refuses set_cookie on one, so its session can be
    read and written but never created or given a new id (see SessionCore)."""

    __slots__ = ()
    can_issue = False  # a constant where the parent asks its handler

    def expire(self) -> None:
        pass  # the browser keeps a cookie naming a session that is gone, which reads as none


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

    def _session_arguments(self) -> Tuple[_ApplicationSessions, Optional[str], _TornadoCookie]:
        application = self.application
        # sessions_for() without a call of its own: this runs on every request that touches the session
        resolved = getattr(application, _RESOLVED_ATTRIBUTE, None) or sessions_for(application)
        settings = resolved.settings
        session_id = None
        request = self.request
        # With no Cookie header at all (a first visit, most crawlers) there is nothing to parse,
        # and request.cookies (a SimpleCookie, built on first use) need never be built.
        if "Cookie" in request.headers:
            # request.cookies once: get_cookie() would look the parsed cookies up three times
            morsel = request.cookies.get(settings.cookie_name)
            if morsel is not None:
                session_id = self._session_id_from_cookie(settings, morsel.value)
        sink = _WebSocketCookie if isinstance(self, tornado.websocket.WebSocketHandler) else _TornadoCookie
        return resolved, session_id, sink(self)

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
            if self._session_cookie_sent:
                headers["Cache-Control"] = "private, no-store"
        return super().flush(include_footers)

    def _session_id_from_cookie(self, settings: SessionSettings, raw: str) -> Optional[str]:
        """The id in the session cookie's value ``raw`` if it is validly signed, or ``None`` for
        an empty, oversized, unsigned, tampered, expired or malformed one (each simply means "no
        session yet")."""
        if not raw or len(raw) > settings.max_cookie_length:
            return None
        if sent_more_than_once(self.request.headers.get("Cookie", ""), settings.cookie_name):
            # Cookie tossing: a sibling subdomain or a more specific path can plant a second,
            # validly signed cookie of the same name. Browsers send both in an order the server
            # cannot trust, so neither is used: the request starts a new session.
            logger.warning(
                "%s %s: %d cookies named %r in one request; using neither (possible cookie tossing)",
                self.request.method, self.request.path,
                cookie_count(self.request.headers.get("Cookie", ""), settings.cookie_name), settings.cookie_name,
            )
            return None
        try:
            value = self.get_signed_cookie(
                settings.cookie_name, raw, max_age_days=settings.cookie_max_age_days, min_version=2
            )
        except (ValueError, TypeError, UnicodeError):
            return None
        if value is None:
            return None
        try:
            session_id = value.decode("ascii")
        except UnicodeDecodeError:
            return None
        return session_id if is_valid_session_id(session_id) else None

    @property
    def session_settings(self) -> SessionSettings:
        """The settings this Application resolved (the flags plus its ``redis_session`` setting)."""
        return sessions_for(self.application).settings

    @property
    def session_admin(self) -> SessionAdmin:
        """Per-user session management on this Application's store ("your sessions" pages)."""
        resolved = sessions_for(self.application)
        return SessionAdmin(resolved.settings, resolved.store)

    def log_exception(self, typ: Any, value: Optional[BaseException], tb: Any) -> None:
        if isinstance(value, SessionUnavailableError):
            # One line per failed request: a traceback per request during an outage buries the logs.
            logger.warning("503 %s %s: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], SessionUnavailableError):
            status_code = 503
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

    _redis_session: Optional[Session] = None

    @property
    def session(self) -> Session:
        """This request's session, built on first access (no Redis command until a field is used)."""
        session = self._redis_session
        if session is None:
            resolved, session_id, cookie = self._session_arguments()
            session = self._redis_session = Session(resolved.store, resolved.settings, session_id, cookie)
        return session

    def flash(self, message: str, category: str = "message") -> None:
        """Queue a message for the next page (sugar for ``self.session.flash``)."""
        self.session.flash(message, category)

    def get_flashed_messages(self, category: Union[str, Iterable[str], None] = None) -> List[Tuple[str, str]]:
        """Pop waiting messages as ``[(category, message), ...]`` (sugar for ``self.session.flashes``)."""
        return self.session.flashes(category)


class AsyncSessionMixin(_SessionGlue):
    """Adds an awaitable ``self.session`` (:class:`~redis_session.aio.AsyncSession`) for
    coroutine handlers: ``count = (await self.session.count).int``. Redis never blocks the loop."""

    _redis_session: Optional[AsyncSession] = None

    @property
    def session(self) -> AsyncSession:
        """This request's session, built on first access (no Redis command until a field is used)."""
        session = self._redis_session
        if session is None:
            resolved, session_id, cookie = self._session_arguments()
            settings = resolved.settings
            session = self._redis_session = AsyncSession(async_stores.store_for(settings), settings, session_id, cookie)
        return session

    def flash(self, message: str, category: str = "message") -> Awaitable[None]:
        """``await self.flash(...)``: sugar for ``await self.session.flash(...)``."""
        return self.session.flash(message, category)

    def get_flashed_messages(self, category: Union[str, Iterable[str], None] = None) -> Awaitable[List[Tuple[str, str]]]:
        """``await self.get_flashed_messages()``: sugar for ``await self.session.flashes()``."""
        return self.session.flashes(category)


def cookie_count(header: str, name: str) -> int:
    """How many cookies called ``name`` a Cookie header carries."""
    # ";" only, as Tornado itself splits: a "," may sit inside another cookie's value
    return sum(1 for chunk in header.split(";") if chunk.split("=", 1)[0].strip() == name)


def sent_more_than_once(header: str, name: str) -> bool:
    # The cheap substring test keeps the common case (one cookie) free of any parsing. It looks
    # for "name=", not "name": a signed value itself carries the cookie name ("10:session-id|").
    return header.count(name + "=") > 1 and cookie_count(header, name) > 1


class SessionHandler(SessionMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with ``self.session``: the class redis-session 0.2.1 users know."""


class AsyncSessionHandler(AsyncSessionMixin, tornado.web.RequestHandler):
    """A ``RequestHandler`` with an awaitable ``self.session`` for ``async def get(self)``."""
