"""The counter app bench/faults.py drives through each fault: one process of its own.

    python bench/fault_app.py '{"port": 8001, "cookie_secret": "...", "redis_session": {...}}'

``POST /incr`` is a :class:`~redis_session.tornado_session.SessionHandler` doing
``self.session.incr("count")`` and answering the new value; ``POST /incr-async`` is the same on
an :class:`~redis_session.tornado_session.AsyncSessionHandler`. Nothing else: no access log (a
5xx would be one error line per request), so what the process spends is the session's work.
It prints ``ready`` once it listens; warnings (one per 503) go to stderr.

A process of its own, so the harness's client threads do not share its interpreter lock, and
its memory (``/proc/<pid>/status``) is the app's alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import tornado.httpserver
import tornado.web

from redis_session.tornado_session import AsyncSessionHandler, SessionHandler, setup_session


class Incr(SessionHandler):
    def post(self) -> None:
        self.write(str(self.session.incr("count")))


class AsyncIncr(AsyncSessionHandler):
    async def post(self) -> None:
        self.write(str(await self.session.incr("count")))


def no_access_log(handler: tornado.web.RequestHandler) -> None:
    """Tornado logs every 5xx as an error line; the harness counts the statuses itself."""


def application(cookie_secret: str, redis_session: dict[str, Any]) -> tornado.web.Application:
    app = tornado.web.Application(
        [(r"/incr", Incr), (r"/incr-async", AsyncIncr)],
        cookie_secret=cookie_secret, redis_session=redis_session, log_function=no_access_log,
    )
    setup_session(app)  # a misconfiguration fails here, at start, not as a 500 per request
    return app


def main(argv: list[str]) -> None:
    options = json.loads(argv[0])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(application(options["cookie_secret"], options["redis_session"]))
        server.listen(options["port"], address="127.0.0.1")
        print("ready", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
