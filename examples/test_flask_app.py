"""A small Flask app and its tests, as a user of redis_session would write them with pytest:
the plugin's fixtures give each test a store of its own and a signed-in user in one line.

Run: ``python -m pytest examples/test_flask_app.py``.
"""

import pytest
from flask import Flask, abort, request

from redis_session.flask_session import setup_session
from redis_session.testing import stored, use_store, user_of

# In your own project this line goes in the conftest.py at the root of your tests.
pytest_plugins = ["redis_session.pytest_plugin"]


# -- the application ---------------------------------------------------------------------------


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="change-me", SESSION_REDIS="redis://localhost:6379")
    setup_session(app)

    @app.post("/login")
    def login() -> str:
        user = request.form["user"]  # (check the password here)
        request.session.bind_user(user)
        request.session.name = user.title()
        return "welcome"

    @app.get("/profile")
    def profile() -> str:
        if request.session.user_id is None:
            abort(401)
        return f"{request.session.name.str} ({request.session.user_id})"

    @app.post("/cart")
    def add_to_cart() -> str:
        return f"{request.session.incr('items')} items"

    return app


# -- its tests ---------------------------------------------------------------------------------
@pytest.fixture
def app(session_store_url: str) -> Flask:
    return use_store(create_app(), session_store_url)  # this test's own in-process store


def test_a_signed_in_user_sees_their_profile(app, login_as):
    client = app.test_client()
    login_as(app, "alice", name="Alice").set_on(client)

    assert client.get("/profile").text == "Alice (alice)"


def test_a_visitor_has_no_profile(app):
    assert app.test_client().get("/profile").status_code == 401


def test_logging_in_binds_the_session(app):
    response = app.test_client().post("/login", data={"user": "bob"})

    assert user_of(app, response) == "bob"
    assert stored(app, response)["name"].str == "Bob"


def test_the_cart_counts_in_the_session(app, login_as):
    client = app.test_client()
    login_as(app, "alice").set_on(client)

    client.post("/cart")
    client.post("/cart")

    assert stored(app, client)["items"].int == 2
