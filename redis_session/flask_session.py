"""Flask glue: ``setup_session(app)`` (or ``RedisSession(app)``) gives ``request.session``.

The session object is the very same :class:`~redis_session.session.Session` the Tornado glue
uses; this module only reads the ``SESSION_*`` config into :class:`SessionSettings`, signs the
cookie with itsdangerous, and applies cookie changes to the response. State lives in
``app.extensions["redis_session"]``, never in a global.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Dict, List, Optional, Tuple

import flask
from itsdangerous import BadData, URLSafeTimedSerializer

from .errors import ConfigurationError, SessionUnavailableError
from .operations import is_valid_session_id
from .session import Session
from .settings import SETTINGS, SessionSettings
from .store import Store, stores

logger = logging.getLogger("redis_session")

__all__ = ["RedisSession", "setup_session", "config_key"]

EXTENSION_KEY = "redis_session"
COOKIE_SALT = "redis_session.session-id"


def config_key(name: str) -> str:
    """Flask config key of a setting: ``expire`` -> ``SESSION_EXPIRE``."""
    return "SESSION_" + name.upper().replace("-", "_")


def settings_from_config(config: Any) -> SessionSettings:
    """Settings from a Flask config; ``None`` values (Flask's own defaults) mean "not set"."""
    values = {setting.name: config.get(config_key(setting.name)) for setting in SETTINGS}
    return SessionSettings.from_mapping(values, describe=config_key)


class _FlaskSessions:
    """What ``init_app`` resolved for one app: settings, store and cookie serializer."""

    def __init__(self, settings: SessionSettings, store: Store, serializer: URLSafeTimedSerializer) -> None:
        self.settings = settings
        self.store = store
        self.serializer = serializer

    def session_id_from(self, raw: Optional[str]) -> Optional[str]:
        """The id in a valid signed cookie, or ``None`` for anything else ("no session")."""
        if not raw or len(raw) > self.settings.max_cookie_length:
            return None
        try:
            session_id = self.serializer.loads(raw, max_age=int(self.settings.cookie_max_age_days * 86400))
        except (BadData, ValueError, TypeError, UnicodeError):
            return None
        if not isinstance(session_id, str) or not is_valid_session_id(session_id):
            return None
        return session_id


class _PendingCookie:
    """Records what the session asked for; ``after_request`` applies it to the response."""

    __slots__ = ("action", "session_id")

    def __init__(self) -> None:
        self.action: Optional[str] = None
        self.session_id = ""

    def issue(self, session_id: str) -> None:
        self.action, self.session_id = "issue", session_id

    def expire(self) -> None:
        self.action, self.session_id = "expire", ""


class SessionRequestMixin:
    """Adds ``request.session`` to the app's request class; built on first use."""

    _redis_session: Optional[Session] = None
    _redis_session_cookie: Optional[_PendingCookie] = None

    @property
    def session(self) -> Session:
        session = self._redis_session
        if session is None:
            sessions = _sessions(flask.current_app)
            settings = sessions.settings
            cookie = _PendingCookie()
            raw = self.cookies.get(settings.cookie_name)  # type: ignore[attr-defined]
            if raw and _sent_more_than_once(self, settings.cookie_name):
                logger.warning("%s %s: several cookies named %r; using neither (possible cookie tossing)",
                               flask.request.method, flask.request.path, settings.cookie_name)
                raw = None
            session = Session(sessions.store, settings, sessions.session_id_from(raw), cookie)
            self._redis_session = session
            self._redis_session_cookie = cookie
        return session


def _sent_more_than_once(request: Any, name: str) -> bool:
    return len(request.cookies.getlist(name)) > 1


def _sessions(app: flask.Flask) -> _FlaskSessions:
    try:
        sessions: _FlaskSessions = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise ConfigurationError("request.session was used on an app without setup_session(app)") from None
    return sessions


class RedisSession:
    """The Flask extension: ``RedisSession(app)`` or ``RedisSession().init_app(app)``."""

    def __init__(self, app: Optional[flask.Flask] = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Resolve settings now (so misconfiguration fails at start-up) and hook the app."""
        problems: List[str] = []
        secret = app.config.get("SECRET_KEY")
        if not secret:
            problems.append("SECRET_KEY is not set; the session-id cookie is signed with it, so set "
                            "app.config['SECRET_KEY'] to a long random value")
        try:
            settings = settings_from_config(app.config)
        except ConfigurationError as error:
            problems.extend(error.problems)
        if problems:
            raise ConfigurationError(problems)
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or []
        serializer = URLSafeTimedSerializer(
            [*fallbacks, secret],  # itsdangerous signs with the last key, accepts them all
            salt=COOKIE_SALT,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )
        app.extensions[EXTENSION_KEY] = _FlaskSessions(settings, stores.store_for(settings), serializer)
        if not issubclass(app.request_class, SessionRequestMixin):
            app.request_class = type("SessionRequest", (SessionRequestMixin, app.request_class), {})
        app.after_request(_apply_cookie)
        app.register_error_handler(SessionUnavailableError, _unavailable)


def setup_session(app: flask.Flask) -> RedisSession:
    """Give ``app`` a ``request.session`` (the call redis-session 0.2.1 users know)."""
    return RedisSession(app)


def _apply_cookie(response: flask.Response) -> flask.Response:
    request: Any = flask.request
    if getattr(request, "_redis_session", None) is None:
        return response
    response.vary.add("Cookie")
    pending: Optional[_PendingCookie] = request._redis_session_cookie
    if pending is None or pending.action is None:
        return response
    sessions = _sessions(flask.current_app)
    settings = sessions.settings
    attributes: Dict[str, Any] = {
        "domain": settings.cookie_domain or None,
        "path": settings.cookie_path,
        "secure": settings.cookie_secure,
        "httponly": settings.cookie_http_only,
        "samesite": settings.cookie_samesite or None,
    }
    if pending.action == "issue":
        max_age = settings.cookie_max_age or None
        if max_age and settings.max_lifetime:
            max_age = min(max_age, settings.max_lifetime)
        response.set_cookie(settings.cookie_name, sessions.serializer.dumps(pending.session_id),
                            max_age=max_age, **attributes)
    else:
        response.delete_cookie(settings.cookie_name, **attributes)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _unavailable(error: SessionUnavailableError) -> Tuple[str, int, Dict[str, str]]:
    logger.warning("503 %s %s: %s", flask.request.method, flask.request.path, error)
    return "Service Unavailable: the session store is not answering; try again shortly.\n", 503, {"Retry-After": "1"}
