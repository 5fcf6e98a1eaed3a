"""examples/tornado_login.py, run as a user would run it, driven over HTTP like a browser.

The example runs as its own process on a free port, against the test run's redis-server, with a
prefix of its own: signing in (xsrf-protected forms), flashes across redirects, the fixation
defence at login, the "your sessions" page with its revoke buttons, and logging out.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import tornado.web

from tests.redis_servers import RedisServer, free_port
from tests.web import Browser, Response

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tornado_login.py"
COOKIE = "session-id"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class LoginApp:
    """The running example: its URL and the secret it signs cookies with."""

    def __init__(self, url: str, cookie_secret: str) -> None:
        self.url = url
        self.cookie_secret = cookie_secret

    def browser(self) -> Browser:
        return Browser(self.url)

    def session_id(self, browser: Browser) -> str:
        value = tornado.web.decode_signed_value(self.cookie_secret, COOKIE, browser.cookies[COOKIE].strip('"'))
        assert value is not None
        return value.decode()


@pytest.fixture
def login_app(redis_server: RedisServer, prefix: str, tmp_path: Path) -> Iterator[LoginApp]:
    """python examples/tornado_login.py on a free port, the test's redis-server and prefix, no Secure flag."""
    port, cookie_secret = free_port(), secrets.token_urlsafe(32)
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), f"--port={port}", f"--session-redis={redis_server.url}",
             f"--session-redis-prefix={prefix}", "--session-cookie-secure=false", f"--cookie-secret={cookie_secret}"],
            stdout=output, stderr=subprocess.STDOUT,
        )
    app = LoginApp(f"http://127.0.0.1:{port}", cookie_secret)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                app.browser().get("/")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the login example did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield app
    finally:
        process.terminate()
        process.wait(10)
    assert "Traceback" not in log.read_text(), log.read_text()


# -- a user's actions ------------------------------------------------------------------------


def submit(browser: Browser, page: Response, action: str, **fields: str) -> Response:
    """Post a form of ``page`` (with the page's _xsrf token) to ``action``."""
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert match, f"no xsrf-protected form on the page: {page.text}"
    return browser.post(action, urlencode({"_xsrf": match.group(1), **fields}).encode(), headers=FORM)


def sign_in(browser: Browser, user: str, password: str = "secret") -> Response:
    return submit(browser, browser.get("/login"), "/login", user=user, password=password)


def signed_in_browser(app: LoginApp, user: str) -> Browser:
    browser = app.browser()
    assert sign_in(browser, user).status == 302
    return browser


def shown_flashes(page: Response) -> list[str]:
    return re.findall(r'<p class="[^"]*">([^<]*)</p>', page.text)


def session_rows(page: Response) -> list[str]:
    return re.findall(r"<tr><td>.*?</tr>", page.text)


def own_handle_prefix(page: Response) -> str:
    match = re.search(r"<tr><td>([0-9a-f]{8})</td>(?:<td>[^<]*</td>){2}<td>this session</td></tr>", page.text)
    assert match, page.text
    return match.group(1)


def revoke_handles(page: Response) -> list[str]:
    return re.findall(r"name=handle value=([0-9a-f]+)>", page.text)


# -- the tests -------------------------------------------------------------------------------


def test_a_wrong_password_redirects_back_to_the_form_with_an_error(login_app):
    """A wrong password redirects to /login, which shows the error once; the visitor stays signed out."""
    browser = login_app.browser()
    form = browser.get("/login")
    assert form.status == 200 and "_xsrf" in browser.cookies

    refused = submit(browser, form, "/login", user="alice", password="wrong")

    assert (refused.status, refused.header("Location")) == (302, "/login")
    again = browser.get("/login")
    assert '<p class="error">Wrong user name or password.</p>' in again.text
    assert shown_flashes(browser.get("/login")) == []
    assert "You are not signed in" in browser.get("/").text


def test_a_form_without_the_xsrf_token_is_refused(login_app):
    """Posting the login form without its _xsrf token is a 403 and signs nobody in."""
    browser = login_app.browser()
    browser.get("/login")
    response = browser.post("/login", urlencode({"user": "alice", "password": "secret"}).encode(), headers=FORM)
    assert response.status == 403
    assert "You are not signed in" in browser.get("/").text


