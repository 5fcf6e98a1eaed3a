"""pytest fixtures for applications that use redis_session.

Enable it by name, in the ``conftest.py`` at the root of your tests::

    pytest_plugins = ["redis_session.pytest_plugin"]

or on the command line: ``pytest -p redis_session.pytest_plugin``. (It is not registered
automatically: installing redis_session changes no one's test run.)

Fixtures:

``session_store_url``
    A ``memory://`` store URL of this test's own, forgotten when the test ends (see
    :func:`redis_session.testing.isolated_store`): point your app at it with
    :func:`redis_session.testing.use_store`, so no session leaks from one test to the next.
``login_as``
    ``login_as(app, user_id, **fields)`` starts a session bound to ``user_id`` in ``app``'s
    store, as a login would, and returns its :class:`~redis_session.testing.SessionCookie`
    (see :func:`redis_session.testing.start_session`); annotate it as
    :class:`redis_session.testing.LoginAs`.

Import what you need from :mod:`redis_session.testing`, never from here: a plugin module that
was imported before pytest enables it makes pytest warn (``PytestAssertRewriteWarning``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from .testing import LoginAs, SessionCookie, isolated_store, start_session

__all__ = ["login_as", "session_store_url"]


@pytest.fixture
def session_store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An in-process store URL no other test shares (named after the test), forgotten afterwards."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:40] or "test"
    with isolated_store(name) as url:
        yield url


@pytest.fixture
def login_as() -> LoginAs:
    """``login_as(app, user_id, **fields)``: a session bound to ``user_id``, as after a login."""

    def login(app: Any, user_id: str, /, **fields: Any) -> SessionCookie:
        return start_session(app, user_id, **fields)

    return login
