"""The README's Tornado quick start (a coroutine handler), run by tests/test_quickstarts.py:

    python examples/quickstart_coroutine.py --session-redis=memory:// --session-cookie-secure=false
"""

import asyncio

import tornado.web
from tornado.options import define, options, parse_command_line

from redis_session.tornado_session import AsyncSessionHandler


class MainHandler(AsyncSessionHandler):
    async def get(self) -> None:
        count = (await self.session.count).int      # each Redis round trip is awaited:
        await self.session.set("count", count + 1)  # meanwhile the IOLoop serves others
        visits = await self.session.incr("visits")
        self.write(f"count {count + 1}, visits {visits}\n")


async def main() -> None:
    define("port", default=3000)
    parse_command_line()
    app = tornado.web.Application([(r"/", MainHandler)],
                                  cookie_secret="a long random secret")
    app.listen(options.port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
