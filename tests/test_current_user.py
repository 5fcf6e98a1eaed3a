"""Tornado's ``current_user`` from the session (``UserSessionHandler``, ``AsyncUserSessionHandler``):
``@tornado.web.authenticated`` works, at most one round trip per request, none without a cookie."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.web

from redis_session.async_store import AsyncStore
from redis_session.store import Store
from redis_session.tornado_session import AsyncUserSessionHandler, UserSessionHandler
from tests.conftest import app_settings


class Login(UserSessionHandler):
    def post(self) -> None:
        self.session.bind_user(self.get_argument("user"))
        self.write("ok")


class Private(UserSessionHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.write(f"hello {self.current_user}")


class AsyncPrivate(AsyncUserSessionHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.write(f"hello {self.current_user}")


class Logout(UserSessionHandler):
    def post(self) -> None:
        self.session.destroy()
        self.write("bye")


@pytest.mark.parametrize("private", [Private, AsyncPrivate], ids=["blocking", "coroutine"])
def test_authenticated_pages_follow_the_bound_user(serve, store_url, prefix, private, monkeypatch):
    """Signed out: the login redirect, without a Redis command when there is no cookie. Signed
    in: the page sees the bound user, for one round trip. Signed out again: the redirect."""
    server = serve([("/login", Login), ("/private", private), ("/logout", Logout)],
                   redis_session=app_settings(store_url, prefix), login_url="/login", xsrf_cookies=False)
    browser = server.browser()
    calls: list[Any] = []
    for store_class in (Store, AsyncStore):
        execute = store_class.execute
        monkeypatch.setattr(store_class, "execute", counted(execute, calls))
    anonymous = browser.get("/private")
    assert anonymous.status == 302 and (anonymous.header("Location") or "").startswith("/login")
    assert calls == []

    browser.post("/login?user=alice")
    calls.clear()
    page = browser.get("/private")
    assert (page.status, page.text) == (200, "hello alice")
    assert len(calls) == 1

    browser.post("/logout", b"")
    assert browser.get("/private").status == 302


def counted(execute: Any, calls: list[Any]) -> Any:
    """``execute`` that also notes each call (a blocking or an awaitable store's)."""
    if asyncio.iscoroutinefunction(execute):
        async def note_async(store: Any, call: Any) -> Any:
            calls.append(call)
            return await execute(store, call)
        return note_async

    def note(store: Any, call: Any) -> Any:
        calls.append(call)
        return execute(store, call)
    return note
