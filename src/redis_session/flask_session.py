"""Flask glue: ``setup_session(app)`` (or ``RedisSession(app)``) gives ``request.session``.

The session object is the very same :class:`~redis_session.session.Session` the Tornado glue
uses; this module only reads the ``SESSION_*`` config into :class:`SessionSettings`, signs the
cookie with itsdangerous, and applies cookie changes to the response. State lives in
``app.extensions["redis_session"]``, never in a global. The store is built on first use, not in
``init_app``: building a Redis Cluster client already talks to the cluster, and an app factory
must not fail (or block) because Redis is down while it starts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, cast

try:
    import flask
    from itsdangerous import BadData, URLSafeTimedSerializer
except ModuleNotFoundError as missing:  # Flask is an optional extra
    raise ModuleNotFoundError(
        f"redis_session.flask_session needs Flask ({missing.name} is not installed): "
        "pip install 'redis_session[flask]'", name=missing.name,
    ) from missing

from .admin import SessionAdmin
from .backend import SessionBackend, report_due
from .cookies import session_cookie_values
from .errors import (
    ConfigurationError,
    RedisSessionError,
    SessionConflictError,
    SessionLimitError,
    SessionStateError,
    SessionUnavailableError,
)
from .flask_config import config_key, secret_problems, settings_from_config, warn_about_misspelt_keys
from .flask_login_binding import follow_flask_login
from .identity import is_legacy_session_id, is_valid_session_id
from .session import Session
from .settings import SessionSettings

logger = logging.getLogger("redis_session")

__all__ = ["RedisSession", "config_key", "current_session", "session_admin", "setup_session"]

EXTENSION_KEY = "redis_session"
COOKIE_SALT = "redis_session.session-id"


class _FlaskSessions(SessionBackend):
    """What ``init_app`` resolved for one app: settings, stores (built on first use) and the
    cookie serializer."""

    def __init__(self, settings: SessionSettings, serializer: URLSafeTimedSerializer, keys: list[Any],
                 flask_session: bool = False) -> None:
        super().__init__(settings)
        self.serializer = serializer
        #: ``flask.session`` is a view of the same hash (see redis_session.flask_view).
        self.flask_session = flask_session
        #: How redis-session 0.2.1's Flask module signed its cookie: the secret key as key and
        #: salt, HMAC-SHA1, a JSON object {cookie name: id}. Read only while legacy-cookies-until
        #: allows it (see session_cookie_of).
        self.legacy_serializers = [
            URLSafeTimedSerializer(key, salt=key, signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1})
            for key in reversed(keys)
        ]

    def legacy_session_id(self, value: str) -> str | None:
        """The id in a cookie of redis-session 0.2.1's Flask module, or ``None``."""
        for serializer in self.legacy_serializers:
            try:
                payload = serializer.loads(value)  # 0.2.1 never limited the cookie's age
            except (BadData, ValueError, TypeError, UnicodeError):
                continue
            session_id = payload.get(self.settings.cookie_name) if isinstance(payload, dict) else None
            if isinstance(session_id, str) and is_legacy_session_id(session_id):
                return session_id
        return None

    def session_cookie_of(self, header: str | None) -> tuple[str | None, float, bool]:
        """The id in the request's session cookie if it is validly signed, when it was signed,
        and whether it is a cookie of redis-session 0.2.1 (accepted while legacy-cookies-until
        allows); ``(None, 0.0, False)`` for anything else ("no session"), and for a request that
        carries two session cookies (see :mod:`redis_session.cookies`)."""
        settings = self.settings
        nothing = (None, 0.0, False)
        values = session_cookie_values(header or "", settings.cookie_name)
        if len(values) > 1:
            logger.warning("%s %s: %d cookies named %r in one request; using neither (possible cookie tossing)",
                           flask.request.method, flask.request.path, len(values), settings.cookie_name)
            return nothing
        if not values or not values[0] or len(values[0]) > settings.max_cookie_length:
            return nothing
        try:
            session_id, signed = self.serializer.loads(
                values[0], max_age=int(settings.cookie_max_age_days * 86400), return_timestamp=True
            )
        except (BadData, ValueError, TypeError, UnicodeError):
            legacy = self.legacy_session_id(values[0]) if settings.legacy_cookies_accepted else None
            return (legacy, 0.0, True) if legacy is not None else nothing
        if not isinstance(session_id, str) or not is_valid_session_id(session_id):
            return nothing
        return session_id, signed.timestamp(), False


