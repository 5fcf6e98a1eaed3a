"""The benchmark's web apps: one scenario per process.

    python bench/apps.py SCENARIO --port=8001 --session-redis=redis://127.0.0.1:7001/0 [--prefix=P]

Every app serves ``/`` (the measured page), ``/__setup`` (creates one pre-filled session and
sets its cookie; used by bench/run.py before measuring the read scenarios) and ``/__stats``
(JSON counters: requests answered on ``/`` by status, and the Redis round trips and commands
this process sent, counted inside redis-py's connection classes).

Baselines are written the obvious way with redis-py and nothing else: a signed cookie carrying
a random id, then the Redis work of the scenario in the same number of round trips as the
library (pipelines, never MULTI/EXEC).
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import hashlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

COOKIE_SECRET = "bench-cookie-secret-0123456789abcdef"
COOKIE_NAME = "session-id"
TTL = 86400
SIX_FIELDS = {"a": "alice", "b": "bob", "c": "carol", "d": "dave", "e": "erin", "f": "frank"}
TWENTY_FIELDS = {f"f{i:02d}": f"value-{i:02d}" for i in range(20)}
CREATED_FIELD = "__rs:created"


class Counters:
    """What /__stats reports. A lock, because the Flask apps serve from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.round_trips = 0
        self.commands = 0
        self.redis_wait = 0.0  # seconds blocked in sync redis-py read_response (waiting for replies)
        self.gc_collections = [0, 0, 0]
        self.gc_collected = 0
        self.gc_seconds = 0.0
        self._gc_started = 0.0

    def waited(self, seconds: float) -> None:
        with self.lock:
            self.redis_wait += seconds

    def request(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1

    def sent(self, round_trips: int, commands: int) -> None:
        with self.lock:
            self.round_trips += round_trips
            self.commands += commands

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        """Time spent in the cyclic garbage collector, and what it found (gc.callbacks)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_started
            self.gc_collections[info["generation"]] += 1
            self.gc_collected += info["collected"]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"ok": self.ok, "failed": self.failed, "round_trips": self.round_trips, "commands": self.commands,
                    "gc_collections": list(self.gc_collections), "gc_collected": self.gc_collected,
                    "gc_seconds": self.gc_seconds, "redis_wait": self.redis_wait, "cpu": time.process_time()}


COUNTERS = Counters()


#: Set while a connection says hello (HELLO, CLIENT SETINFO, SELECT) or checks its health (PING):
#: that traffic comes with opening connections, not with requests, so it is not counted.
HANDSHAKE: contextvars.ContextVar[bool] = contextvars.ContextVar("HANDSHAKE", default=False)


def count_redis_traffic() -> None:
    """Count round trips (one per ``send_packed_command``: a single command or a whole pipeline)
    and commands (one per ``send_command``, ``len(commands)`` per ``pack_commands``) in redis-py's
    sync and asyncio connections, and time the sync ``read_response`` (the app blocked, waiting
    for Redis). The same wrappers run for the library and the baselines. Connection set-up and
    health checks are left out (see HANDSHAKE): with 64 connections a pool still growing during
    a measured window would otherwise add them to the requests."""
    import redis.asyncio.connection as async_connection
    import redis.connection as sync_connection

    for cls in (sync_connection.AbstractConnection, async_connection.AbstractConnection):
        original_send_packed = cls.send_packed_command
        original_send_command = cls.send_command
        original_pack_commands = cls.pack_commands

        def send_packed_command(self: Any, command: Any, *args: Any, _original: Any = original_send_packed, **kwargs: Any) -> Any:
            if not HANDSHAKE.get():
                COUNTERS.sent(1, 0)
            return _original(self, command, *args, **kwargs)

        def send_command(self: Any, *args: Any, _original: Any = original_send_command, **kwargs: Any) -> Any:
            if not HANDSHAKE.get():
                COUNTERS.sent(0, 1)
            return _original(self, *args, **kwargs)

        def pack_commands(self: Any, commands: Any, _original: Any = original_pack_commands) -> Any:
            commands = list(commands)
            if not HANDSHAKE.get():
                COUNTERS.sent(0, len(commands))
            return _original(self, commands)

        cls.send_packed_command = send_packed_command
        cls.send_command = send_command
        cls.pack_commands = pack_commands

    def sync_quietly(original: Any) -> Any:
        def quiet(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = HANDSHAKE.set(True)
            try:
                return original(self, *args, **kwargs)
            finally:
                HANDSHAKE.reset(token)
        return quiet

    def async_quietly(original: Any) -> Any:
        async def quiet(self: Any, *args: Any, **kwargs: Any) -> Any:
            token = HANDSHAKE.set(True)
            try:
                return await original(self, *args, **kwargs)
            finally:
                HANDSHAKE.reset(token)
        return quiet

    for name in ("on_connect_check_health", "check_health"):
        setattr(sync_connection.AbstractConnection, name, sync_quietly(getattr(sync_connection.AbstractConnection, name)))
        setattr(async_connection.AbstractConnection, name, async_quietly(getattr(async_connection.AbstractConnection, name)))

    original_read_response = sync_connection.AbstractConnection.read_response

    def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_read_response(self, *args, **kwargs)
        finally:
            COUNTERS.waited(time.perf_counter() - started)

    sync_connection.AbstractConnection.read_response = read_response


# --------------------------------------------------------------------------------------------
# Tornado
# --------------------------------------------------------------------------------------------


def tornado_app(scenario: str, redis_url: str, prefix: str) -> Any:
    import redis
    import tornado.web

    from redis_session.tornado_session import AsyncSessionHandler, SessionHandler

    client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def key_of(session_id: str) -> str:
        # what a careful hand-written store does (Rack's CVE-2019-16782 fix): the key is a digest
        return f"{prefix}:sessions:{hashlib.sha256(session_id.encode()).hexdigest()}"

    # -- baseline (1): Tornado alone, the counter lives in a signed cookie -------------------

    class PlainCounter(tornado.web.RequestHandler):
        def get(self) -> None:
            raw = self.get_signed_cookie("count")
            count = int(raw) if raw else 0
            self.set_signed_cookie("count", str(count + 1), httponly=True, samesite="Lax")
            self.write(f"count: {count + 1}")

    class PlainRead(tornado.web.RequestHandler):
        """Anonymous read: look for a signed session cookie, find none, render."""

        def get(self) -> None:
            raw = self.get_signed_cookie(COOKIE_NAME)
            count = int(raw) if raw else 0
            self.write(f"count: {count}")

    # -- baseline (2): the same Redis work by hand with redis-py -----------------------------

    class Raw(tornado.web.RequestHandler):
        def session_key(self) -> str:
            raw = self.get_signed_cookie(COOKIE_NAME)
            if raw is None:
                session_id = secrets.token_urlsafe(32)
                self.set_signed_cookie(COOKIE_NAME, session_id, expires_days=None, max_age=30 * 86400,
                                       httponly=True, samesite="Lax")
            else:
                session_id = raw.decode("ascii")
            return key_of(session_id)

    class RawSetup(Raw):
        fields = SIX_FIELDS

        def get(self) -> None:
            key = self.session_key()
            pipe = client.pipeline(transaction=False)
            pipe.hset(key, mapping={CREATED_FIELD: "1700000000", **self.fields})
            pipe.expire(key, TTL)
            pipe.execute()
            self.write("ok")

    class RawSetup20(RawSetup):
        fields = TWENTY_FIELDS

    class RawCounter(Raw):
        def get(self) -> None:
            key = self.session_key()
            pipe = client.pipeline(transaction=False)
            pipe.hget(key, "count")
            pipe.expire(key, TTL)
            raw, _ = pipe.execute()
            count = int(raw) if raw else 0
            pipe = client.pipeline(transaction=False)
            pipe.hset(key, "count", count + 1)
            pipe.expire(key, TTL)
            pipe.execute()
            self.write(f"count: {count + 1}")

    class RawIncr(Raw):
        def get(self) -> None:
            key = self.session_key()
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(key, "count", 1)
            pipe.expire(key, TTL)
            count, _ = pipe.execute()
            self.write(f"count: {count}")

    # The same Redis work as the library, by hand: the library's own Lua scripts (its source
    # text, nothing else of it) sent with EVALSHA, after the same EXPIRE + HMGET pipeline. This is
    # the floor for a design whose writes must check, in one round trip, that the session still
    # exists (no resurrection); the plain HSET/HINCRBY baselines above cannot make that check.
    from redis_session.script_sets import SCRIPTS

    write_sha = client.script_load(SCRIPTS["write"])
    incr_sha = client.script_load(SCRIPTS["incr"])
    max_fields, max_bytes = 1000, 1024 * 1024

    class RawCounterScript(Raw):
        def get(self) -> None:
            raw = self.get_signed_cookie(COOKIE_NAME)
            if raw is None:
                key, count, mode = self.session_key(), 0, "new"
            else:
                key, mode = key_of(raw.decode("ascii")), "warm"  # the read below has just set the TTL
                pipe = client.pipeline(transaction=False)
                pipe.expire(key, TTL)
                pipe.hmget(key, "count")
                _, (value,) = pipe.execute()
                count = int(value) if value else 0
            client.evalsha(write_sha, 1, key, TTL, 0, mode, max_fields, max_bytes, "0", 1, "count", count + 1)
            self.write(f"count: {count + 1}")

    class RawIncrScript(Raw):
        def get(self) -> None:
            raw = self.get_signed_cookie(COOKIE_NAME)
            if raw is None:
                key, mode = self.session_key(), "new"
            else:
                key, mode = key_of(raw.decode("ascii")), "old"  # the cookie is checked once
            status, count = client.evalsha(incr_sha, 1, key, TTL, 0, mode, max_fields, max_bytes, "count", "1", "int")
            self.write(f"count: {count}")

    class RawHmget3(Raw):
        def get(self) -> None:
            key = self.session_key()
            pipe = client.pipeline(transaction=False)
            pipe.hmget(key, "a", "b", "c")
            pipe.expire(key, TTL)
            (a, b, c), _ = pipe.execute()
            self.write(f"{a.decode()} {b.decode()} {c.decode()}")

    class RawHget3x(Raw):
        """Baseline of the 3-attribute-reads variant: three round trips, like the library's."""

        def get(self) -> None:
            key = self.session_key()
            values = []
            for name in ("a", "b", "c"):
                pipe = client.pipeline(transaction=False)
                pipe.hget(key, name)
                pipe.expire(key, TTL)
                raw, _ = pipe.execute()
                values.append(raw.decode())
            self.write(" ".join(values))

    class RawLoad20(Raw):
        def get(self) -> None:
            key = self.session_key()
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(key)
            pipe.expire(key, TTL)
            raw, _ = pipe.execute()
            fields = {name.decode(): value for name, value in raw.items()}
            self.write(f"{len(fields)} {fields['f00'].decode()}")

    # -- the library -------------------------------------------------------------------------

    class LibSetup(SessionHandler):
        fields = SIX_FIELDS

        def get(self) -> None:
            self.session.update(self.fields)
            self.write("ok")

    class LibSetup20(LibSetup):
        fields = TWENTY_FIELDS

    class LibCounter(SessionHandler):
        def get(self) -> None:
            count = self.session.count.int
            self.session.count = count + 1
            self.write(f"count: {count + 1}")

    class LibIncr(SessionHandler):
        def get(self) -> None:
            self.write(f"count: {self.session.incr('count')}")

    class LibAnon(SessionHandler):
        def get(self) -> None:
            self.write(f"count: {self.session.count.int}")

    class LibGetMany3(SessionHandler):
        def get(self) -> None:
            a, b, c = self.session.get_many("a", "b", "c")
            self.write(f"{a.str} {b.str} {c.str}")

    class LibAttr3(SessionHandler):
        def get(self) -> None:
            a = self.session.a.str
            b = self.session.b.str
            c = self.session.c.str
            self.write(f"{a} {b} {c}")

    class LibLoad20(SessionHandler):
        def get(self) -> None:
            fields = self.session.load()
            self.write(f"{len(fields)} {fields['f00'].str}")

    # -- coroutine handlers: the same work on redis.asyncio, by hand and through the library ----

    import redis.asyncio

    async_client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)

    class RawAsyncCounterScript(Raw):
        async def get(self) -> None:
            raw = self.get_signed_cookie(COOKIE_NAME)
            if raw is None:
                key, count, mode = self.session_key(), 0, "new"
            else:
                key, mode = key_of(raw.decode("ascii")), "warm"  # the read below has just set the TTL
                pipe = async_client.pipeline(transaction=False)
                pipe.expire(key, TTL)
                pipe.hmget(key, "count")
                _, (value,) = await pipe.execute()
                count = int(value) if value else 0
            await async_client.evalsha(write_sha, 1, key, TTL, 0, mode, max_fields, max_bytes, "0", 1, "count", count + 1)
            self.write(f"count: {count + 1}")

    class RawAsyncIncrScript(Raw):
        async def get(self) -> None:
            raw = self.get_signed_cookie(COOKIE_NAME)
            if raw is None:
                key, mode = self.session_key(), "new"
            else:
                key, mode = key_of(raw.decode("ascii")), "old"
            status, count = await async_client.evalsha(incr_sha, 1, key, TTL, 0, mode, max_fields, max_bytes, "count", "1", "int")
            self.write(f"count: {count}")

    class AsyncCounter(AsyncSessionHandler):
        async def get(self) -> None:
            count = (await self.session.count).int
            await self.session.set("count", count + 1)
            self.write(f"count: {count + 1}")

    class AsyncIncr(AsyncSessionHandler):
        async def get(self) -> None:
            count = await self.session.incr("count")
            self.write(f"count: {count}")

    class AsyncSetup(AsyncSessionHandler):
        async def get(self) -> None:
            await self.session.update(SIX_FIELDS)
            self.write("ok")

    handlers: dict[str, tuple[type, type]] = {
        # scenario: (page handler, /__setup handler)
        "plain_counter": (PlainCounter, LibSetup),
        "plain_read": (PlainRead, LibSetup),
        "raw_counter": (RawCounter, RawSetup),
        "lib_counter": (LibCounter, LibSetup),
        "raw_incr": (RawIncr, RawSetup),
        "raw_counter_lua": (RawCounterScript, RawSetup),
        "raw_incr_lua": (RawIncrScript, RawSetup),
        "lib_incr": (LibIncr, LibSetup),
        "lib_anon": (LibAnon, LibSetup),
        "raw_hmget3": (RawHmget3, RawSetup),
        "lib_get_many3": (LibGetMany3, LibSetup),
        "raw_hget3x": (RawHget3x, RawSetup),
        "lib_attr3": (LibAttr3, LibSetup),
        "raw_load20": (RawLoad20, RawSetup20),
        "lib_load20": (LibLoad20, LibSetup20),
        "sync_incr": (LibIncr, LibSetup),
        "async_incr": (AsyncIncr, AsyncSetup),
        "raw_async_counter_lua": (RawAsyncCounterScript, RawSetup),
        "lib_async_counter": (AsyncCounter, AsyncSetup),
        "raw_async_incr_lua": (RawAsyncIncrScript, RawSetup),
        "lib_async_incr": (AsyncIncr, AsyncSetup),
    }
    page, setup = handlers[scenario]

    class Stats(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(COUNTERS.snapshot()))

    def log_function(handler: tornado.web.RequestHandler) -> None:
        # replaces Tornado's access log; counts the measured page only
        if handler.request.path == "/":
            COUNTERS.request(handler.get_status() == 200)

    return tornado.web.Application(
        [(r"/", page), (r"/__setup", setup), (r"/__stats", Stats)],
        cookie_secret=COOKIE_SECRET,
        log_function=log_function,
        redis_session={"redis": redis_url, "redis_prefix": prefix, "cookie_secure": False},
    )


