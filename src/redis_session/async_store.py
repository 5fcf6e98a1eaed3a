"""The asyncio store: a ``redis.asyncio`` client with the session scripts on it, run by the same
:class:`~redis_session.store_rules.StoreRules` as the blocking
:class:`~redis_session.store.Store`, method for method; it differs only where it awaits.
"""

from __future__ import annotations

from typing import Any

import redis

from . import pipelines
from .addresses import describe_url
from .clients import ASYNCIO, client_for, describe_client, sentinel_clients, wait_target
from .protocol import PIPELINES, Call
from .script_sets import script_set_for
from .settings import SessionSettings
from .store_errors import CALL_ERRORS, STORE_ERRORS
from .store_rules import NO_WAIT, StoreRules, WaitPolicy


class AsyncStore:
    """An asyncio client with the session scripts, run by the same rules as :class:`~redis_session.store.Store`.

    It belongs to the event loop it was built on: an asyncio connection cannot move between loops.
    """

    def __init__(self, url: str, client: Any, wait: WaitPolicy = NO_WAIT, owns_client: bool = True,
                 name: str | None = None) -> None:
        self.url = url
        self.name = name or describe_url(url)
        self.client = client
        #: False for the application's own client: closing the store leaves it open.
        self.owns_client = owns_client
        # no stall pause: a coroutine waiting for a stalled Redis holds nothing else up
        self.rules = StoreRules(self.name, wait, 0.0, client)
        self.scripts = script_set_for(client)
        #: Scripts this store has loaded itself (see _send_and_wait).
        self._loaded: set[str] = set()
        self._sentinels = sentinel_clients(client)

    @classmethod
    def connect(cls, settings: SessionSettings) -> AsyncStore:
        """A new store for ``settings`` on the running loop: on the application's own asyncio
        client if it gave one, else on a client of its own (which connects on first use).

        :raises ConfigurationError: when the application gave clients, but no asyncio one.
        """
        client, owned = client_for(settings, ASYNCIO)
        return cls(settings.redis_url, client, WaitPolicy.of(settings), owns_client=owned,
                   name=None if owned else describe_client(client))

    async def execute(self, call: Call) -> Any:
        """Run one call; store faults become :class:`~redis_session.errors.SessionUnavailableError`."""
        rules = self.rules
        if rules.master_check_due():
            await self.follow_master()
        try:
            return await self._send(call)
        except CALL_ERRORS as error:
            rules.retry_or_fail(call, error)
        try:
            return await self._send(call)
        except CALL_ERRORS as error:
            rules.fail(error)

    async def _send(self, call: Call) -> Any:
        if call.script in PIPELINES:
            commands = pipelines.commands(call)
            if len(commands) == 1:  # one command needs no pipeline around it
                method, args = commands[0]
                try:
                    return pipelines.reply(call, [await getattr(self.client, method)(*args)])
                except redis.exceptions.ResponseError as error:
                    return pipelines.reply(call, [error])
            pipeline = self.client.pipeline(transaction=False)
            for method, args in commands:
                getattr(pipeline, method)(*args)
            return pipelines.reply(call, await pipeline.execute(raise_on_error=False))
        if self.rules.waits_after(call):
            return await self._send_and_wait(call)
        sha = self.scripts.shas[call.script]
        keys = (call.key, *call.more_keys)
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *call.args)
        except redis.exceptions.NoScriptError:
            await self.client.script_load(self.scripts.sources[call.script])
            return await self.client.evalsha(sha, len(keys), *keys, *call.args)

    async def _send_and_wait(self, call: Call) -> Any:
        """The script, then WAIT, in one round trip (see :meth:`Store._send_and_wait`)."""
        keys = (call.key, *call.more_keys)
        if call.script not in self._loaded:
            # loaded before its first use here, so that use is not a NOSCRIPT after which the
            # WAIT (already sent in the same pipeline) has to be sent again
            await self.client.script_load(self.scripts.sources[call.script])
            self._loaded.add(call.script)
        for attempt in (1, 2):
            pipeline = self.client.pipeline(transaction=False)
            pipeline.execute_command("EVALSHA", self.scripts.shas[call.script], len(keys), *keys, *call.args)
            pipeline.execute_command(*self.rules.wait.command(), **wait_target(self.client, call.key))
            reply, acknowledged = await pipeline.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                await self.client.script_load(self.scripts.sources[call.script])
                continue
            if isinstance(reply, Exception):
                raise reply
            self.rules.check_acknowledged(call, acknowledged)
            return reply
        raise AssertionError("unreachable")

    async def follow_master(self) -> None:
        """Behind sentinels, move the pool to a new master (see :meth:`Store.follow_master`).

        Unlike the blocking pool, the asyncio pool takes back a busy connection without checking
        where it points, so the ones still talking to the old master are marked to reconnect.
        """
        pool = self.rules.sentinel_pool
        try:
            address = await pool.get_master_address()
        except redis.exceptions.RedisError:
            return  # no sentinel answered: the command itself says whether the master still does
        # redis-py keeps no public list of busy connections; without one (or without the marker)
        # they move over the next time they are opened again
        for connection in list(getattr(pool, "_in_use_connections", ())):
            mark_for_reconnect = getattr(connection, "mark_for_reconnect", None)
            if mark_for_reconnect is not None and (connection.host, connection.port) != tuple(address):
                mark_for_reconnect()

    async def aclose(self) -> None:
        """Close the client's connections (and, behind sentinels, those to the sentinels), unless
        the client is the application's own."""
        if not self.owns_client:
            return
        for client in (self.client, *sentinel_clients(self.client, *self._sentinels)):
            try:
                await client.aclose()
            except STORE_ERRORS:
                pass  # a connection that cannot say goodbye is closed anyway

    def __repr__(self) -> str:
        return f"<AsyncStore {self.name}>"