class _PendingCookie:
    """Records what the session asked for; ``after_request`` applies it to the response."""

    __slots__ = ("action", "session_id", "applied")

    def __init__(self) -> None:
        self.action: str | None = None
        self.session_id = ""
        #: True once the response carries what was asked (later changes could never reach it)
        self.applied = False

    def issue(self, session_id: str) -> None:
        self.action, self.session_id = "issue", session_id

    def expire(self) -> None:
        self.action, self.session_id = "expire", ""

    def check_can_change(self, action: str, issuing: bool) -> None:
        """A view, and an ``after_request`` function that runs before the library's, may change
        the cookie; code that runs later (another ``after_request``, ``teardown_request``, a
        streamed body) may not: its cookie would never reach the browser."""
        if self.applied:
            raise SessionStateError(
                f"cannot {action} after the response was built: the session cookie could no longer be sent, "
                "so nothing was changed; do it in the view (or an after_request function registered after "
                "setup_session)"
            )


class SessionRequestMixin:
    """Adds ``request.session`` to the app's request class; built on first use."""

    _redis_session: Session | None = None
    _redis_session_cookie: _PendingCookie | None = None
    #: The id the request's session cookie carried, when it was signed, and whether it came in
    #: a cookie of redis-session 0.2.1 (for renewal).
    _redis_session_cookie_read: tuple[str | None, float, bool] = (None, 0.0, False)

    @property
    def session(self) -> Session:
        """``request.session``: this request's session, built on first access (no Redis command
        until a field is used)."""
        return request_session_of(self, flask.current_app)


def request_session_of(request: Any, app: flask.Flask) -> Session:
    """The session of ``request`` (a request of ``app``), built on first use and kept on the
    request: ``request.session`` and ``flask.session`` (see redis_session.flask_view) share it."""
    session: Session | None = getattr(request, "_redis_session", None)
    if session is None:
        sessions = _sessions(app)
        cookie = _PendingCookie()
        read = sessions.session_cookie_of(request.headers.get("Cookie"))
        session = Session(sessions.store, sessions.settings, read[0], cookie, view_tags=sessions.flask_session)
        request._redis_session_cookie_read = read
        request._redis_session = session
        request._redis_session_cookie = cookie
    return session


def current_session() -> Session:
    """The current request's session, typed (``request.session`` is added to the request class at
    run time, which a type checker cannot see)."""
    return request_session_of(flask.request, flask.current_app)


def _sessions(app: flask.Flask) -> _FlaskSessions:
    try:
        sessions: _FlaskSessions = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise ConfigurationError("redis_session is not set up on this app; call setup_session(app) first") from None
    return sessions