def serve_tornado(scenario: str, redis_url: str, prefix: str, port: int) -> None:
    import asyncio

    import tornado.httpserver

    async def main() -> None:
        server = tornado.httpserver.HTTPServer(tornado_app(scenario, redis_url, prefix))
        server.listen(port, address="127.0.0.1")
        print(f"ready {scenario} http://127.0.0.1:{port}/", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# Flask (both apps on werkzeug's threaded WSGI server)
# --------------------------------------------------------------------------------------------


def flask_app(scenario: str, redis_url: str, prefix: str) -> Any:
    import flask

    app = flask.Flask(f"bench_{scenario}")
    app.config.from_mapping(SECRET_KEY=COOKIE_SECRET)
    if scenario == "flask_plain":

        @app.route("/")
        def plain() -> str:
            count = flask.session.get("count", 0) + 1
            flask.session["count"] = count
            return f"count: {count}"

    else:
        from redis_session.flask_session import setup_session

        app.config.from_mapping(SESSION_REDIS=redis_url, SESSION_REDIS_PREFIX=prefix, SESSION_COOKIE_SECURE=False)
        setup_session(app)

        @app.route("/")
        def counter() -> str:
            request: Any = flask.request
            count = request.session.count.int
            request.session.count = count + 1
            return f"count: {count + 1}"

        @app.route("/__setup")
        def setup() -> str:
            request: Any = flask.request
            request.session.update(SIX_FIELDS)
            return "ok"

    @app.route("/__stats")
    def stats() -> Any:
        return flask.jsonify(COUNTERS.snapshot())

    wsgi = app.wsgi_app

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != "/":
            return wsgi(environ, start_response)
        status: dict[str, str | None] = {"line": None}

        def recording_start_response(line: str, *args: Any) -> Any:
            status["line"] = line
            return start_response(line, *args)

        result = wsgi(environ, recording_start_response)
        COUNTERS.request((status["line"] or "").startswith("200"))
        return result

    app.wsgi_app = counted  # type: ignore[method-assign]
    return app


def serve_flask(scenario: str, redis_url: str, prefix: str, port: int) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log per request
            pass

    server = make_server("127.0.0.1", port, flask_app(scenario, redis_url, prefix), threaded=True,
                         request_handler=QuietHandler)
    print(f"ready {scenario} http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()


SCENARIOS = (
    "plain_counter", "plain_read", "raw_counter", "raw_counter_lua", "lib_counter", "raw_incr", "raw_incr_lua",
    "lib_incr", "lib_anon",
    "raw_hmget3", "lib_get_many3", "raw_hget3x", "lib_attr3", "raw_load20", "lib_load20",
    "sync_incr", "async_incr", "raw_async_counter_lua", "lib_async_counter", "raw_async_incr_lua", "lib_async_incr",
    "flask_plain", "flask_lib",
)


def main(argv: list | None = None) -> None:
    parser = argparse.ArgumentParser(description="one benchmark app (driven by bench/run.py)")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--session-redis", required=True, help="store URL (the baselines use it too)")
    parser.add_argument("--prefix", default="bench", help="key prefix: keys are {prefix}:sessions:{id}")
    arguments = parser.parse_args(argv)
    count_redis_traffic()
    gc.callbacks.append(COUNTERS.gc_callback)
    serve = serve_flask if arguments.scenario.startswith("flask_") else serve_tornado
    try:
        serve(arguments.scenario, arguments.session_redis, arguments.prefix, arguments.port)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
