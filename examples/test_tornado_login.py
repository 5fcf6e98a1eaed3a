"""Tests of examples/tornado_login.py as its author would write them: Tornado's own
AsyncHTTPTestCase, an in-process store per test, and sessions started without the login form.

Run: ``python -m pytest examples/test_tornado_login.py`` (or ``python -m unittest`` from examples/).
"""

from urllib.parse import urlencode

import tornado.web
from tornado.testing import AsyncHTTPTestCase
from tornado_login import make_app

from redis_session.testing import isolated_store, start_session, stored, use_store, user_of

# Tornado's XSRF check compares the form's _xsrf with the _xsrf cookie: any equal pair passes.
XSRF = "test-xsrf-token"


class LoginAppTest(AsyncHTTPTestCase):
    def get_app(self) -> tornado.web.Application:
        store = isolated_store()  # a fresh in-process store, for this test only
        self.addCleanup(store.close)
        self.app = use_store(make_app(), store.url)
        return self.app

    def post(self, path: str, cookie_header: str = "", **form: str):
        """POST a form the way the page's own form would (with the XSRF token)."""
        return self.fetch(path, method="POST", body=urlencode({"_xsrf": XSRF, **form}), follow_redirects=False,
                          headers={"Cookie": "; ".join(filter(None, [f"_xsrf={XSRF}", cookie_header]))})

    def test_a_signed_in_user_sees_their_sessions(self):
        # What the login view leaves: the session bound to alice.
        cookie = start_session(self.app, user_id="alice")

        page = self.fetch("/sessions", headers=cookie.headers)

        assert page.code == 200
        assert b"this session" in page.body

    def test_a_visitor_is_sent_to_the_login_page(self):
        page = self.fetch("/sessions", follow_redirects=False)

        assert page.code == 302
        assert page.headers["Location"].startswith("/login")

    def test_signing_in_binds_the_session_to_the_user(self):
        response = self.post("/login", user="alice", password="secret")

        assert response.code == 302
        assert user_of(self.app, response) == "alice"  # the session the response's cookie names

    def test_signing_out_ends_the_session(self):
        cookie = start_session(self.app, user_id="alice")

        response = self.post("/logout", cookie.header)

        assert response.code == 302
        assert stored(self.app, cookie) == {}
        assert user_of(self.app, cookie) is None

    def test_no_session_is_left_over_from_another_test(self):
        # test_a_signed_in_user_sees_their_sessions signed alice in, but in a store of its own.
        page = self.fetch("/sessions", headers=start_session(self.app, user_id="alice").headers)

        assert page.body.count(b"<tr><td>") == 1  # this session only
