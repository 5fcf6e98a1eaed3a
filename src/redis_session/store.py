"""The blocking session store: a Redis client with the session scripts on it.

:class:`~redis_session.store_rules.StoreRules` is the one definition of what the store decides
(what an error means, what may be sent twice, WAIT, following a Sentinel master);
:class:`Store` (blocking) and :class:`~redis_session.async_store.AsyncStore` (asyncio) apply those rules
method for method; they differ only where one awaits.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from . import pipelines
from .addresses import describe_url
from .clients import BLOCKING, client_for, describe_client, sentinel_clients, wait_target
from .protocol import PIPELINES, Call
from .script_sets import script_set_for
from .settings import SessionSettings
from .store_errors import CALL_ERRORS, STORE_ERRORS
from .store_rules import NO_WAIT, StoreRules, WaitPolicy

logger = logging.getLogger("redis_session")


class Store:
    """A blocking client with the session scripts, run by :class:`StoreRules`."""

    def __init__(self, url: str, client: Any, wait: WaitPolicy = NO_WAIT, stall_pause: float = 0.0,
                 owns_client: bool = True, name: str | None = None) -> None:
        self.url = url
        self.name = name or describe_url(url)
        self.client = client
        #: False for the application's own client: closing the store leaves it open.
        self.owns_client = owns_client
        self.rules = StoreRules(self.name, wait, stall_pause, client)
        self.scripts = script_set_for(client)
        #: Scripts this store has loaded itself (see _send_and_wait).
        self._loaded: set[str] = set()
        self._sentinels = sentinel_clients(client)

    @classmethod
    def connect(cls, settings: SessionSettings) -> Store:
        """A new store for ``settings``: on the application's own blocking client if it gave one,
        else on a client (and connection pool) of its own.

        :raises SessionUnavailableError: when building the client already needs the store and it
            does not answer (redis-py's cluster client reads the slot map when it is created).
        :raises ConfigurationError: when the application gave clients, but no blocking one.
        """
        rules = StoreRules(describe_url(settings.redis_url), WaitPolicy.of(settings), 0.0, None)
        try:
            client, owned = client_for(settings, BLOCKING)
        except STORE_ERRORS as error:
            rules.fail(error)
        return cls(settings.redis_url, client, WaitPolicy.of(settings), stall_pause=settings.redis_timeout,
                   owns_client=owned, name=None if owned else describe_client(client))

    def execute(self, call: Call) -> Any:
        """Run one call; store faults become :class:`SessionUnavailableError`."""
        rules = self.rules
        rules.check_not_stalled()
        if rules.master_check_due():
            self.follow_master()
        try:
            return self._send(call)
        except CALL_ERRORS as error:
            rules.retry_or_fail(call, error)
        try:
            return self._send(call)
        except CALL_ERRORS as error:
            rules.fail(error)

    def _send(self, call: Call) -> Any:
        if call.script in PIPELINES:
            commands = pipelines.commands(call)
            if len(commands) == 1:  # one command needs no pipeline around it
                method, args = commands[0]
                try:
                    return pipelines.reply(call, [getattr(self.client, method)(*args)])
                except redis.exceptions.ResponseError as error:
                    return pipelines.reply(call, [error])
            pipeline = self.client.pipeline(transaction=False)
            for method, args in commands:
                getattr(pipeline, method)(*args)
            return pipelines.reply(call, pipeline.execute(raise_on_error=False))
        if self.rules.waits_after(call):
            return self._send_and_wait(call)
        sha = self.scripts.shas[call.script]
        keys = (call.key, *call.more_keys)
        try:
            return self.client.evalsha(sha, len(keys), *keys, *call.args)
        except redis.exceptions.NoScriptError:
            # Redis restarted, failed over or dropped its script cache; the script did not run
            self.client.script_load(self.scripts.sources[call.script])
            return self.client.evalsha(sha, len(keys), *keys, *call.args)

    def _send_and_wait(self, call: Call) -> Any:
        """The script, then WAIT, on one connection in one round trip (a plain pipeline; the
        script by its SHA, loaded first if the server has lost it)."""
        keys = (call.key, *call.more_keys)
        if call.script not in self._loaded:
            # loaded before its first use here, so that use is not a NOSCRIPT after which the
            # WAIT (already sent in the same pipeline) has to be sent again
            self.client.script_load(self.scripts.sources[call.script])
            self._loaded.add(call.script)
        for attempt in (1, 2):
            pipeline = self.client.pipeline(transaction=False)
            pipeline.execute_command("EVALSHA", self.scripts.shas[call.script], len(keys), *keys, *call.args)
            pipeline.execute_command(*self.rules.wait.command(), **wait_target(self.client, call.key))
            reply, acknowledged = pipeline.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                self.client.script_load(self.scripts.sources[call.script])
                continue
            if isinstance(reply, Exception):
                raise reply
            self.rules.check_acknowledged(call, acknowledged)
            return reply
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Ask the store for a reply (PING), as a start-up check.

        :raises SessionUnavailableError: when it does not answer.
        :raises ConfigurationError: when it answers but refuses this configuration.
        """
        try:
            self.client.ping()
        except CALL_ERRORS as error:
            self.rules.fail(error)

    def follow_master(self) -> None:
        """Behind sentinels, move the pool to the current master if a failover named a new one.

        When the address changed, redis-py's ``get_master_address`` closes the idle connections
        and the pool closes the busy ones when they come back, so every later command opens a
        connection to the new master.
        """
        try:
            self.rules.sentinel_pool.get_master_address()
        except redis.exceptions.RedisError:
            pass  # no sentinel answered: the command itself says whether the master still does

    def close(self) -> None:
        """Close the client's connections (and, behind sentinels, those to the sentinels), unless
        the client is the application's own."""
        if not self.owns_client:
            return
        for client in (self.client, *sentinel_clients(self.client, *self._sentinels)):
            try:
                client.close()
            except STORE_ERRORS as error:
                logger.debug("session store %s: closing a client failed: %s", self.name, error)

    def __repr__(self) -> str:
        return f"<Store {self.name}>"
