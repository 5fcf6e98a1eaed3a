"""Write a session with the real redis-session 0.2.1, in one request, the way a deployment of it
did, and print what the browser was given.

Runs in an environment where ``redis_session`` is redis-session 0.2.1 (see the
``legacy_0_2_1`` fixture in tests/test_upgrade.py), never beside this project's package:

    python write_with_0_2_1.py tornado|flask REDIS_URL PREFIX SECRET FIELDS_JSON [--unsigned] [--expire N]

Prints JSON: ``{"cookie": "<name>=<value>", "session_id": ..., "key": ...}``. ``--unsigned`` is
0.2.1's ``--session-cookie-secure=false`` (Tornado: a bare id); Flask always signs.
"""

import argparse
import json
import warnings

warnings.simplefilter("ignore")  # 0.2.1's dependencies of 2018 warn on today's Python

import redis_session  # noqa: E402 - redis-session 0.2.1 here

assert redis_session.__VERSION__ == "0.2.1", redis_session.__VERSION__


def tornado_session(options):
    import tornado.httpclient
    import tornado.httpserver
    import tornado.ioloop
    import tornado.testing
    import tornado.web
    from tornado.options import parse_command_line

    from redis_session.tornado_session import SessionHandler

    flags = ["app", "--session-redis=" + options.redis_url, "--session-redis-prefix=" + options.prefix,
             "--session-cookie-secure=" + ("false" if options.unsigned else "true")]
    if options.expire is not None:
        flags.append(f"--session-expire={options.expire}")
    parse_command_line(flags, final=False)
    written = {}

    class Write(SessionHandler):
        def get(self):
            for name, value in json.loads(options.fields).items():
                setattr(self.session, name, value)
            written["session_id"] = self.sessionId
            self.write("ok")

    application = tornado.web.Application([("/", Write)], cookie_secret=options.secret)
    listener, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(application)
    server.add_sockets([listener])

    async def visit():
        response = await tornado.httpclient.AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/")
        return response.headers.get_list("Set-Cookie")[0].split(";", 1)[0]

    cookie = tornado.ioloop.IOLoop.current().run_sync(visit)
    server.stop()
    return cookie, written["session_id"]


def flask_session(options):
    import flask

    from redis_session.flask_session import setup_session

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=options.secret, SESSION_REDIS=options.redis_url, SESSION_REDIS_PREFIX=options.prefix)
    if options.expire is not None:
        app.config["SESSION_EXPIRE"] = options.expire
    setup_session(app)
    written = {}

    @app.route("/")
    def write():
        for name, value in json.loads(options.fields).items():
            setattr(flask.request.session, name, value)
        written["session_id"] = flask.request.session.sessionId
        return "ok"

    response = app.test_client().get("/")
    return response.headers.getlist("Set-Cookie")[0].split(";", 1)[0], written["session_id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=["tornado", "flask"])
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("secret")
    parser.add_argument("fields")
    parser.add_argument("--unsigned", action="store_true")
    parser.add_argument("--expire", type=int)
    options = parser.parse_args()
    cookie, session_id = (tornado_session if options.framework == "tornado" else flask_session)(options)
    print(json.dumps({"cookie": cookie, "session_id": session_id, "key": f"{options.prefix}:sessions:{session_id}"}))


if __name__ == "__main__":
    main()
