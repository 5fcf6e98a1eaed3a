"""The blocking session API: ``session.count.int``, ``session.count = 5``, ``session.incr(...)``.

Framework-free: the web glue hands it a store and a cookie sink. Each method is one round trip
to Redis (reads never come from a cached copy), and each round trip also refreshes the TTL.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from .identity import check_name, fingerprint
from .operations import CookieSink, Number, Operation, SessionCore, T, categories_of, merge_updates
from .settings import SessionSettings
from .store import Store
from .value import ABSENT, Value


class Session:
    """One request's view of a session stored as a Redis hash.

    Attribute access is sugar for field access. Names of this class's methods (``get``,
    ``load``, ...) and names starting with ``_`` are not fields by attribute; use item access
    (``session["load"]``) for those.
    """

    __slots__ = ("_core", "_store")
    _core: SessionCore
    _store: Store
    #: Names that assignment must not shadow; a set lookup, where hasattr() on a missing name
    #: raises and catches an AttributeError on every field write.
    _attribute_names: ClassVar[FrozenSet[str]] = frozenset()

    def __init_subclass__(cls, **keywords: Any) -> None:
        super().__init_subclass__(**keywords)
        cls._attribute_names = frozenset(dir(cls))

    def __init__(self, store: Store, settings: SessionSettings, session_id: Optional[str], cookie: CookieSink) -> None:
        # The slots' own setters: __setattr__ is the field writer, and object.__setattr__ would
        # look each name up again, on every request that touches the session.
        _set_store(self, store)
        _set_core(self, SessionCore(settings, session_id, cookie))

    def _run(self, operation: Operation[T]) -> T:
        execute = self._store.execute
        try:
            call = next(operation)
            while True:
                call = operation.send(execute(call))
        except StopIteration as done:
            result: T = done.value
            return result

    # -- identity --------------------------------------------------------------------------

    @property
    def session_id(self) -> Optional[str]:
        """The current id, or ``None`` until the first write creates the session."""
        return self._core.session_id

    # -- reads -----------------------------------------------------------------------------

    def get(self, name: str) -> Value:
        """The field as stored in Redis now (``Value(None)`` when absent)."""
        # SessionCore.read's steps run directly: a generator round would cost as much again
        core = self._core
        check_name(name)
        if core.session_id is None:
            return ABSENT  # no session yet: the fallback, without asking Redis
        return core.fields_of(self._store.execute(core.read_call("fields", name)), 1)[0]

    def get_many(self, *names: str) -> List[Value]:
        """Several fields in one round trip, in the order asked."""
        core = self._core
        call = core.fields_call(names)
        if call is None:
            return [ABSENT] * len(names)
        return core.fields_of(self._store.execute(call), len(names))

    def load(self) -> Dict[str, Value]:
        """Every field as ``{name: Value}`` in one round trip."""
        return self._run(self._core.read_all())

    def keys(self) -> List[str]:
        """Names of every field, in one round trip."""
        return self._run(self._core.names())

    # -- writes ----------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Write one field now (``None`` deletes it)."""
        self._write(((name, value),))

    def update(self, mapping: Optional[Mapping[str, Any]] = None, **fields: Any) -> None:
        """Write many fields in one round trip; nothing is written if any value is invalid."""
        self._write(merge_updates(mapping, fields))

    def delete(self, *names: str) -> None:
        """Delete fields (absent ones are ignored) in one round trip."""
        self._write([(name, None) for name in names])

    def _write(self, values: Iterable[Tuple[str, Any]]) -> None:
        # SessionCore.write's steps run directly; the generator only starts a new session
        core = self._core
        pairs, deletes = core.encode_values(values)
        if not pairs and not deletes:
            return  # an empty update(): nothing to send
        call = core.write_call(pairs, deletes)
        if call is None or not core.written(self._store.execute(call), pairs):
            self._run(core.create_with(pairs))

    def incr(self, name: str, amount: Number = 1) -> Number:
        """Add ``amount`` atomically on the server and return the new number."""
        # SessionCore.incr's steps run directly; the generator only starts a new session
        core = self._core
        argument, kind = core.incr_arguments(name, amount)
        call = core.incr_call(name, argument, kind)
        if call is not None:
            number = core.incremented(self._store.execute(call), name, kind)
            if number is not None:
                return number
        return self._run(core.create_counting(name, argument, kind))

    def clear(self) -> None:
        """Remove every field; the session (and its id) lives on, empty."""
        self._run(self._core.write((), clear=True))

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

    @property
    def user_id(self) -> Optional[str]:
        """The user this session was bound to with :meth:`bind_user`, or ``None``."""
        return self._run(self._core.user_id())

    def flash(self, message: str, category: str = "message") -> None:
        """Queue a message for a later request; it survives redirects (it lives in Redis)."""
        self._run(self._core.flash(message, category))

    def flashes(self, category: Union[str, Iterable[str], None] = None) -> List[Tuple[str, str]]:
        """Pop the waiting messages (only those of ``category`` if given), oldest first.

        Atomic on the server: two concurrent requests never both get the same message.
        """
        return self._run(self._core.flashes(categories_of(category)))

    # -- sugar -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in self._attribute_names:
            raise AttributeError(
                f"{name!r} is not writable as an attribute of a session (it is a method or private "
                f"name); write the field with session[{name!r}] = ..."
            )
        self._write(((name, value),))

    def __delattr__(self, name: str) -> None:
        if name.startswith("_") or name in self._attribute_names:
            raise AttributeError(f"{name!r} cannot be deleted as an attribute; use del session[{name!r}]")
        self.delete(name)

    def __getitem__(self, name: str) -> Value:
        return self.get(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and not self.get(name).none

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        # Without this, ``if session:`` would call __len__ and cost a round trip.
        return True

    def __repr__(self) -> str:
        session_id = self._core.session_id
        state = "new" if session_id is None else "fingerprint " + fingerprint(session_id)
        return f"<Session {state} in {self._store.name}>"


Session._attribute_names = frozenset(dir(Session))
_set_store = Session.__dict__["_store"].__set__
_set_core = Session.__dict__["_core"].__set__
