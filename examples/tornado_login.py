"""Login done right with redis_session: regenerate at login, flash across redirects, logout,
and a "your sessions" page that can end the user's other sessions.

Run: ``python examples/tornado_login.py --session-redis=memory:// --session-cookie-secure=false``
then open http://127.0.0.1:3000/ (any user name; the password is "secret").
"""

from __future__ import annotations

import datetime
import hmac
import html
import os

import tornado.httpserver
import tornado.ioloop
import tornado.web
from tornado.options import define, options, parse_command_line

from redis_session.tornado_session import UserSessionHandler

define("port", default=3000, help="run on the given port", type=int)
define("address", default="127.0.0.1", help="listen on this address", type=str)
define("cookie-secret", default=os.environ.get("COOKIE_SECRET", "change-me-in-production"),
       help="secret that signs the cookies (or set COOKIE_SECRET)", type=str)

DEMO_PASSWORD = "secret"


class BaseHandler(UserSessionHandler):  # current_user is the user bind_user() bound the session to
    def page(self, title: str, body: str) -> None:
        messages = "".join(
            f'<p class="{html.escape(category)}">{html.escape(message)}</p>'
            for category, message in self.get_flashed_messages()
        )
        self.write(f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{messages}{body}")


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class HomeHandler(BaseHandler):
    def get(self) -> None:
        user = self.current_user
        if user:
            body = (f"<p>Signed in as <b>{html.escape(user)}</b>.</p><p><a href='/sessions'>Your sessions</a></p>"
                    f"<form method=post action=/logout>{self.xsrf_form_html()}<button>Log out</button></form>")
        else:
            body = "<p>You are not signed in. <a href='/login'>Sign in</a></p>"
        self.page("Home", body)


class LoginHandler(BaseHandler):
    def get(self) -> None:
        self.page("Sign in", f"<form method=post>{self.xsrf_form_html()}<input name=user placeholder=user> "
                             "<input name=password type=password placeholder=password> <button>Sign in</button></form>")

    def post(self) -> None:
        user = self.get_body_argument("user", "").strip()
        password = self.get_body_argument("password", "")
        if not user or not hmac.compare_digest(password.encode(), DEMO_PASSWORD.encode()):
            self.flash("Wrong user name or password.", "error")
            self.redirect("/login")
            return
        # A new id at login: an id planted or seen before login is now worthless (fixation).
        self.session.bind_user(user)
        self.flash(f"Welcome, {user}!")
        self.redirect("/")


class LogoutHandler(BaseHandler):
    def post(self) -> None:
        self.session.destroy()
        self.flash("You have been signed out.")  # lands in a fresh, anonymous session
        self.redirect("/")


class SessionsHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        rows = []
        for info in self.session_admin.sessions_for_user(self.current_user):
            this = info.handle == self.session.handle
            action = "this session" if this else (
                f"<form method=post action=/sessions/revoke>{self.xsrf_form_html()}"
                f"<input type=hidden name=handle value={info.handle}><button>End</button></form>")
            rows.append(f"<tr><td>{info.handle[:8]}</td><td>{when(info.created)}</td>"
                        f"<td>{when(info.last_seen)}</td><td>{action}</td></tr>")
        self.page("Your sessions",
                  "<table><tr><th>session</th><th>started</th><th>last seen</th><th></th></tr>"
                  + "".join(rows) + "</table>"
                  f"<form method=post action=/sessions/revoke-others>{self.xsrf_form_html()}"
                  "<button>Sign out everywhere else</button></form>")


class RevokeHandler(BaseHandler):
    @tornado.web.authenticated
    def post(self) -> None:
        ended = self.session_admin.revoke(self.current_user, self.get_body_argument("handle", ""))
        self.flash("Session ended." if ended else "That session had already ended.")
        self.redirect("/sessions")


class RevokeOthersHandler(BaseHandler):
    @tornado.web.authenticated
    def post(self) -> None:
        ended = self.session_admin.revoke_user(self.current_user, keep=self.session.handle)
        self.flash(f"Signed out of {ended} other session(s).")
        self.redirect("/sessions")


def make_app(**settings: object) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/", HomeHandler),
            (r"/login", LoginHandler),
            (r"/logout", LogoutHandler),
            (r"/sessions", SessionsHandler),
            (r"/sessions/revoke", RevokeHandler),
            (r"/sessions/revoke-others", RevokeOthersHandler),
        ],
        cookie_secret=options.cookie_secret,
        login_url="/login",
        xsrf_cookies=True,
        **settings,
    )


def main() -> None:
    parse_command_line()
    server = tornado.httpserver.HTTPServer(make_app())
    server.listen(options.port, address=options.address)
    print(f"login example on http://{options.address}:{options.port}/ (store {options.session_redis})", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
