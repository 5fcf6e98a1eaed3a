"""Active users are never logged out by their cookie's expiry: a request that uses a session whose
cookie was signed ``cookie-renew-after`` ago (default: half of ``cookie-max-age``) gets the same id
back with a fresh signature and Max-Age, without an extra Redis round trip and without a cookie on
every request. Days pass on a clock the tests move (the frameworks' signing clocks and the
library's), while Redis keeps the session alive as real time barely moves."""

from __future__ import annotations

import time
import types
from typing import Any

import flask
import itsdangerous.timed
import pytest
import tornado.web

import redis_session.flask_session
import redis_session.tornado_session
from redis_session.flask_session import setup_session
from redis_session.tornado_session import SessionHandler
from tests.support import COOKIE_SECRET, app_settings

DAY = 86400


class Clock:
    """``time`` for the modules that sign and check cookies, ``days`` ahead of the real one."""

    def __init__(self) -> None:
        self.days = 0.0

    def module(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(time=lambda: time.time() + self.days * DAY, monotonic=time.monotonic)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    for module in (tornado.web, redis_session.tornado_session, itsdangerous.timed, redis_session.flask_session):
        monkeypatch.setattr(module, "time", moved.module())
    return moved


class Counter(SessionHandler):
    def get(self) -> None:
        self.write(str(self.session.incr("visits")))


def set_cookie_max_ages(headers: list[str]) -> list[str]:
    return [part.split("=", 1)[1] for header in headers for part in header.split("; ") if part.lower().startswith("max-age=")]


def test_a_tornado_user_active_every_day_stays_signed_in_past_the_cookie_max_age(serve, store_url, prefix, clock):
    """With the default 30-day cookie, a visitor coming back every day for 40 days keeps one
    session (the count never restarts); the cookie is sent on the first visit and renewed on
    days 15 and 30 only, each time with the full Max-Age."""
    server = serve([("/", Counter)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    counts, renewed_on = [], []
    for day in range(41):
        clock.days = day
        response = browser.get("/")
        counts.append(int(response.text))
        if response.set_cookies:
            renewed_on.append(day)
            assert set_cookie_max_ages(response.set_cookies) == [str(30 * DAY)]
            assert response.header("Cache-Control") == "private, no-store"
    assert counts == list(range(1, 42))
    assert renewed_on == [0, 15, 30]


def test_a_cookie_younger_than_the_renewal_age_is_not_sent_again(serve, store_url, prefix, clock):
    """``--session-cookie-renew-after=3600``: requests within the hour set no cookie; the first one
    after it renews the cookie with the same session id."""
    server = serve([("/", Counter)], redis_session=app_settings(store_url, prefix, **{"cookie-renew-after": 3600}))
    browser = server.browser()
    assert browser.get("/").set_cookies  # the session starts
    first = dict(browser.cookies)
    clock.days = 3599 / DAY
    assert browser.get("/").set_cookies == []
    clock.days = 3601 / DAY
    renewed = browser.get("/")
    assert renewed.set_cookies and renewed.text == "3"
    ids = [tornado.web.decode_signed_value(COOKIE_SECRET, "session-id", value.strip('"'), max_age_days=31)
           for value in (first["session-id"], browser.cookies["session-id"])]
    assert ids[0] == ids[1] is not None


def test_a_request_that_does_not_use_the_session_renews_nothing(serve, store_url, prefix, clock):
    """Only a request that uses the session renews its cookie: other pages send no cookie."""

    class Plain(SessionHandler):
        def get(self) -> None:
            self.write("plain")

    server = serve([("/", Counter), ("/plain", Plain)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    browser.get("/")
    clock.days = 20
    assert browser.get("/plain").set_cookies == []
    assert browser.get("/").set_cookies != []


def flask_counter(store_url: str, prefix: str) -> flask.Flask:
    app = flask.Flask("renewal")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=store_url, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False)
    setup_session(app)

    @app.route("/")
    def count() -> str:
        return str(flask.request.session.incr("visits"))  # type: ignore[attr-defined]

    return app


def test_a_flask_user_active_every_day_stays_signed_in_past_the_cookie_max_age(store_url, prefix, clock):
    """The same on Flask: 40 daily visits keep one session, renewed on days 15 and 30."""
    client = flask_counter(store_url, prefix).test_client()
    counts: list[int] = []
    renewed_on: list[Any] = []
    for day in range(41):
        clock.days = day
        response = client.get("/")
        counts.append(int(response.text))
        if response.headers.getlist("Set-Cookie"):
            renewed_on.append(day)
            assert set_cookie_max_ages(response.headers.getlist("Set-Cookie")) == [str(30 * DAY)]
    assert counts == list(range(1, 42))
    assert renewed_on == [0, 15, 30]