class RedisSession:
    """The Flask extension: ``RedisSession(app)`` or ``RedisSession().init_app(app)``.

    With ``flask_session=True``, ``flask.session`` becomes a dict view of the same session hash
    (so Flask-Login, Flask-WTF and ``flash()`` keep their state in Redis), and with
    ``bind_flask_login`` (the default) a Flask-Login login binds the session to the user under a
    new id (session fixation) and a logout ends it."""

    def __init__(self, app: flask.Flask | None = None, flask_session: bool = False, bind_flask_login: bool = True) -> None:
        self.flask_session = flask_session
        self.bind_flask_login = bind_flask_login
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Resolve settings now (so misconfiguration fails at start-up) and hook the app.

        Nothing here talks to the store: it is built by the first request that uses a session.

        :raises ConfigurationError: listing every problem with ``SECRET_KEY``,
            ``SECRET_KEY_FALLBACKS`` and the ``SESSION_*`` keys.
        """
        if EXTENSION_KEY in app.extensions:
            # A second set-up would hook the response twice (every Set-Cookie sent twice).
            raise ConfigurationError("redis_session is already set up on this app; call setup_session(app) once")
        secret = app.config.get("SECRET_KEY")
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
        problems = secret_problems(secret, fallbacks)
        try:
            settings = settings_from_config(app.config)
        except ConfigurationError as error:
            problems.extend(error.problems)
        if problems:
            raise ConfigurationError(problems)
        warn_about_misspelt_keys(app.config)
        keys: Any = [*(fallbacks or ()), secret]  # checked above; itsdangerous's annotations vary by release
        serializer = URLSafeTimedSerializer(
            keys,  # itsdangerous signs with the last key, accepts them all
            salt=COOKIE_SALT,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )
        app.extensions[EXTENSION_KEY] = _FlaskSessions(settings, serializer, keys, self.flask_session)
        if not issubclass(app.request_class, SessionRequestMixin):
            app.request_class = cast("type[flask.Request]", type("SessionRequest", (SessionRequestMixin, app.request_class), {}))
        if self.flask_session:
            from .flask_view import RedisSessionInterface

            app.session_interface = RedisSessionInterface()  # it saves and sets the cookie
            if self.bind_flask_login:
                follow_flask_login(app)
        else:
            app.after_request(_apply_cookie)
        app.register_error_handler(SessionUnavailableError, _unavailable)
        app.register_error_handler(ConfigurationError, _misconfigured)
        app.register_error_handler(SessionConflictError, _conflict)
        app.register_error_handler(SessionLimitError, _too_large)

    @staticmethod
    def admin(app: flask.Flask | None = None) -> SessionAdmin:
        """:class:`~redis_session.SessionAdmin` on ``app``'s store (``current_app`` by default)."""
        return session_admin(app)


def setup_session(app: flask.Flask, check_store: bool = False, flask_session: bool = False,
                  bind_flask_login: bool = True) -> RedisSession:
    """Give ``app`` a ``request.session`` (the call redis-session 0.2.1 users know); with
    ``check_store``, also send the store every kind of command a request will, now, so a store
    that does not answer or refuses this configuration stops the app before it serves. With
    ``flask_session``, ``flask.session`` is the same session too (see :class:`RedisSession`).

    :raises ConfigurationError: listing every problem with ``SECRET_KEY`` and the ``SESSION_*``
        keys; with ``check_store``, :class:`StoreRefusedError` (a wrong password, a missing ACL
        permission or key pattern, a read-only replica).
    :raises SessionUnavailableError: with ``check_store``, when the store does not answer.
    """
    extension = RedisSession(app, flask_session=flask_session, bind_flask_login=bind_flask_login)
    if check_store:
        _sessions(app).check_store()
    return extension


def session_admin(app: flask.Flask | None = None) -> SessionAdmin:
    """Per-user session management ("your sessions" pages, sign out everywhere) on the store of
    ``app``, or of ``current_app`` inside a request: the Flask side of Tornado's
    ``self.session_admin``.

    :raises SessionUnavailableError: if the store has to be built now and does not answer (a 503
        inside a request).
    """
    return _sessions(app if app is not None else flask.current_app).admin()


def _apply_cookie(response: flask.Response) -> flask.Response:
    """``after_request`` of an app without ``flask_session``: what ``request.session`` asked of
    the cookie goes on the response."""
    request: Any = flask.request
    if getattr(request, "_redis_session", None) is not None:
        _set_cookie(flask.current_app, request, response, None)
    return response


def finish_response(app: flask.Flask, request: Any, response: flask.Response, view: Any) -> None:
    """The end of a request of an app with ``flask_session`` (``save_session``): write what
    ``flask.session`` changed, then apply what either view asked of the cookie. A store error
    while writing turns the response into the 503 (409, 500) it means, never an uncaught 500:
    the view's answer would claim a change that was not made."""
    if view is not None and view.failure is not None:
        # The session could not be loaded: in the view (which then answered 503), or after it,
        # in an after_request function (Flask-Login reads the session of every request), where
        # the view's answer did not depend on it. Nothing is saved either way.
        response.vary.add("Cookie")
    elif view is not None and view.loaded:
        response.vary.add("Cookie")
        try:
            written, deleted = view.changes()
            if written or deleted:
                view.session.save_encoded(written, deleted)
                view.saved()
        except SessionUnavailableError as error:
            _replace_body(response, *_unavailable(error))
        except SessionConflictError as error:
            _replace_body(response, *_conflict(error))
        except ConfigurationError as error:
            _replace_body(response, *_misconfigured(error))
        except SessionLimitError as error:
            _replace_body(response, *_too_large(error))
        except RedisSessionError as error:
            # A value that cannot be stored: the view's 500. Flask saves the session again for
            # that error page; this mark keeps it from raising (and being logged) twice.
            view.failure = error
            raise
    if getattr(request, "_redis_session", None) is not None:
        _set_cookie(app, request, response, view)


