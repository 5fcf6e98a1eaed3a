"""The blocking session API: ``session.count.int``, ``session.count = 5``, ``session.incr(...)``.

Framework-free: the web glue hands it a store and a cookie sink. Every method runs one
:class:`~redis_session.core.SessionCore` operation with blocking calls; each is one round trip
to Redis in the common case (reads never come from a cached copy), and each refreshes the TTL.
:class:`~redis_session.aio.AsyncSession` has the same methods, awaited.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

from .core import CoreFacts, SessionCore
from .identity import fingerprint
from .operation import CookieSink, Number, Operation, T, categories_of, drive, merge_updates
from .settings import SessionSettings
from .store import Store
from .value import Value


class Session(CoreFacts):
    """One request's view of a session stored as a Redis hash.

    Attribute access is sugar for field access. Names of this class's methods (``get``,
    ``load``, ...) and names starting with ``_`` are not fields by attribute; use item access
    (``session["load"]``) for those.
    """

    __slots__ = ("_core", "_store")
    _core: SessionCore
    _store: Store

    def __init__(self, store: Store, settings: SessionSettings, session_id: str | None, cookie: CookieSink,
                 view_tags: bool = False) -> None:
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_core", SessionCore(settings, session_id, cookie, view_tags))

    def _run(self, operation: Operation[T]) -> T:
        return drive(operation, self._store.execute)

    # -- reads -----------------------------------------------------------------------------

    def get(self, name: str) -> Value:
        """The field as stored in Redis now (``Value(None)`` when absent)."""
        return self._run(self._core.read((name,)))[0]

    def get_many(self, *names: str) -> list[Value]:
        """Several fields in one round trip, in the order asked."""
        return self._run(self._core.read(names))

    def load(self) -> dict[str, Value]:
        """Every field as ``{name: Value}`` in one round trip."""
        return self._run(self._core.read_all())

    def load_stored(self) -> dict[str, bytes]:
        """Every field as stored, the library's own included, in one round trip: for a view
        that decodes values its own way (``flask.session``); application code wants :meth:`load`."""
        return self._run(self._core.read_stored())

    def save_encoded(self, values: Iterable[tuple[str, bytes, str | None]], deletes: Iterable[str] = ()) -> None:
        """Write values a view encoded itself, each with its type tag, and delete fields, in one
        round trip (the counterpart of :meth:`load_stored`)."""
        self._run(self._core.write_encoded(values, deletes))

    def keys(self) -> list[str]:
        """Names of every field, in one round trip."""
        return self._run(self._core.names())

    def contains(self, name: str) -> bool:
        """Whether the field is there (``name in session`` says the same)."""
        return not self.get(name).none

    def length(self) -> int:
        """How many fields the session holds (``len(session)`` says the same)."""
        return len(self.keys())

    @property
    def user_id(self) -> str | None:
        """The user this session was bound to with :meth:`bind_user`, or ``None``."""
        return self._run(self._core.user_id())

    def touch(self) -> None:
        """Restart the idle timer now, in one round trip (as redis-session 0.2.1's ``touch()``).
        Every read and write already does this; it is for a page that uses no field."""
        self._run(self._core.touch())

    @property
    def sessionId(self) -> str | None:  # the name redis-session 0.2.1 users know
        """Deprecated spelling of :attr:`session_id`, kept from redis-session 0.2.1."""
        warnings.warn("session.sessionId is deprecated; use session.session_id", DeprecationWarning, stacklevel=2)
        return self._core.session_id

    # -- writes ----------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Write one field now (``None`` deletes it)."""
        self._run(self._core.write(((name, value),)))

    def update(self, mapping: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Write many fields in one round trip; nothing is written if any value is invalid."""
        self._run(self._core.write(merge_updates(mapping, fields)))

    def delete(self, *names: str) -> None:
        """Delete fields (absent ones are ignored) in one round trip."""
        self._run(self._core.write([(name, None) for name in names]))

    @overload
    def incr(self, name: str, amount: int = 1) -> int: ...

    @overload
    def incr(self, name: str, amount: float) -> float: ...

    def incr(self, name: str, amount: Number = 1) -> Number:
        """Add ``amount`` atomically on the server and return the new number (an int for an int
        amount, a float for a float one)."""
        return self._run(self._core.incr(name, amount))

    def clear(self) -> None:
        """Remove every field; the session (and its id) lives on, empty."""
        self._run(self._core.write((), clear=True))

    def flash(self, message: str, category: str = "message") -> None:
        """Queue a message for a later request; it survives redirects (it lives in Redis)."""
        self._run(self._core.flash(message, category))

    def flashes(self, category: str | Iterable[str] | None = None) -> list[tuple[str, str]]:
        """Pop the waiting messages (only those of ``category`` if given), oldest first.

        Atomic on the server: two concurrent requests never both get the same message.
        """
        return self._run(self._core.flashes(categories_of(category)))

    # -- lifecycle -------------------------------------------------------------------------

    def destroy(self) -> None:
        """Delete the session from Redis and expire the cookie (logout).

        A later write in the same request starts a new session with a new id.
        """
        self._run(self._core.destroy())

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old id stops working.

        Call it at login and at every privilege change: an id an attacker planted or saw before
        (session fixation) is then worthless.
        """
        self._run(self._core.regenerate())

    def bind_user(self, user_id: str) -> None:
        """Regenerate the id and record the session under ``user_id`` (see ``SessionAdmin``)."""
        self._run(self._core.regenerate(str(user_id)))

    # -- sugar -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or hasattr(type(self), name):
            raise AttributeError(
                f"{name!r} is not writable as an attribute of a session (it is a method or private "
                f"name); write the field with session[{name!r}] = ..."
            )
        self.set(name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_") or hasattr(type(self), name):
            raise AttributeError(f"{name!r} cannot be deleted as an attribute; use del session[{name!r}]")
        self.delete(name)

    def __getitem__(self, name: str) -> Value:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.contains(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return self.length()

    def __bool__(self) -> bool:
        # Without this, ``if session:`` would call __len__ and cost a round trip.
        return True

    def __repr__(self) -> str:
        session_id = self._core.session_id
        state = "new" if session_id is None else "fingerprint " + fingerprint(session_id)
        return f"<Session {state} in {self._store.name}>"

