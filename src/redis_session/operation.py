"""What a session operation is, how the blocking and the asyncio side drive one, and what the
core asks of the web glue (:class:`CookieSink`).

An operation is a generator: it yields :class:`~redis_session.protocol.Call` objects, receives
their Redis replies, and returns its result. :func:`drive` and :func:`drive_async` are the only
two loops that run one, so every operation behaves the same whichever I/O model runs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from .errors import SessionTypeError
from .protocol import Call

T = TypeVar("T")
#: A session operation: yields store calls, receives their replies, returns a T.
Operation = Generator[Call, Any, T]
Number = int | float


def drive(operation: Operation[T], execute: Callable[[Call], Any]) -> T:
    """Run ``operation`` with a blocking ``execute``: send each call it yields, hand it the reply."""
    try:
        call = next(operation)
        while True:
            call = operation.send(execute(call))
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(operation: Operation[T], execute: Callable[[Call], Awaitable[Any]]) -> T:
    """Run ``operation`` with an awaitable ``execute``: the asyncio twin of :func:`drive`."""
    try:
        call = next(operation)
        while True:
            call = operation.send(await execute(call))
    except StopIteration as done:
        result: T = done.value
        return result


class CookieSink(Protocol):
    """What the web glue does when the session id changes (the core never sees a response)."""

    def issue(self, session_id: str) -> None:
        """Send a cookie carrying ``session_id``."""

    def expire(self) -> None:
        """Tell the browser to drop the session cookie."""

    def check_can_change(self, action: str, issuing: bool) -> None:
        """Raise if the response can no longer carry the cookie change ``action`` needs: a new
        cookie (``issuing``) or an expired one. Asked before the operation's first Redis command,
        so nothing is written (no key deleted, none created) that the browser would never learn
        of. A WebSocket refuses to issue (it cannot set cookies) but may end a session; a
        finished response refuses both."""


def categories_of(category: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``None`` (all), one category, or several (an empty list matches nothing)."""
    if category is None:
        return None
    if isinstance(category, str):
        return (category,)
    categories = tuple(category)
    for name in categories:
        if not isinstance(name, str):
            raise SessionTypeError(f"flash categories are str, got {type(name).__name__} {name!r}")
    return categories


def merge_updates(mapping: Mapping[str, Any] | None, keywords: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``update()`` takes a mapping, keywords, or both (keywords win), like ``dict.update``."""
    merged: dict[str, Any] = dict(mapping) if mapping is not None else {}
    merged.update(keywords)
    return list(merged.items())