def _replace_body(response: flask.Response, body: str, status: int, headers: dict[str, str] | None = None) -> None:
    response.set_data(body)
    response.status_code = status
    response.headers.update(headers or {})


def _set_cookie(app: flask.Flask, request: Any, response: flask.Response, view: Any) -> None:
    response.vary.add("Cookie")
    pending: _PendingCookie | None = request._redis_session_cookie
    if pending is None:
        return
    pending.applied = True
    sessions = _sessions(app)
    settings = sessions.settings
    session = request._redis_session
    # flask.session's "permanent" chooses the cookie's lifetime, as with Flask's own session:
    # PERMANENT_SESSION_LIFETIME, or until the browser closes; and with
    # SESSION_REFRESH_EACH_REQUEST a permanent session's cookie is sent again on every request.
    permanent = view.get("_permanent", False) if view is not None and view.loaded else None
    max_age: int | None = settings.cookie_max_age_for_new_sessions
    if permanent is not None:
        max_age = int(app.permanent_session_lifetime.total_seconds()) if permanent else None
    if pending.action is None:
        cookie_id, signed, legacy = request._redis_session_cookie_read
        if cookie_id is None or session.session_id != cookie_id:
            return
        refresh = bool(permanent) and app.config.get("SESSION_REFRESH_EACH_REQUEST", True)
        # An active user's cookie is signed anew once it is old enough (as on Tornado: see
        # SessionGlue._renew_session_cookie), so its expiry never logs them out.
        renew = session.known_to_exist if legacy else time.time() - signed >= settings.cookie_renewal_age
        if not (refresh or renew):
            return
        pending.issue(cookie_id)
    attributes = settings.cookie_attributes()
    if pending.action == "issue":
        token: Any = sessions.serializer.dumps(pending.session_id)  # text; itsdangerous 2.1 says str | bytes
        response.set_cookie(settings.cookie_name, token, max_age=max_age, **attributes)
    else:
        response.delete_cookie(settings.cookie_name, **attributes)
    response.headers["Cache-Control"] = "private, no-store"


def _misconfigured(error: ConfigurationError) -> tuple[str, int]:
    """A store that refuses this configuration (or settings that broke after start-up): 500, not
    a retry hint, and one log line a minute instead of a traceback per request."""
    if report_due(flask.current_app.extensions, str(error)):
        logger.error("500 %s %s: %s (the same error is logged again at most once a minute)",
                     flask.request.method, flask.request.path, error)
    return "Internal Server Error: the session store is misconfigured.\n", 500


def _unavailable(error: SessionUnavailableError) -> tuple[str, int, dict[str, str]]:
    logger.warning("503 %s %s: %s", flask.request.method, flask.request.path, error)
    return "Service Unavailable: the session store is not answering; try again shortly.\n", 503, {"Retry-After": "1"}


def _too_large(error: SessionLimitError) -> tuple[str, int]:
    """A write past a size limit (a name, a value, the field count, the session's size): input
    too large for the session, a 413 with one log line, not a traceback."""
    logger.warning("413 %s %s: %s", flask.request.method, flask.request.path, error)
    return "Content Too Large: the session cannot hold this much; nothing was stored.\n", 413


def _conflict(error: SessionConflictError) -> tuple[str, int]:
    logger.warning("409 %s %s: %s", flask.request.method, flask.request.path, error)
    return "Conflict: a concurrent request changed this session first; nothing was changed here.\n", 409

