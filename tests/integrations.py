"""Run the framework-free behaviour suite through each web integration.

``make_session`` in the suite returns something with the blocking Session API. For the
"tornado", "tornado-async" and "flask" integrations that something is a :class:`RemoteSession`:
every call it receives is carried out *inside a real request* of an app built with that
integration (over loopback HTTP for Tornado, through ``app.test_client()`` for Flask), on the
session object the integration built from the request's cookie. Cookie changes the integration
made are read back from the response's ``Set-Cookie`` and reported to the suite's
``RecordingCookie``, so the same assertions hold for every integration.

The operation itself travels in-process (the test and the app share the process), so any Python
value, including the invalid ones the suite feeds in, reaches the session unchanged.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from http.cookies import SimpleCookie
from typing import Any

import tornado.web

from redis_session.aio import AsyncSession
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests.support import TestStores

COOKIE_SECRET = "integration-secret-" + "y" * 32
INTEGRATIONS = ("direct", "tornado", "tornado-async", "flask")


class Operation:
    """One thing to do to a session: ``kind`` says how, ``name``/``args`` what."""

    def __init__(self, kind: str, name: str = "", args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.name = name
        self.args = args
        self.kwargs = kwargs or {}

    def run_sync(self, session: Any) -> Any:
        kind, name = self.kind, self.name
        if kind == "call":
            return getattr(session, name)(*self.args, **self.kwargs)
        if kind == "getattr":
            return getattr(session, name)
        if kind == "setattr":
            return setattr(session, name, self.args[0])
        if kind == "delattr":
            return delattr(session, name)
        if kind == "getitem":
            return session[name]
        if kind == "setitem":
            session[name] = self.args[0]
            return None
        if kind == "delitem":
            del session[name]
            return None
        if kind == "contains":
            return name in session
        if kind == "len":
            return len(session)
        if kind == "iter":
            return list(session)
        raise AssertionError(f"unknown operation {kind}")

    async def run_async(self, session: AsyncSession) -> Any:
        """The same operation on the awaitable API (sugar mapped to the coroutine methods)."""
        kind, name = self.kind, self.name
        if kind == "setattr" and (name.startswith("_") or hasattr(AsyncSession, name)):
            return setattr(session, name, self.args[0])  # refused for real: async sessions take no assignment
        if kind == "delattr" and (name.startswith("_") or hasattr(AsyncSession, name)):
            return delattr(session, name)
        if kind == "call":
            result = getattr(session, name)(*self.args, **self.kwargs)
        elif kind == "getattr" and hasattr(AsyncSession, name):
            result = getattr(session, name)  # session_id, or an awaitable user_id
        elif kind in ("getattr", "getitem"):
            result = session.get(name)
        elif kind in ("setattr", "setitem"):
            result = session.set(name, self.args[0])
        elif kind in ("delattr", "delitem"):
            result = session.delete(name)
        elif kind == "contains":
            result = session.contains(name)
        elif kind == "len":
            result = session.length()
        elif kind == "iter":
            result = session.keys()
        else:
            raise AssertionError(f"unknown operation {kind}")
        if inspect.isawaitable(result):
            result = await result
        return result


class Channel:
    """Hands operations to the app and results back, keyed by a token in the request URL."""

    def __init__(self) -> None:
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self.pending: dict[str, Operation] = {}
        self.results: dict[str, tuple[bool, Any, str | None]] = {}

    def submit(self, operation: Operation) -> str:
        with self._lock:
            token = str(next(self._tokens))
            self.pending[token] = operation
        return token

    def take(self, token: str) -> Operation:
        with self._lock:
            return self.pending.pop(token)

    def finish(self, token: str, ok: bool, value: Any, session_id: str | None) -> None:
        with self._lock:
            self.results[token] = (ok, value, session_id)

    def result(self, token: str) -> tuple[bool, Any, str | None]:
        with self._lock:
            return self.results.pop(token)


def tornado_app(channel: Channel, settings: SessionSettings, asynchronous: bool) -> tornado.web.Application:
    from redis_session.tornado_session import AsyncSessionHandler, SessionHandler

    class SyncOperation(SessionHandler):
        def post(self) -> None:
            token = self.get_query_argument("token")
            try:
                value = channel.take(token).run_sync(self.session)
                channel.finish(token, True, value, self.session.session_id)
            except Exception as error:  # noqa: BLE001 - handed back to the test to re-raise
                channel.finish(token, False, error, self.session.session_id)

    class AsyncOperation(AsyncSessionHandler):
        async def post(self) -> None:
            token = self.get_query_argument("token")
            try:
                value = await channel.take(token).run_async(self.session)
                channel.finish(token, True, value, self.session.session_id)
            except Exception as error:  # noqa: BLE001 - handed back to the test to re-raise
                channel.finish(token, False, error, self.session.session_id)

    handler = AsyncOperation if asynchronous else SyncOperation
    return tornado.web.Application(
        [("/op", handler)], cookie_secret=COOKIE_SECRET, redis_session=settings_as_mapping(settings)
    )


def flask_app(channel: Channel, settings: SessionSettings) -> Any:
    import flask

    from redis_session.flask_session import config_key, setup_session

    app = flask.Flask(f"integration-{id(channel)}")
    app.config["SECRET_KEY"] = COOKIE_SECRET
    for name, value in settings_as_mapping(settings).items():
        app.config[config_key(name)] = value
    setup_session(app)

    @app.route("/op", methods=["POST"])
    def run_operation() -> str:
        session = flask.request.session  # type: ignore[attr-defined]
        token = flask.request.args["token"]
        try:
            value = channel.take(token).run_sync(session)
            channel.finish(token, True, value, session.session_id)
        except Exception as error:  # noqa: BLE001 - handed back to the test to re-raise
            channel.finish(token, False, error, session.session_id)
        return "done"

    return app


def settings_as_mapping(settings: SessionSettings) -> dict[str, Any]:
    from redis_session.settings import SETTINGS

    return {setting.name: getattr(settings, setting.attribute) for setting in SETTINGS}


class Transport:
    """Sends one request carrying a token; returns the Set-Cookie headers of the response."""

    cookie_name = "session-id"

    def send(self, token: str) -> list[str]:
        raise NotImplementedError

    def set_session_cookie(self, session_id: str) -> None:
        raise NotImplementedError

    def decode(self, value: str) -> str | None:
        raise NotImplementedError


class TornadoTransport(Transport):
    def __init__(self, server: Any, cookie_name: str) -> None:
        self.browser = server.browser()
        self.cookie_name = cookie_name

    def send(self, token: str) -> list[str]:
        response = self.browser.post(f"/op?token={token}")
        assert response.status == 200, response
        return response.set_cookies

    def set_session_cookie(self, session_id: str) -> None:
        signed = tornado.web.create_signed_value(COOKIE_SECRET, self.cookie_name, session_id)
        self.browser.cookies[self.cookie_name] = f'"{signed.decode()}"'

    def decode(self, value: str) -> str | None:
        raw = tornado.web.decode_signed_value(COOKIE_SECRET, self.cookie_name, value.strip('"'), max_age_days=3650)
        return raw.decode() if raw else None


class FlaskTransport(Transport):
    def __init__(self, app: Any, cookie_name: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.cookie_name = cookie_name

    def send(self, token: str) -> list[str]:
        response = self.client.post(f"/op?token={token}")
        assert response.status_code == 200, response
        return response.headers.getlist("Set-Cookie")

    def set_session_cookie(self, session_id: str) -> None:
        serializer = self.app.extensions["redis_session"].serializer
        self.client.set_cookie(self.cookie_name, serializer.dumps(session_id))

    def decode(self, value: str) -> str | None:
        serializer = self.app.extensions["redis_session"].serializer
        return serializer.loads(value)  # type: ignore[no-any-return]


class RemoteSession:
    """The blocking Session API, every call carried out in a request of a real app."""

    def __init__(self, transport: Transport, channel: Channel, store: Store, cookie: Any) -> None:
        object.__setattr__(self, "_transport", transport)
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_cookie", cookie)
        object.__setattr__(self, "_session_id", None)

    def _do(self, operation: Operation) -> Any:
        token = self._channel.submit(operation)
        for header in self._transport.send(token):
            self._record(header)
        ok, value, session_id = self._channel.result(token)
        object.__setattr__(self, "_session_id", session_id)
        if not ok:
            raise value
        return value

    def _record(self, header: str) -> None:
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        morsel = parsed.get(self._transport.cookie_name)
        if morsel is None:
            return
        if morsel.value in ("", '""') or morsel["max-age"] == "0":
            self._cookie.expire()
        else:
            session_id = self._transport.decode(morsel.value)
            assert session_id, f"the integration sent an unreadable cookie: {header}"
            self._cookie.issue(session_id)

    @property
    def session_id(self) -> str | None:
        return self._session_id  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if callable(getattr(type(self)._api, name, None)):
            return lambda *args, **kwargs: self._do(Operation("call", name, args, kwargs))
        return self._do(Operation("getattr", name))

    def __setattr__(self, name: str, value: Any) -> None:
        self._do(Operation("setattr", name, (value,)))

    def __delattr__(self, name: str) -> None:
        self._do(Operation("delattr", name))

    def __getitem__(self, name: str) -> Any:
        return self._do(Operation("getitem", name))

    def __setitem__(self, name: str, value: Any) -> None:
        self._do(Operation("setitem", name, (value,)))

    def __delitem__(self, name: str) -> None:
        self._do(Operation("delitem", name))

    def __contains__(self, name: str) -> bool:
        return self._do(Operation("contains", name))  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._do(Operation("len"))  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        return iter(self._do(Operation("iter")))

    def __bool__(self) -> bool:
        return True


def _session_api() -> type:
    from redis_session.session import Session

    return Session


RemoteSession._api = _session_api()  # type: ignore[attr-defined]


class IntegrationHarness:
    """Builds (and caches) one app per integration and settings; hands out RemoteSessions."""

    def __init__(self, integration: str, registry: TestStores) -> None:
        self.integration = integration
        self.registry = registry
        self.servers: list[Any] = []
        self.channel = Channel()
        self._apps: dict[SessionSettings, Any] = {}

    def session(self, settings: SessionSettings, session_id: str | None, cookie: Any) -> RemoteSession:
        app = self._apps.get(settings)
        if app is None:
            if self.integration == "flask":
                app = flask_app(self.channel, settings)
            else:
                app = tornado_app(self.channel, settings, asynchronous=self.integration == "tornado-async")
                app = self.serve_tornado(app)
            self._apps[settings] = app
        if self.integration == "flask":
            transport: Transport = FlaskTransport(app, settings.cookie_name)
        else:
            transport = TornadoTransport(app, settings.cookie_name)
        if session_id is not None:
            transport.set_session_cookie(session_id)
        return RemoteSession(transport, self.channel, self.registry.store_for(settings), cookie)

    def serve_tornado(self, application: tornado.web.Application) -> Any:
        from tests.web import LiveServer

        server = LiveServer(application).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
