"""The session over ``redis.asyncio``: every Redis operation is awaited, never blocking the loop.

:class:`AsyncSession` (on an :class:`~redis_session.async_store.AsyncStore`) runs the very same :class:`~redis_session.core.SessionCore`
operations as the blocking :class:`~redis_session.session.Session`, method for method, so
sessions written by one are read by the other.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any, NoReturn, TypeVar, cast, overload

from .async_store import AsyncStore
from .core import CoreFacts, SessionCore
from .errors import SessionTypeError
from .identity import fingerprint
from .operation import CookieSink, Number, Operation, T, categories_of, drive_async, merge_updates
from .settings import SessionSettings
from .value import Value

#: A session operation method (the type ``_recorded`` keeps).
Method = TypeVar("Method", bound=Callable[..., Coroutine[Any, Any, Any]])


def _describe(coroutine: Any) -> str:
    """``incr(name='count', amount=1)``: the call a session operation's coroutine stands for."""
    arguments = inspect.getcoroutinelocals(coroutine)
    shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items() if name != "self")
    return f"{coroutine.cr_code.co_name.lstrip('_')}({shown})"


#: How many operations a session keeps before it drops those already awaited (see _recorded).
_PRUNE_AT = 64


def _recorded(method: Method) -> Method:
    """Keep the coroutine each call of an operation returns, so that one never awaited by the end
    of the request (a forgotten ``await``) can be reported by name (see ``close_unawaited``)."""
    @functools.wraps(method)
    def record(self: AsyncSession, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        coroutine = method(self, *args, **kwargs)
        started = self._started
        if len(started) >= _PRUNE_AT:  # a long-lived session (a WebSocket's) keeps only what is pending
            started[:] = [kept for kept in started if inspect.getcoroutinestate(kept) == inspect.CORO_CREATED]
        started.append(coroutine)
        return coroutine
    return cast(Method, record)


class AsyncSession(CoreFacts):
    """The session API with every Redis operation awaitable.

    ``await session.count`` reads a field (``await session.get("count")`` says the same);
    writes are ``await session.set(...)``: plain assignment cannot be awaited, so it raises a
    ``TypeError`` instead of silently doing nothing. An operation that is never awaited does
    nothing; the web glue reports it as an error at the end of the request.
    """

    __slots__ = ("_core", "_store", "_lock", "_started")
    _core: SessionCore
    _store: AsyncStore
    _lock: asyncio.Lock
    _started: list[Coroutine[Any, Any, Any]]

    def __init__(self, store: AsyncStore, settings: SessionSettings, session_id: str | None, cookie: CookieSink) -> None:
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_core", SessionCore(settings, session_id, cookie))
        object.__setattr__(self, "_lock", asyncio.Lock())
        object.__setattr__(self, "_started", [])

    def close_unawaited(self) -> list[str]:
        """Close the operations that were called but never awaited (nor handed to a task), and
        say which: ``["incr(name='count', amount=1)"]``. They never ran; closed, they do not
        warn "coroutine was never awaited" later, at some garbage collection."""
        pending = [coroutine for coroutine in self._started if inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED]
        self._started.clear()
        if not pending:
            return []
        scheduled = {id(task.get_coro()) for task in asyncio.all_tasks()}
        forgotten = [coroutine for coroutine in pending if id(coroutine) not in scheduled]
        described = [_describe(coroutine) for coroutine in forgotten]  # before close() drops the arguments
        for coroutine in forgotten:
            coroutine.close()
        return described

    async def _run(self, operation: Operation[T]) -> T:
        """Drive a core operation, awaiting each call it yields.

        One operation at a time: operations share the session's id, and two that ran interleaved
        (``asyncio.gather`` on a new session) would each mint a session of their own. An
        uncontended lock costs no trip through the loop.
        """
        async with self._lock:
            return await drive_async(operation, self._store.execute)

    # -- reads -----------------------------------------------------------------------------

    @_recorded
    async def get(self, name: str) -> Value:
        """The field as stored in Redis now (``Value(None)`` when absent)."""
        return (await self._run(self._core.read((name,))))[0]

    @_recorded
    async def get_many(self, *names: str) -> list[Value]:
        """Several fields in one round trip, in the order asked."""
        return await self._run(self._core.read(names))

    @_recorded
    async def load(self) -> dict[str, Value]:
        """Every field as ``{name: Value}`` in one round trip."""
        return await self._run(self._core.read_all())

    @_recorded
    async def load_stored(self) -> dict[str, bytes]:
        """Every field as stored, the library's own included (see :meth:`Session.load_stored`)."""
        return await self._run(self._core.read_stored())

    @_recorded
    async def save_encoded(self, values: Iterable[tuple[str, bytes, str | None]], deletes: Iterable[str] = ()) -> None:
        """Write values a view encoded itself (see :meth:`Session.save_encoded`)."""
        await self._run(self._core.write_encoded(values, deletes))

    @_recorded
    async def keys(self) -> list[str]:
        """Names of every field, in one round trip."""
        return await self._run(self._core.names())

    @_recorded
    async def contains(self, name: str) -> bool:
        """Whether the field is there (``in`` cannot await)."""
        return not (await self.get(name)).none

    @_recorded
    async def length(self) -> int:
        """How many fields the session holds (``len()`` cannot await)."""
        return len(await self.keys())

    @property
    def user_id(self) -> Coroutine[Any, Any, str | None]:
        """``await session.user_id``: the user this session was bound to with :meth:`bind_user`,
        or ``None`` (the blocking session spells it the same, without ``await``)."""
        return self._user_id()

    @_recorded
    async def _user_id(self) -> str | None:
        return await self._run(self._core.user_id())

    @_recorded
    async def touch(self) -> None:
        """Restart the idle timer now, in one round trip."""
        await self._run(self._core.touch())

    # -- writes ----------------------------------------------------------------------------

    @_recorded
    async def set(self, name: str, value: Any) -> None:
        """Write one field now (``None`` deletes it)."""
        await self._run(self._core.write(((name, value),)))

    @_recorded
    async def update(self, mapping: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Write many fields in one round trip; nothing is written if any value is invalid."""
        await self._run(self._core.write(merge_updates(mapping, fields)))

    @_recorded
    async def delete(self, *names: str) -> None:
        """Delete fields (absent ones are ignored) in one round trip."""
        await self._run(self._core.write([(name, None) for name in names]))

    @overload
    async def incr(self, name: str, amount: int = 1) -> int: ...

    @overload
    async def incr(self, name: str, amount: float) -> float: ...

    @_recorded
    async def incr(self, name: str, amount: Number = 1) -> Number:
        """Add ``amount`` atomically on the server and return the new number (an int for an int
        amount, a float for a float one)."""
        return await self._run(self._core.incr(name, amount))

    @_recorded
    async def clear(self) -> None:
        """Remove every field; the session (and its id) lives on, empty."""
        await self._run(self._core.write((), clear=True))

    @_recorded
    async def flash(self, message: str, category: str = "message") -> None:
        """Queue a message for a later request; it survives redirects (it lives in Redis)."""
        await self._run(self._core.flash(message, category))

    @_recorded
    async def flashes(self, category: str | Iterable[str] | None = None) -> list[tuple[str, str]]:
        """Pop the waiting messages (only those of ``category`` if given), oldest first."""
        return await self._run(self._core.flashes(categories_of(category)))

    # -- lifecycle -------------------------------------------------------------------------

    @_recorded
    async def destroy(self) -> None:
        """Delete the session from Redis and expire the cookie (logout)."""
        await self._run(self._core.destroy())

    @_recorded
    async def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old id stops working."""
        await self._run(self._core.regenerate())

    @_recorded
    async def bind_user(self, user_id: str) -> None:
        """Regenerate the id and record the session under ``user_id``."""
        await self._run(self._core.regenerate(str(user_id)))

    # -- sugar -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise SessionTypeError(
            f"an async session cannot be written by assignment; use await self.session.set({name!r}, value)"
        )

    def __setitem__(self, name: str, value: Any) -> None:
        raise SessionTypeError(
            f"an async session cannot be written by assignment; use await self.session.set({name!r}, value)"
        )

    def __delattr__(self, name: str) -> None:
        raise SessionTypeError(f"an async session cannot be changed by del; use await self.session.delete({name!r})")

    def __delitem__(self, name: str) -> None:
        raise SessionTypeError(f"an async session cannot be changed by del; use await self.session.delete({name!r})")

    # ``in``, ``len()`` and iteration cannot await. Without these, Python would fall back to
    # calling __getitem__(0), (1), ... for ever, each returning an unawaited coroutine, and the
    # handler would spin on the event loop.
    def __contains__(self, name: object) -> bool:
        raise SessionTypeError(f"'in' cannot await on an async session; use await self.session.contains({name!r})")

    def __iter__(self) -> NoReturn:
        raise SessionTypeError(
            "an async session cannot be iterated without awaiting; use "
            "'for name in await self.session.keys()' or 'async for name in self.session'"
        )

    def __len__(self) -> NoReturn:
        raise SessionTypeError("len() cannot await on an async session; use await self.session.length()")

    def __bool__(self) -> bool:
        # Without this, ``if self.session:`` would call __len__.
        return True

    async def __aiter__(self) -> AsyncIterator[str]:
        for name in await self.keys():
            yield name

    def __repr__(self) -> str:
        session_id = self._core.session_id
        state = "new" if session_id is None else "fingerprint " + fingerprint(session_id)
        return f"<AsyncSession {state} in {self._store.name}>"
