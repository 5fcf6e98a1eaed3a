"""The README's Tornado quick start (a blocking handler), run by tests/test_quickstarts.py:

    python examples/quickstart_tornado.py --session-redis=memory:// --session-cookie-secure=false
"""

import asyncio

import tornado.web
from tornado.options import define, options, parse_command_line

from redis_session.tornado_session import SessionHandler


class MainHandler(SessionHandler):
    def get(self) -> None:
        count = self.session.count.int        # read from Redis now; 0 if absent
        self.session.count = count + 1        # written now; the idle timer restarts
        visits = self.session.incr("visits")  # added on the server, atomically
        self.write(f"count {count + 1}, visits {visits}\n")


async def main() -> None:
    define("port", default=3000)
    parse_command_line()  # the --session-* flags too
    app = tornado.web.Application([(r"/", MainHandler)],
                                  cookie_secret="a long random secret")
    app.listen(options.port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
