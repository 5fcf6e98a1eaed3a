"""The counter with coroutine handlers: Redis round trips never block the IOLoop.

Run: ``python examples/tornado_async_counter.py --session-redis=memory:// --session-cookie-secure=false``
"""

import os

import tornado.httpserver
import tornado.ioloop
import tornado.web
from tornado.options import define, options, parse_command_line

from redis_session.tornado_session import AsyncSessionHandler

define("port", default=3000, help="run on the given port", type=int)
define("address", default="127.0.0.1", help="listen on this address", type=str)
define("cookie-secret", default=os.environ.get("COOKIE_SECRET", "change-me-in-production"),
       help="secret that signs the session cookie (or set COOKIE_SECRET)", type=str)


class MainHandler(AsyncSessionHandler):
    async def get(self) -> None:
        count = (await self.session.count).int
        self.write(f"Current session value of count:{count}\n")
        await self.session.set("count", count + 1)
        self.write(f"Current session value of count:{(await self.session.count).int}\n")
        self.write(f"Visits counted atomically:{await self.session.incr('visits')}\n")


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", MainHandler)], cookie_secret=options.cookie_secret)


def main() -> None:
    parse_command_line()
    server = tornado.httpserver.HTTPServer(make_app())
    server.listen(options.port, address=options.address)
    print(f"async counter listening on http://{options.address}:{options.port}/ "
          f"(store {options.session_redis})", flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
