"""Flask-Login's signals drive the session: a login (also one from a remember-me cookie) binds
the session to the user under a new id, so an id planted before the login is worthless
(session fixation); a logout ends the session. ``setup_session(app, bind_flask_login=True)``
connects them when Flask-Login is installed.
"""

from __future__ import annotations

from typing import Any

import flask


def follow_flask_login(app: flask.Flask) -> None:
    """Connect ``app``'s Flask-Login signals to its sessions (nothing without Flask-Login)."""
    try:
        from flask_login import user_loaded_from_cookie, user_logged_in, user_logged_out
    except ImportError:
        return
    user_logged_in.connect(_bind_logged_in_user, app)
    user_loaded_from_cookie.connect(_bind_logged_in_user, app)
    user_logged_out.connect(_end_logged_out_session, app)


def _bind_logged_in_user(sender: flask.Flask, user: Any, **extra: Any) -> None:
    from .flask_session import request_session_of  # the glue imports this module

    request_session_of(flask.request, sender).bind_user(str(user.get_id()))


def _end_logged_out_session(sender: flask.Flask, user: Any, **extra: Any) -> None:
    """End the session; the keys the request's ``flask.session`` still holds go to a new
    session, as Flask-Login leaves them."""
    from .flask_session import request_session_of

    request_session_of(flask.request, sender).destroy()
    view = flask.session
    if hasattr(view, "forget_stored"):
        view.forget_stored()
