"""The counter from redis-session's README, unchanged in spirit: every visit adds one.

Run it with ``python examples/tornado_counter.py --session-redis=memory://`` (no Redis needed)
or point ``--session-redis`` at a server. All ``--session-*`` flags apply; ``--help`` lists them.
"""

import os

import tornado.httpserver
import tornado.ioloop
import tornado.web
from tornado.options import define, options, parse_command_line

from redis_session.tornado_session import SessionHandler

define("port", default=3000, help="run on the given port", type=int)
define("address", default="127.0.0.1", help="listen on this address", type=str)
define("cookie-secret", default=os.environ.get("COOKIE_SECRET", "change-me-in-production"),
       help="secret that signs the session cookie (or set COOKIE_SECRET)", type=str)


class MainHandler(SessionHandler):
    def get(self) -> None:
        count = self.session.count.int
        self.write(f"Current session value of count:{count}\n")
        self.session.count = count + 1
        self.write(f"Current session value of count:{self.session.count.int}\n")


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", MainHandler)], cookie_secret=options.cookie_secret)


def main() -> None:
    parse_command_line()
    server = tornado.httpserver.HTTPServer(make_app())
    server.listen(options.port, address=options.address)
    print(f"counter listening on http://{options.address}:{options.port}/ "
          f"(store {options.session_redis})", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
