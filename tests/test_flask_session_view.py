"""``flask.session`` on the session's Redis hash (``setup_session(app, flask_session=True)``): the
dict Flask code expects, beside ``request.session``; Flask-Login, Flask-WTF and ``flash()`` through
Redis, with the real packages."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import flask
import flask_login
import pytest
import redis
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import StringField

from redis_session.flask_session import current_session, setup_session
from redis_session.protocol import session_key
from redis_session.settings import SessionSettings
from tests.support import COOKIE_SECRET

COOKIE = "session-id"

VALUES: dict[str, Any] = {
    "text": "café",
    "number": 42,
    "big": 2**70,
    "ratio": 1.5,
    "yes": True,
    "no": False,
    "nothing": None,
    "items": [1, "two", 3.0, None, True],
    "mapping": {"a": 1, "b": [1, 2], "c": {"d": None}},
    "pair": (1, "two"),
    "nested": {"when": datetime(2026, 12, 4, 18, 30, 1, 123456, tzinfo=timezone.utc), "pairs": [(1, 2)]},
    "blob": b"\x00\xffbytes",
    "naive": datetime(2026, 1, 2, 3, 4, 5, 678901),
    "aware": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "markup": Markup("<b>bold</b>"),
}


def make_app(store_url: str, prefix: str, **config: Any) -> flask.Flask:
    app = flask.Flask("views")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=store_url, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False, **config)
    setup_session(app, flask_session=True)

    @app.post("/set/<name>")
    def set_value(name: str) -> str:
        flask.session[name] = VALUES[name]
        return "ok"

    @app.get("/get/<name>")
    def get_value(name: str) -> dict[str, Any]:
        value = flask.session.get(name, "absent")
        return {"type": type(value).__name__, "same": value == VALUES.get(name) and type(value) is type(VALUES.get(name))}

    @app.post("/both")
    def both_views() -> str:
        flask.session["from_flask"] = 5
        current_session().set("from_typed", "text")
        return "ok"

    @app.get("/read-both")
    def read_both() -> dict[str, Any]:
        typed = current_session()
        return {"flask_sees_typed": flask.session.get("from_typed"), "typed_sees_flask": typed.from_flask.int}

    @app.get("/untouched")
    def untouched() -> str:
        return "no session here"

    @app.post("/cart/<item>")
    def add_to_cart(item: str) -> str:
        flask.session.setdefault("cart", []).append(item)  # in place: no session.modified needed
        return "ok"

    @app.get("/cart")
    def cart() -> dict[str, Any]:
        return {"cart": flask.session.get("cart", [])}

    @app.post("/permanent/<choice>")
    def permanent(choice: str) -> str:
        flask.session.permanent = choice == "yes"
        flask.session["seen"] = True
        return "ok"

    @app.get("/seen")
    def seen() -> str:
        return str(flask.session.get("seen"))

    @app.get("/keys")
    def keys() -> dict[str, Any]:
        return dict(flask.session)

    return app


def session_id_in(client: Any) -> str | None:
    cookie = client.get_cookie(COOKIE)
    if cookie is None:
        return None
    app = client.application
    session_id: str = app.extensions["redis_session"].serializer.loads(cookie.value)
    return session_id


@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_type_flasks_cookie_session_takes_reads_back_exactly(store_url, prefix, name):
    """str, int, float, bool, None, list, dict, tuple, bytes, datetime (microseconds and offset
    kept, also nested), UUID and Markup come back as the same value of the same type."""
    client = make_app(store_url, prefix).test_client()
    assert client.post(f"/set/{name}").status_code == 200
    assert client.get(f"/get/{name}").json == {"type": type(VALUES[name]).__name__, "same": True}


def test_the_two_views_read_each_others_fields(store_url, prefix):
    """A number flask.session stored is .int in request.session; text request.session wrote is a
    str in flask.session."""
    client = make_app(store_url, prefix).test_client()
    client.post("/both")
    assert client.get("/read-both").json == {"flask_sees_typed": "text", "typed_sees_flask": 5}


def test_a_field_rewritten_through_request_session_reads_as_what_it_now_holds(store_url, prefix, registry):
    """flask.session stored an int; request.session then writes text there: flask.session reads
    the text (the type flask.session noted is dropped with the old value)."""
    app = make_app(store_url, prefix)

    @app.post("/rewrite")
    def rewrite() -> str:
        current_session().number = "now text"
        return "ok"

    client = app.test_client()
    client.post("/set/number")
    client.post("/rewrite")
    assert client.get("/get/number").json["type"] == "str"


def test_a_request_that_never_touches_the_session_sends_nothing(store_url, prefix, monkeypatch):
    """No Redis command and no cookie for a view that does not use the session, even with a
    session cookie; one round trip for a view that reads it."""
    app = make_app(store_url, prefix)
    client = app.test_client()
    client.post("/set/number")
    store = app.extensions["redis_session"].store
    calls: list[Any] = []
    execute = store.execute
    monkeypatch.setattr(store, "execute", lambda call: calls.append(call) or execute(call))
    response = client.get("/untouched")
    assert calls == [] and response.headers.getlist("Set-Cookie") == [] and "Cookie" not in response.vary
    response = client.get("/get/number")
    assert len(calls) == 1 and "Cookie" in response.vary


def test_an_in_place_change_is_saved_without_setting_modified(store_url, prefix):
    """session["cart"].append(x) in one request is there in the next."""
    client = make_app(store_url, prefix).test_client()
    client.post("/cart/apple")
    client.post("/cart/pear")
    assert client.get("/cart").json == {"cart": ["apple", "pear"]}


def test_two_concurrent_requests_changing_different_keys_both_land(store_url, prefix):
    """Both requests load the session, then each changes its own key: both changes are stored
    (Flask's cookie session, and a server-side session saved whole, keep only the last)."""
    app = make_app(store_url, prefix)
    both_loaded = threading.Barrier(2, timeout=10)

    @app.post("/concurrent/<key>")
    def concurrent(key: str) -> str:
        len(flask.session)  # loaded
        both_loaded.wait()
        flask.session[key] = key.upper()
        return "ok"

    first = app.test_client()
    first.post("/set/text")
    second = app.test_client()
    second.set_cookie(COOKIE, first.get_cookie(COOKIE).value)
    threads = [threading.Thread(target=client.post, args=(f"/concurrent/{key}",))
               for client, key in ((first, "left"), (second, "right"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first.get("/keys").json == {"text": "café", "left": "LEFT", "right": "RIGHT"}


def test_permanent_sessions_get_the_flask_lifetime_and_refresh_each_request(store_url, prefix):
    """session.permanent: the cookie lives PERMANENT_SESSION_LIFETIME and, with
    SESSION_REFRESH_EACH_REQUEST (Flask's default), is sent again on each request that uses the
    session; otherwise it is a browser-session cookie, sent only when it changes."""
    client = make_app(store_url, prefix, PERMANENT_SESSION_LIFETIME=timedelta(hours=3)).test_client()
    created = client.post("/permanent/yes")
    assert "Max-Age=10800" in created.headers["Set-Cookie"]
    again = client.get("/seen")
    assert again.text == "True" and "Max-Age=10800" in again.headers["Set-Cookie"]

    browser_session = make_app(store_url, prefix).test_client()
    created = browser_session.post("/permanent/no")
    assert "Max-Age" not in created.headers["Set-Cookie"] and "Expires" not in created.headers["Set-Cookie"]
    assert browser_session.get("/seen").headers.getlist("Set-Cookie") == []

    no_refresh = make_app(store_url, prefix, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    no_refresh.post("/permanent/yes")
    assert no_refresh.get("/seen").headers.getlist("Set-Cookie") == []


def test_session_transaction_sets_up_and_reads_state_for_a_test(store_url, prefix):
    """Flask's client.session_transaction() works on the server-side session."""
    client = make_app(store_url, prefix).test_client()
    with client.session_transaction() as session:
        session["number"] = 42
    assert client.get("/get/number").json == {"type": "int", "same": True}
    client.post("/cart/apple")
    with client.session_transaction() as session:
        assert session["cart"] == ["apple"]


def test_a_save_after_the_session_was_ended_elsewhere_starts_a_new_one(store_url, prefix, registry):
    """No resurrection: the session is deleted while a request holds it; its save goes to a new
    id, and the deleted key stays deleted."""
    app = make_app(store_url, prefix)
    raw = registry.store_for(SessionSettings(redis_url=store_url)).client

    @app.post("/late")
    def late() -> str:
        len(flask.session)
        raw.delete(session_key(prefix, session_id_in(client) or ""))  # a logout elsewhere, or an admin
        flask.session["late"] = 1
        return "ok"

    client = app.test_client()
    client.post("/set/number")
    old_id = session_id_in(client)
    client.post("/late")
    assert session_id_in(client) not in (None, old_id)
    assert raw.exists(session_key(prefix, old_id)) == 0


def test_a_store_outage_at_save_is_a_503_not_a_500(prefix):
    """The view's changes cannot be saved: the response is 503 with Retry-After, not the view's
    200 (which would claim a change that was not made) and not a 500."""
    app = make_app("redis://127.0.0.1:1/0", prefix)
    response = app.test_client().post("/set/number")
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_a_value_past_a_limit_at_save_is_a_413_and_an_unstorable_one_a_500_logged_once(store_url, prefix, caplog):
    """What a view put in flask.session is checked when the request ends: a value past
    session-max-value-bytes answers 413 with one log line (input too large, nothing stored);
    one that cannot be stored at all (a set) is the view's bug, a 500 whose error Flask logs
    once, not a second time for the error page."""
    app = make_app(store_url, prefix)

    @app.post("/big")
    def big() -> str:
        flask.session["big"] = "x" * 200_000
        return "ok"

    @app.post("/unstorable")
    def unstorable() -> str:
        flask.session["tags"] = {"a", "b"}
        return "ok"

    client = app.test_client()
    client.post("/set/number")
    caplog.set_level(logging.WARNING)
    response = client.post("/big")
    assert (response.status_code, response.text) == (413, "Content Too Large: the session cannot hold this much; nothing was stored.\n")
    assert [record.levelno for record in caplog.records] == [logging.WARNING] and "413 POST /big" in caplog.text
    assert client.get("/keys").json == {"number": VALUES["number"]}
    caplog.clear()
    assert client.post("/unstorable").status_code == 500
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "SessionTypeError" in (errors[0].exc_text or caplog.text), caplog.text
    assert client.get("/keys").json == {"number": VALUES["number"]}


# -- Flask-Login, Flask-WTF, flash() ----------------------------------------------------------


class User(flask_login.UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def login_app(store_url: str, prefix: str) -> flask.Flask:
    app = make_app(store_url, prefix, WTF_CSRF_ENABLED=True)
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    class NoteForm(FlaskForm):
        note = StringField()

    @app.post("/login/<user>")
    def login(user: str) -> str:
        flask_login.login_user(User(user), remember=flask.request.args.get("remember") == "1")
        flask.flash(f"Welcome, {user}!")
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        flask_login.logout_user()
        flask.flash("Bye.")
        return "ok"

    @app.get("/private")
    @flask_login.login_required
    def private() -> str:
        return f"hello {flask_login.current_user.id}, bound to {current_session().user_id}"

    @app.route("/form", methods=["GET", "POST"])
    def form() -> str:
        note = NoteForm()
        if note.validate_on_submit():
            return f"saved {note.note.data}"
        return flask.render_template_string("{{ form.csrf_token._value() }}", form=note)

    @app.get("/messages")
    def messages() -> str:
        return flask.render_template_string(
            "{% for message in get_flashed_messages() %}<p>{{ message }}</p>{% endfor %}"
        )

    return app


def test_flask_login_keeps_its_state_in_redis_and_a_login_binds_a_new_session_id(store_url, prefix, registry):
    """login_user: a new session id (an id planted before login is worthless), bound to the
    user (SessionAdmin lists it); login_required pages work; logout_user ends the session."""
    app = login_app(store_url, prefix)
    client = app.test_client()
    client.post("/set/text")  # an anonymous session first
    anonymous_id = session_id_in(client)
    assert client.get("/private").status_code == 401

    client.post("/login/alice")
    assert session_id_in(client) not in (None, anonymous_id)
    assert client.get("/private").text == "hello alice, bound to alice"
    assert client.get("/get/text").json["same"]  # the data moved with the session
    raw = registry.store_for(SessionSettings(redis_url=store_url)).client
    assert raw.hget(session_key(prefix, session_id_in(client)), "_user_id") == b"alice"
    assert [info.user_id for info in app.extensions["redis_session"].admin().sessions_for_user("alice")] == ["alice"]

    logged_in_id = session_id_in(client)
    client.post("/logout")
    assert client.get("/private").status_code == 401
    assert raw.exists(session_key(prefix, logged_in_id)) == 0
    assert app.extensions["redis_session"].admin().sessions_for_user("alice") == []


# Flask-Login 0.6.3 (its newest release) sets the remember cookie's expiry with
# datetime.utcnow(), which Python 3.12 deprecates: its warning, not ours.
@pytest.mark.filterwarnings(r"ignore:datetime\.datetime\.utcnow\(\) is deprecated:DeprecationWarning:flask_login.login_manager")
def test_a_remember_me_cookie_logs_in_a_new_browser_session_bound_to_the_user(store_url, prefix):
    """The remember cookie alone (the session cookie gone, as after closing the browser) logs
    the user in again, into a session bound to them."""
    app = login_app(store_url, prefix)
    client = app.test_client()
    client.post("/login/bob?remember=1")
    client.delete_cookie(COOKIE)
    assert client.get("/private").text == "hello bob, bound to bob"


def test_flask_wtf_csrf_and_flashed_messages_go_through_redis(store_url, prefix, registry):
    """A form's CSRF token lives in the server-side session: a POST without it is refused, with
    it accepted; flash() messages show in a Jinja template's get_flashed_messages() once."""
    app = login_app(store_url, prefix)
    client = app.test_client()
    token = client.get("/form").text
    assert client.post("/form", data={"note": "hi"}).text != "saved hi"
    assert client.post("/form", data={"note": "hi", "csrf_token": token}).text == "saved hi"
    raw = registry.store_for(SessionSettings(redis_url=store_url)).client
    assert raw.hget(session_key(prefix, session_id_in(client)), "csrf_token") is not None

    client.post("/login/carol")
    assert client.get("/messages").text == "<p>Welcome, carol!</p>"
    assert client.get("/messages").text == ""


def test_the_typed_accessor_type_checks_with_mypy_strict(tmp_path):
    """A user's Flask app using current_session() passes mypy --strict."""
    from mypy import api

    app_file = tmp_path / "user_app.py"
    app_file.write_text(
        "import flask\n"
        "from redis_session.flask_session import current_session, setup_session\n\n"
        "app = flask.Flask(__name__)\n"
        "setup_session(app, flask_session=True)\n\n\n"
        "@app.get('/')\n"
        "def index() -> str:\n"
        "    session = current_session()\n"
        "    visits: int = session.incr('visits')\n"
        "    name: str = session.name.str\n"
        "    return f'{name} {visits}'\n"
    )
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(app_file)])
    assert status == 0, out + err


def test_flask_session_on_a_real_redis_uses_one_hash_per_session(redis_server, prefix):
    """Everything both views store is one hash: the dict's keys, the typed fields, the type notes."""
    client = make_app(redis_server.url, prefix).test_client()
    client.post("/both")
    client.post("/set/pair")
    keys = list(redis.Redis(port=redis_server.port).scan_iter(match=f"{prefix}:*"))
    assert keys == [session_key(prefix, session_id_in(client) or "").encode()]


def test_a_store_outage_with_flask_login_is_a_503_for_session_pages_and_harmless_elsewhere(own_redis_server, prefix, caplog):
    """Redis stops while a user is signed in: a page that needs the session answers 503 with
    Retry-After (never a 500), a page that does not keeps its answer (Flask-Login still reads the
    session after every view), and both work again once Redis is back."""
    app = login_app(own_redis_server.url, prefix)

    @app.get("/plain")
    def plain() -> str:
        return "no session needed"

    client = app.test_client()
    try:
        client.post("/login/erin")
        own_redis_server.stop()
        private = client.get("/private")
        assert private.status_code == 503 and private.headers["Retry-After"]
        assert (client.get("/plain").status_code, client.get("/plain").text) == (200, "no session needed")
        assert "Traceback" not in caplog.text
        own_redis_server.start()
        assert client.get("/private").status_code in (200, 401)  # a Redis without persistence lost the session
    finally:
        app.extensions["redis_session"].close()


def test_the_testing_helpers_sign_a_flask_login_user_in(store_url, prefix):
    """start_session(app, user_id=...) on an app with flask.session and Flask-Login leaves what
    login_user leaves: @login_required lets the test client in, and fields keep their types."""
    from redis_session.testing import start_session

    app = login_app(store_url, prefix)
    client = app.test_client()
    start_session(app, user_id="frank", pair=VALUES["pair"]).set_on(client)
    assert client.get("/private").text == "hello frank, bound to frank"
    assert client.get("/get/pair").json == {"type": "tuple", "same": True}
