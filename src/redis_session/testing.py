"""Helpers for testing applications that use redis_session, Tornado or Flask alike.

* :func:`isolated_store` names an in-process store (``memory://<unique name>``) of one test's
  own and forgets it afterwards, and :func:`use_store` points an application at it (or at any
  store URL), even one that has already served requests;
* :func:`start_session` creates a session in the application's store exactly as a request
  would (``bind_user`` for a login) and returns the :class:`SessionCookie` a browser would send;
* :func:`stored`, :func:`user_of` and :func:`session_id_of` read what a request left in the
  store, found from a cookie, a response's ``Set-Cookie`` or a Flask test client's cookie jar.

Importing this module imports neither Tornado's glue nor Flask: each helper looks at the
application it is given. :mod:`redis_session.pytest_plugin` offers the same as pytest fixtures.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from .clients import forget_memory_server
from .cookies import unquote
from .errors import SessionStateError
from .session import Session
from .testing_apps import (
    backend_of,
    is_flask,
    is_tornado,
    not_an_app,
    sign,
    unsign,
    use_flask_store,
    use_tornado_store,
)
from .value import Value

if TYPE_CHECKING:  # pragma: no cover - for the annotations only
    pass

__all__ = [
    "IsolatedStore",
    "LoginAs",
    "SessionCookie",
    "isolated_store",
    "session_id_of",
    "start_session",
    "stored",
    "use_store",
    "user_of",
]

AppT = TypeVar("AppT")

_STORE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class IsolatedStore:
    """An in-process store no other test shares: ``url`` names it (``memory://<name>-<random>``)
    and :meth:`close` forgets it with its data. As a context manager it gives the URL and
    forgets the store on the way out."""

    def __init__(self, name: str = "test") -> None:
        if not _STORE_NAME.fullmatch(name):
            raise ValueError(f"a store name is 1-64 letters, digits, '.', '_' or '-', got {name!r}")
        #: The store's URL: hand it to :func:`use_store` (or to ``SESSION_REDIS`` / ``redis_session``).
        self.url = f"memory://{name}-{uuid.uuid4().hex}"

    def close(self) -> None:
        """Forget the store and its data. An application still pointed at it keeps the clients it
        built (they hold the old data until they go); a new client of the URL starts empty."""
        forget_memory_server(self.url)

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<IsolatedStore {self.url}>"


def isolated_store(name: str = "test") -> IsolatedStore:
    """A fresh in-process store for one test (needs fakeredis: ``pip install 'redis_session[memory]'``).

    ``with isolated_store() as url: use_store(app, url)``; in a ``unittest`` test case,
    ``store = isolated_store(); self.addCleanup(store.close)`` and use ``store.url``.
    """
    return IsolatedStore(name)


@dataclass(frozen=True)
class SessionCookie:
    """The session cookie a browser holds for a session a test started (see :func:`start_session`)."""

    #: The cookie's name (``session-id`` unless the application names it otherwise).
    name: str
    #: The cookie's value, signed as the application signs it.
    value: str
    #: The session id it carries.
    session_id: str
    #: The cookie's Domain attribute as the application sets it ('' for a host-only cookie).
    domain: str = ""
    #: The cookie's Path attribute.
    path: str = "/"

    @property
    def header(self) -> str:
        """``name=value``, for a ``Cookie`` request header (join several with ``"; "``)."""
        return f"{self.name}={self.value}"

    @property
    def headers(self) -> dict[str, str]:
        """``{"Cookie": "name=value"}``: Tornado's ``self.fetch(url, headers=cookie.headers)``. (A
        Flask test client replaces the Cookie header with its jar's: use :meth:`set_on` there.)"""
        return {"Cookie": self.header}

    def set_on(self, client: Any) -> None:
        """Put the cookie into a Flask (Werkzeug) test client's cookie jar, so every later request
        of that client sends it, as a browser would."""
        client.set_cookie(self.name, self.value, domain=self.domain.lstrip(".") or _client_host(client),
                          origin_only=not self.domain, path=self.path)

    def __repr__(self) -> str:  # the signed value is noise in a failing assertion
        return f"SessionCookie(name={self.name!r}, session_id={self.session_id[:8] + '...'!r})"


class LoginAs(Protocol):
    """The type of the pytest plugin's ``login_as`` fixture: ``def test_x(login_as: LoginAs)``."""

    def __call__(self, app: Any, user_id: str, /, **fields: Any) -> SessionCookie:
        """Start a session of ``app`` bound to ``user_id`` holding ``fields``; return its cookie."""


def use_store(app: AppT, url: str, *, prefix: str | None = None) -> AppT:
    """Point ``app`` (a Tornado Application or a Flask app) at the store ``url`` (and, if given,
    the key prefix ``prefix``); returns ``app``.

    Tornado: the Application's ``redis_session`` setting gets ``redis`` (and ``redis-prefix``),
    and settings it already resolved (by ``setup_session`` or a request) are resolved again.
    Flask: ``SESSION_REDIS`` (and ``SESSION_REDIS_PREFIX``) are set; after ``setup_session(app)``
    the app's sessions also move to the new store, its other settings and secrets unchanged.
    Stores the app had built are closed (its coroutine handlers' stores are left to their event
    loops); clients the application handed over are never closed.

    :raises ConfigurationError: for a URL (or prefix) the settings refuse.
    :raises TypeError: for anything but a Tornado Application or a Flask app.
    """
    overrides = {"redis": url, **({"redis-prefix": prefix} if prefix is not None else {})}
    if is_tornado(app):
        use_tornado_store(app, overrides)
    elif is_flask(app):
        use_flask_store(app, url, prefix)
    else:
        raise not_an_app(app)
    return app


def start_session(app: object, /, user_id: str | None = None, **fields: Any) -> SessionCookie:
    """Create a session in ``app``'s store, as a request of the app would, and return its cookie.

    With ``user_id`` the session is bound to that user first (``bind_user``: the user's session
    index, ``--session-max-per-user`` and ``session.user_id`` as after a real login), then
    ``fields`` are written (``update``, encoded as every write is). ``start_session(app,
    user_id="alice", name="Alice")`` is what a login view that does ``bind_user(...)`` then
    ``session.name = ...`` leaves behind. For a Flask app set up with ``flask_session=True`` the
    fields are stored as ``flask.session`` stores them, and with Flask-Login the user is signed
    in for it as well (what ``login_user`` leaves: ``_user_id``, ``_fresh``), so
    ``@login_required`` views let the test in.

    :raises ValueError: with neither a user nor a field to store (a session exists from its
        first write; fields that are all ``None`` write nothing).
    :raises ConfigurationError: when the app is not set up for sessions (Flask: ``setup_session``).
    """
    backend = backend_of(app)
    settings = backend.settings
    as_flask_session = bool(getattr(backend, "flask_session", False))
    session = Session(backend.store, settings, None, _NewCookie(), view_tags=as_flask_session)
    if user_id is not None:
        session.bind_user(user_id)
    if as_flask_session:
        _write_as_flask_session(app, session, user_id, fields)
    elif fields:
        session.update(fields)
    session_id = session.session_id
    if session_id is None:
        raise ValueError("start_session() needs a user_id or a field that is not None: a session is stored from its first write")
    return SessionCookie(settings.cookie_name, sign(app, backend, session_id), session_id,
                         settings.cookie_domain, settings.cookie_path)


def _write_as_flask_session(app: Any, session: Session, user_id: str | None, fields: dict[str, Any]) -> None:
    """For an app whose ``flask.session`` is on the session hash: the fields as ``flask.session``
    stores them (so it reads back the same Python values), and, with Flask-Login, the user
    signed in for it too, as ``login_user`` leaves the session (``_user_id``, ``_fresh``)."""
    from .flask_view import encode_value

    values = dict(fields)
    if user_id is not None and getattr(app, "login_manager", None) is not None:
        values.setdefault("_user_id", user_id)
        values.setdefault("_fresh", True)
    if values:
        session.save_encoded([(name, *encode_value(name, value)) for name, value in values.items()])


def session_id_of(app: object, source: object) -> str | None:
    """The session id ``source`` carries for ``app``, checked as the app checks it, or ``None``
    when it says "no session". ``source`` is one of:

    * a :class:`SessionCookie`;
    * a cookie value as a browser holds it (``str``, quoted or not);
    * a response: Tornado's ``HTTPResponse`` (fetch it with ``follow_redirects=False``: a
      followed redirect drops the ``Set-Cookie`` of the response that set it) or a Flask test
      response; ``None`` when it expires the cookie (a logout);
    * a Flask (Werkzeug) test client: the cookie in its jar, ``None`` without one.

    :raises LookupError: for a response that neither sets nor expires the session cookie (the
        session kept its id: pass the cookie the request sent).
    :raises ValueError: for a cookie value the app would refuse (a wrong signature, expired).
    :raises TypeError: for any other ``source``.
    """
    backend = backend_of(app)
    if isinstance(source, SessionCookie):
        return source.session_id
    name = backend.settings.cookie_name
    if isinstance(source, str):
        value: str | None = source
    else:
        headers = getattr(source, "headers", None)
        set_cookies = getattr(headers, "get_list", None) or getattr(headers, "getlist", None)
        if callable(set_cookies):
            found = [cookie_value for header in set_cookies("Set-Cookie")
                     for cookie_name, cookie_value in [_name_and_value(header)] if cookie_name == name]
            if not found:
                raise LookupError(
                    f"the response neither sets nor expires the {name!r} cookie, so the request kept the "
                    "session it was sent with (if any): pass the cookie the request sent instead"
                )
            value = found[-1]
        elif callable(getattr(source, "get_cookie", None)):
            value = _client_cookie(source, name, backend.settings.cookie_domain, backend.settings.cookie_path)
        else:
            raise TypeError(
                "expected a SessionCookie, a cookie value (str), a response (Tornado or Flask) or a Flask test "
                f"client, got {type(source).__name__}"
            )
    value = unquote(value or "")
    if not value:
        return None
    session_id = unsign(app, backend, value)
    if session_id is None:
        raise ValueError(f"this {name!r} cookie is not one the application accepts (wrong signature, expired or malformed)")
    return session_id


def stored(app: object, source: object) -> dict[str, Value]:
    """Every field of the session ``source`` names (see :func:`session_id_of`) as it is in the
    store now, as ``{name: Value}`` (the library's own bookkeeping fields left out); ``{}`` when
    there is no such session (never created, logged out, revoked, expired). Reading restarts
    the session's idle timer, as any read does."""
    session = _reading_session(app, source)
    return session.load() if session is not None else {}


def user_of(app: object, source: object) -> str | None:
    """The user the session ``source`` names (see :func:`session_id_of`) is bound to
    (``bind_user``), or ``None``."""
    session = _reading_session(app, source)
    return session.user_id if session is not None else None


# -- the frameworks --------------------------------------------------------------------------


def _name_and_value(set_cookie: str) -> tuple[str, str]:
    """The name and value of a ``Set-Cookie`` header."""
    name, _, value = set_cookie.partition(";")[0].partition("=")
    return name.strip(), value.strip()


def _client_host(client: Any) -> str:
    """The host a Flask test client's requests go to (``SERVER_NAME``, else ``localhost``)."""
    config = getattr(getattr(client, "application", None), "config", None)
    server_name = config.get("SERVER_NAME") if config is not None else None
    return (urlsplit(f"//{server_name}").hostname if server_name else None) or "localhost"


def _client_cookie(client: Any, name: str, domain: str, path: str) -> str | None:
    """The session cookie in a Werkzeug test client's jar (stored under the cookie's Domain, or
    the host that set it), or ``None``."""
    for candidate in dict.fromkeys([domain.lstrip("."), _client_host(client), "localhost"]):
        if candidate:
            cookie = client.get_cookie(name, domain=candidate, path=path)
            if cookie is not None:
                return str(cookie.decoded_value)
    return None


# -- the sessions the helpers run -----------------------------------------------------------


class _NewCookie:
    """The sink of a session a test starts: every change is allowed (the cookie is returned)."""

    def issue(self, session_id: str) -> None:
        pass  # the id is read from the session

    def expire(self) -> None:
        pass

    def check_can_change(self, action: str, issuing: bool) -> None:
        pass


class _ReadOnlyCookie:
    """The sink of a session a test only reads: no change of id, so reading an older release's
    session never moves it to a new id behind the test's back."""

    def issue(self, session_id: str) -> None:
        raise SessionStateError("a session read by a test helper cannot change its id")

    def expire(self) -> None:
        raise SessionStateError("a session read by a test helper cannot expire its cookie")

    def check_can_change(self, action: str, issuing: bool) -> None:
        raise SessionStateError(f"cannot {action}: the session is only being read by a test helper")


def _reading_session(app: object, source: object) -> Session | None:
    session_id = session_id_of(app, source)
    if session_id is None:
        return None
    backend = backend_of(app)
    return Session(backend.store, backend.settings, session_id, _ReadOnlyCookie())
