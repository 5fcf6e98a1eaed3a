"""A misconfigured app fails at start, not on every request; a store that refuses the
configuration (a wrong password, a Redis user without a permission the sessions need) is a clear,
non-transient error: 500 without Retry-After and one log line a minute, never a 503 that says
"try again" forever, never a traceback per request."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import flask
import pytest
import redis
import tornado.web

from redis_session import ConfigurationError, ConfigurationWarning, SessionUnavailableError, StoreRefusedError
from redis_session.flask_session import setup_session as setup_flask_session
from redis_session.tornado_session import SessionHandler, setup_session
from tests.redis_servers import RedisServer, free_port
from tests.support import COOKIE_SECRET, app_settings


class Counter(SessionHandler):
    def get(self) -> None:
        self.write(str(self.session.incr("count")))


def application(**settings: Any) -> tornado.web.Application:
    settings.setdefault("cookie_secret", COOKIE_SECRET)
    return tornado.web.Application([("/", Counter)], **settings)


@pytest.mark.parametrize(("settings", "phrases"), [
    ({"redis_session": {"redis": "redis://:x@host:0/0"}}, ["redis_session['redis']", "out of range"]),
    ({"redis_session": {"expire": -5}}, ["redis_session['expire']", "positive"]),
    ({"redis_session": {"expires": 60}}, ["unknown setting 'expires'"]),
    ({"cookie_secret": None}, ["cookie_secret"]),
    ({"cookie_secret": None, "redis_session": {"expire": 0}}, ["cookie_secret", "redis_session['expire']"]),
])
def test_setup_session_refuses_a_misconfigured_tornado_app_before_it_serves(settings, phrases):
    """``setup_session(app)`` raises one ConfigurationError listing every problem (bad URL,
    negative expire, unknown key, missing cookie_secret) before ``listen()``."""
    with pytest.raises(ConfigurationError) as raised:
        setup_session(application(**settings))
    for phrase in phrases:
        assert phrase in str(raised.value)


def test_setup_session_resolves_once_and_opens_no_connection_unless_asked(serve, store_url, prefix):
    """``setup_session(app)`` resolves the settings the requests then use; it opens no connection
    (the store is built on first use), so an app can start while Redis is still coming up."""
    app = application(redis_session=app_settings("redis://127.0.0.1:1/0", prefix))
    backend = setup_session(app)
    assert backend.settings.redis_url == "redis://127.0.0.1:1/0" and backend._store is None


def test_setup_session_with_check_store_fails_fast_when_the_store_does_not_answer(prefix):
    """``setup_session(app, check_store=True)`` on a store nothing listens on raises
    SessionUnavailableError at start-up."""
    port = free_port()  # free: nothing listens there
    app = application(redis_session=app_settings(f"redis://127.0.0.1:{port}/0", prefix, **{"redis-timeout": 0.5}))
    with pytest.raises(SessionUnavailableError):
        setup_session(app, check_store=True)


@pytest.fixture
def guarded_server(own_redis_server: RedisServer) -> RedisServer:
    """A redis-server that requires a password and knows a user without the scripting commands."""
    client = own_redis_server.client()
    client.config_set("requirepass", "right-one")
    client.execute_command("AUTH", "right-one")
    client.execute_command("ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "+@all", "-evalsha", "-eval", "-script")
    # PING works for both: only the commands the scripts run, or the key pattern, are missing
    client.execute_command("ACL", "SETUSER", "nohset", "on", ">pw", "~*", "+@all", "-hset")
    client.execute_command("ACL", "SETUSER", "elsewhere", "on", ">pw", "~elsewhere:*", "+@all")
    client.close()
    return own_redis_server


def flask_app(url: str, prefix: str) -> flask.Flask:
    app = flask.Flask("refused")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=url, SESSION_REDIS_PREFIX=prefix)
    return app


@pytest.mark.parametrize("framework", ["tornado", "flask"])
@pytest.mark.parametrize(("url_user", "phrase"), [
    (":wrong-one", "user name or password"),
    ("noscripts:pw", "lacks a permission"),
    ("nohset:pw", "lacks a permission"),
    ("elsewhere:pw", "lacks a permission"),
])
def test_setup_session_with_check_store_reports_what_the_store_refuses(guarded_server, prefix, framework, url_user, phrase):
    """``setup_session(app, check_store=True)`` sends every kind of command a request will (a
    PING alone passes for a user without HSET, or without the key pattern), so a wrong password
    or a missing ACL permission stops the app before it serves: a StoreRefusedError naming what
    to fix and never the password."""
    url = f"redis://{url_user}@127.0.0.1:{guarded_server.port}/0"
    with pytest.raises(StoreRefusedError, match=phrase) as raised:
        if framework == "tornado":
            setup_session(application(redis_session=app_settings(url, prefix)), check_store=True)
        else:
            setup_flask_session(flask_app(url, prefix), check_store=True)
    assert "wrong-one" not in str(raised.value)


@pytest.mark.parametrize("framework", ["tornado", "flask"])
def test_a_passing_start_up_check_leaves_nothing_in_the_store(guarded_server, prefix, framework):
    """The probe session and the probe user index the check uses are gone once it passes."""
    url = f"redis://:right-one@127.0.0.1:{guarded_server.port}/0"
    if framework == "tornado":
        setup_session(application(redis_session=app_settings(url, prefix)), check_store=True)
    else:
        setup_flask_session(flask_app(url, prefix), check_store=True)
    client = redis.Redis(host="127.0.0.1", port=guarded_server.port, password="right-one")
    assert list(client.scan_iter(match=f"{prefix}*")) == []


@pytest.mark.parametrize(("url_user", "phrase"), [
    (":wrong-one", "user name or password"),
    ("noscripts:pw", "lacks a permission"),
    ("nohset:pw", "lacks a permission"),
])
def test_a_store_that_refuses_the_configuration_answers_500_and_logs_one_line(serve, guarded_server, prefix, caplog, url_user, phrase):
    """Per request, a wrong password or a missing ACL permission answers 500 without Retry-After
    (retrying never helps), logs one line naming the problem and no traceback, and not again
    for the next requests of the minute."""
    url = f"redis://{url_user}@127.0.0.1:{guarded_server.port}/0"
    server = serve([("/", Counter)], redis_session=app_settings(url, prefix))
    browser = server.browser()
    responses = [browser.get("/") for _ in range(3)]
    assert [response.status for response in responses] == [500] * 3
    assert all(response.header("Retry-After") is None for response in responses)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR and record.name == "redis_session"]
    assert len(errors) == 1 and phrase in errors[0].getMessage() and errors[0].exc_info is None
    assert "Traceback" not in caplog.text and "wrong-one" not in caplog.text


def test_flask_answers_500_for_a_store_that_refuses_the_configuration(guarded_server, prefix, caplog):
    """On Flask a wrong password is also a 500 with one log line, never a 503."""
    app = flask.Flask("refused")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=f"redis://:wrong-one@127.0.0.1:{guarded_server.port}/0",
                      SESSION_REDIS_PREFIX=prefix)
    setup_flask_session(app)

    @app.route("/")
    def count() -> str:
        return str(flask.request.session.incr("count"))  # type: ignore[attr-defined]

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(2)] == [500, 500]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR and record.name == "redis_session"]
    assert len(errors) == 1 and "user name or password" in errors[0].getMessage()


@pytest.mark.parametrize(("key", "suggestion"), [
    ("SESSION_EXPIRES", "SESSION_EXPIRE"), ("SESSION_REDIS_PREFX", "SESSION_REDIS_PREFIX"),
    ("SESSION_MAX_LIFETIMES", "SESSION_MAX_LIFETIME"),
])
def test_flask_warns_about_a_misspelt_session_key(key, suggestion):
    """A SESSION_* key that is no setting but looks like one warns at setup, naming the setting
    it probably meant (the default stays in force otherwise, silently), and the warning points
    at the application's own setup_session() line, not into the library."""
    app = flask.Flask("misspelt")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS="memory://misspelt", **{key: 60})
    with pytest.warns(ConfigurationWarning, match=f"{key} is not a redis_session setting.*did you mean {suggestion}") as caught:
        setup_flask_session(app)
    assert caught[0].filename == __file__


def test_flask_keys_of_flask_and_of_other_extensions_pass_without_a_warning():
    """Flask's own session keys and other extensions' keys (SESSION_TYPE of Flask-Session) do not warn."""
    app = flask.Flask("quiet")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS="memory://quiet", SESSION_TYPE="redis",
                      SESSION_COOKIE_HTTPONLY=False, SESSION_REFRESH_EACH_REQUEST=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup_flask_session(app)