def test_signing_in_greets_once_and_changes_the_session_id(login_app):
    """The right password redirects to / with "Welcome, alice!" shown once, under a new session id."""
    browser = login_app.browser()
    submit(browser, browser.get("/login"), "/login", user="alice", password="wrong")
    before_login = dict(browser.cookies)
    anonymous_id = login_app.session_id(browser)  # the failed attempt's flash started a session

    signed_in = sign_in(browser, "alice")

    assert (signed_in.status, signed_in.header("Location")) == (302, "/")
    assert login_app.session_id(browser) != anonymous_id
    home = browser.get("/")
    assert shown_flashes(home) == ["Welcome, alice!"]
    assert "Signed in as <b>alice</b>" in home.text
    reloaded = browser.get("/")
    assert "Welcome" not in reloaded.text and "Signed in as <b>alice</b>" in reloaded.text

    replay = login_app.browser()
    replay.cookies = before_login
    assert "You are not signed in" in replay.get("/").text


def test_your_sessions_lists_each_browser_signed_in_as_the_user(login_app):
    """/sessions lists this session, and a second browser signing in as alice appears there too."""
    laptop = signed_in_browser(login_app, "alice")
    page = laptop.get("/sessions")
    assert len(session_rows(page)) == 1 and "this session" in page.text

    signed_in_browser(login_app, "alice")
    signed_in_browser(login_app, "bob")

    page = laptop.get("/sessions")
    rows = session_rows(page)
    assert len(rows) == 2
    assert sum("this session" in row for row in rows) == 1
    assert len(revoke_handles(page)) == 1
    assert all("UTC" in row for row in rows)


def test_sign_out_everywhere_else_ends_the_other_browsers_session(login_app):
    """"Sign out everywhere else" in browser 1 ends browser 2's session; browser 1 stays signed in."""
    laptop, phone = signed_in_browser(login_app, "alice"), signed_in_browser(login_app, "alice")
    assert "Signed in as <b>alice</b>" in phone.get("/").text

    ended = submit(laptop, laptop.get("/sessions"), "/sessions/revoke-others")

    assert (ended.status, ended.header("Location")) == (302, "/sessions")
    page = laptop.get("/sessions")
    assert "Signed out of 1 other session(s)." in shown_flashes(page)
    assert len(session_rows(page)) == 1
    assert "You are not signed in" in phone.get("/").text
    assert "Signed in as <b>alice</b>" in laptop.get("/").text


def test_ending_one_session_by_its_handle(login_app):
    """The End button next to a session ends exactly that browser's session."""
    laptop, phone, tablet = (signed_in_browser(login_app, "alice") for _ in range(3))
    tablet_prefix = own_handle_prefix(tablet.get("/sessions"))
    page = laptop.get("/sessions")
    (tablet_handle,) = [handle for handle in revoke_handles(page) if handle.startswith(tablet_prefix)]

    ended = submit(laptop, page, "/sessions/revoke", handle=tablet_handle)

    assert (ended.status, ended.header("Location")) == (302, "/sessions")
    page = laptop.get("/sessions")
    assert "Session ended." in shown_flashes(page)
    assert len(session_rows(page)) == 2
    assert "You are not signed in" in tablet.get("/").text
    assert "Signed in as <b>alice</b>" in phone.get("/").text

    again = submit(laptop, page, "/sessions/revoke", handle=tablet_handle)
    assert again.status == 302
    assert "That session had already ended." in shown_flashes(laptop.get("/sessions"))


def test_signing_out_shows_a_flash_and_the_old_cookie_is_anonymous(login_app):
    """Log out redirects to / saying "You have been signed out."; the cookie from before is anonymous."""
    browser = signed_in_browser(login_app, "alice")
    browser.get("/")  # the welcome flash
    before_logout = dict(browser.cookies)
    home = browser.get("/")

    signed_out = submit(browser, home, "/logout")

    assert (signed_out.status, signed_out.header("Location")) == (302, "/")
    home = browser.get("/")
    assert shown_flashes(home) == ["You have been signed out."]
    assert "You are not signed in" in home.text
    replay = login_app.browser()
    replay.cookies = before_logout
    assert "You are not signed in" in replay.get("/").text
    sessions_page = replay.get("/sessions")
    assert sessions_page.status == 302 and sessions_page.header("Location").startswith("/login")
