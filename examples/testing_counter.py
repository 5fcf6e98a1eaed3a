"""Testing an application that uses sessions: the quick starts' counters, each test on a
``memory://`` store of its own, so nothing needs a Redis server and no test sees another's
sessions. Run it with pytest (tests/test_testing_example.py does):

    python -m pytest examples/testing_counter.py
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator

import flask.testing
import pytest
import tornado.testing
import tornado.web
from quickstart_tornado import MainHandler


def fresh_store() -> str:
    """A ``memory://`` URL no other test uses: its own in-process server, empty."""
    return f"memory://test-{uuid.uuid4().hex}"


class TestTornadoCounter(tornado.testing.AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        # cookie-secure off: the test client speaks plain HTTP
        return tornado.web.Application([(r"/", MainHandler)], cookie_secret="test secret",
                                       redis_session={"redis": fresh_store(), "cookie-secure": False})

    def test_each_visit_counts_once_per_browser(self) -> None:
        first = self.fetch("/")
        assert first.body == b"count 1, visits 1\n"
        cookie = first.headers["Set-Cookie"].split(";", 1)[0]
        assert self.fetch("/", headers={"Cookie": cookie}).body == b"count 2, visits 2\n"
        assert self.fetch("/").body == b"count 1, visits 1\n"  # another browser: no cookie


@pytest.fixture
def flask_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[flask.testing.FlaskClient]:
    monkeypatch.setenv("FLASK_SESSION_REDIS", fresh_store())  # read by app.config.from_prefixed_env()
    quickstart = importlib.import_module("quickstart_flask")
    yield importlib.reload(quickstart).app.test_client()  # reloaded: a new app on the new store


def test_the_flask_counter_counts_per_browser(flask_client: flask.testing.FlaskClient) -> None:
    assert flask_client.get("/").text == "count 1, visits 1\n"
    assert flask_client.get("/").text == "count 2, visits 2\n"  # the test client keeps cookies
    assert flask_client.application.test_client().get("/").text == "count 1, visits 1\n"
