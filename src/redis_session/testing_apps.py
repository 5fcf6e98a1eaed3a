"""What the testing helpers need to know of each framework: whether an application is Tornado's
or Flask's, its session backend, how to point it at another store, and how it signs and checks
the session cookie. Tornado and Flask are imported only when an application of theirs is given.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .backend import SessionBackend
from .identity import is_legacy_session_id, is_valid_session_id
from .settings import normalise_name

if TYPE_CHECKING:  # pragma: no cover - for the annotations only
    import flask
    import tornado.web


def is_tornado(app: object) -> bool:
    web = sys.modules.get("tornado.web")  # an Application exists only once tornado.web is imported
    return web is not None and isinstance(app, web.Application)


def is_flask(app: object) -> bool:
    flask = sys.modules.get("flask")  # likewise: never import Flask for an app that is not one
    return flask is not None and isinstance(app, flask.Flask)


def not_an_app(app: object) -> TypeError:
    return TypeError(f"expected a tornado.web.Application or a flask.Flask app, got {type(app).__name__}")


def backend_of(app: object) -> SessionBackend:
    """The app's settings and stores, as its requests use them."""
    if is_tornado(app):
        from .tornado_session import backend_for

        return backend_for(tornado_app(app))
    if is_flask(app):
        from .flask_session import _sessions

        return _sessions(flask_app(app))
    raise not_an_app(app)


def tornado_app(app: object) -> tornado.web.Application:
    return app  # type: ignore[return-value]  # checked by is_tornado


def flask_app(app: object) -> flask.Flask:
    return app  # type: ignore[return-value]  # checked by is_flask


def use_tornado_store(app: object, overrides: dict[str, str]) -> None:
    from .tornado_session import _BACKEND_ATTRIBUTE, setup_session

    settings = tornado_app(app).settings
    current = settings.get("redis_session")
    kept = {name: value for name, value in (current.items() if isinstance(current, Mapping) else ())
            if not (isinstance(name, str) and normalise_name(name) in overrides)}
    old: SessionBackend | None = getattr(app, _BACKEND_ATTRIBUTE, None)
    settings["redis_session"] = {**kept, **overrides}
    if old is None:
        return  # resolved by the first request (or setup_session), from the new setting
    try:
        setup_session(tornado_app(app))  # resolved again now, as they were before
    except BaseException:
        if current is None:
            settings.pop("redis_session", None)
        else:
            settings["redis_session"] = current
        raise
    old.close()


def use_flask_store(app: object, url: str, prefix: str | None) -> None:
    from .flask_session import EXTENSION_KEY

    application = flask_app(app)
    old: SessionBackend | None = application.extensions.get(EXTENSION_KEY)
    if old is not None:
        changes: dict[str, Any] = {"redis_url": url, "redis_clients": ()}
        if prefix is not None:
            changes["prefix"] = prefix
        application.extensions[EXTENSION_KEY] = old.with_settings(old.settings.replace(**changes))
        old.close()
    application.config["SESSION_REDIS"] = url
    if prefix is not None:
        application.config["SESSION_REDIS_PREFIX"] = prefix


def sign(app: object, backend: SessionBackend, session_id: str) -> str:
    """The cookie value the app's glue would send for ``session_id``."""
    if is_tornado(app):
        import tornado.web

        settings = tornado_app(app).settings
        secret = settings["cookie_secret"]
        key_version = settings.get("key_version") if isinstance(secret, dict) else None
        signed = tornado.web.create_signed_value(secret, backend.settings.cookie_name, session_id, version=2, key_version=key_version)
        return signed.decode("ascii")
    token: Any = backend.serializer.dumps(session_id)  # type: ignore[attr-defined]  # Flask's backend
    return token if isinstance(token, str) else bytes(token).decode("ascii")


def unsign(app: object, backend: SessionBackend, value: str) -> str | None:
    """The id in a session cookie's value if the app's glue accepts it, else ``None``."""
    settings = backend.settings
    if is_tornado(app):
        import tornado.web

        if len(value) > settings.max_cookie_length:
            return None
        try:
            decoded = tornado.web.decode_signed_value(tornado_app(app).settings["cookie_secret"], settings.cookie_name, value,
                                                      max_age_days=settings.cookie_max_age_days, min_version=2)
        except (ValueError, TypeError, UnicodeError):
            decoded = None
        if decoded is None:
            return value if settings.legacy_cookies_accepted and is_legacy_session_id(value) else None
        session_id = decoded.decode("ascii", "replace")
        return session_id if is_valid_session_id(session_id) else None
    session_id, _, _ = backend.session_cookie_of(f"{settings.cookie_name}={value}")  # type: ignore[attr-defined]
    return session_id if isinstance(session_id, str) else None
