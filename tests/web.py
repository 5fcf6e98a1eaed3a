"""Serve Tornado applications over real HTTP on loopback, and a small cookie-keeping client.

The client keeps cookies the way a browser on https would (it ignores the Secure attribute, so
tests can see it without TLS) and exposes raw Set-Cookie headers for assertions.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie

import tornado.httpserver
import tornado.ioloop
import tornado.web

from redis_session.tornado_session import close_session_stores
from tests.redis_servers import free_port


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def header(self, name: str) -> str | None:
        for key, value in self.header_list:
            if key.lower() == name.lower():
                return value
        return None

    def headers(self, name: str) -> list[str]:
        return [value for key, value in self.header_list if key.lower() == name.lower()]

    @property
    def set_cookies(self) -> list[str]:
        return self.headers("Set-Cookie")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:80]!r}>"


class Browser:
    """An HTTP client with a cookie jar; ``cookies`` can be edited to forge what it sends."""

    def __init__(self, base_url: str) -> None:
        host_port = base_url.split("://", 1)[1].rstrip("/")
        self.host, port = host_port.split(":")
        self.port = int(port)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            sent = dict(headers or {})
            if self.cookies and "Cookie" not in sent:
                sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            connection.request(method, path, body=body, headers=sent)
            reply = connection.getresponse()
            response = Response(reply.status, reply.getheaders(), reply.read())
        finally:
            connection.close()
        for header in response.set_cookies:
            self._remember(header)
        return response

    def get(self, path: str = "/", **options: object) -> Response:
        return self.request("GET", path, **options)  # type: ignore[arg-type]

    def post(self, path: str = "/", body: bytes = b"", **options: object) -> Response:
        return self.request("POST", path, body=body, **options)  # type: ignore[arg-type]

    def _remember(self, header: str) -> None:
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            expired = morsel["max-age"] == "0" or (morsel["expires"] and "1970" in morsel["expires"])
            if expired or morsel.value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                # keep the quoted form Tornado sends, as a browser would echo it back
                raw = header.split("=", 1)[1].split(";", 1)[0]
                self.cookies[name] = raw


class LiveServer:
    """A Tornado Application served from its own thread and IOLoop."""

    def __init__(self, application: tornado.web.Application) -> None:
        self.application = application
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def listen() -> None:
            self._server = tornado.httpserver.HTTPServer(self.application)
            self._server.listen(self.port, address="127.0.0.1")

        loop.run_until_complete(listen())
        self._ready.set()
        loop.run_forever()
        self._server.stop() if self._server else None
        # the connection pools the async sessions opened on this loop die with it: close them
        loop.run_until_complete(close_session_stores(self.application))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def browser(self) -> Browser:
        return Browser(self.url)


def all_at_once(count: int, request: Callable[[int], Response]) -> list[Response]:
    """Send ``count`` requests from as many threads, released together by a barrier."""
    barrier = threading.Barrier(count)
    responses: list[Response | None] = [None] * count
    failures: list[Exception] = []

    def run(index: int) -> None:
        try:
            barrier.wait(30)
            responses[index] = request(index)
        except Exception as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    return [response for response in responses if response is not None]
