"""The session store: a Redis client with the session scripts on it, and the rules both I/O
models follow when they talk to it.

:class:`StoreRules` is the one definition of what an error means (an outage is a
:class:`~redis_session.errors.SessionUnavailableError`, a 503), of what may be sent twice, of WAIT
after a session ends, of how often a store behind sentinels asks who the master is, and of the
pause after a timeout. :class:`Store` (blocking) and :class:`~redis_session.aio.AsyncStore`
(asyncio) apply those rules method for method; they differ only where one awaits.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from typing import Any, NamedTuple, NoReturn

import redis

from . import pipelines
from .addresses import describe_url
from .clients import BLOCKING, client_for, describe_client, sentinel_clients, sentinel_pool, wait_target
from .errors import SessionUnavailableError, StoreRefusedError
from .protocol import ENDING_SCRIPTS, PIPELINES, WRITING_SCRIPTS, Call
from .scripts import script_set_for
from .settings import SessionSettings

logger = logging.getLogger("redis_session")

#: Errors that mean "the store cannot serve now; try later" rather than "the code is wrong".
UNAVAILABLE_ERRORS: tuple[type, ...] = (
    redis.exceptions.ConnectionError,  # includes refused/reset and AuthenticationError subclasses
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,  # e.g. "TTL exhausted" while a cluster reshapes itself
    redis.exceptions.OutOfMemoryError,  # maxmemory reached: the store cannot take writes now
)
# MISCONF: Redis refuses writes because it cannot save its snapshot (a full disk, say).
_UNAVAILABLE_MESSAGES = ("MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "NOREPLICAS", "BUSY ", "MISCONF", "OOM ")
#: What a store call can raise. redis-py's cluster client reports an unreachable cluster with
#: RedisClusterException, which is not a RedisError, so both must be caught everywhere.
STORE_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
#: What redis-py's own code raises when a connection is closed under a call in flight
#: (see as_dropped_connection).
DROPPED_CONNECTION_ERRORS: tuple[type[Exception], ...] = (AttributeError, TypeError, ValueError)
#: What a store catches around a call (and then judges with StoreRules).
CALL_ERRORS = (*STORE_ERRORS, *DROPPED_CONNECTION_ERRORS)
# RedisClusterException messages (and causes) that mean "no node answers", not a usage error.
_UNREACHABLE_CLUSTER_MESSAGES = (
    "Redis Cluster cannot be connected", "All slots are not covered", "startup_nodes could not agree",
)
_REDIS_PACKAGE = os.sep + "redis" + os.sep
#: How often a store behind sentinels asks them who the master is (see Store.follow_master).
MASTER_CHECK_SECONDS = 1.0


_MISSING_PERMISSION = (
    "the Redis user lacks a permission the sessions need: EVALSHA, EVAL and SCRIPT LOAD, the commands the "
    "scripts run (+@hash, +@keyspace, +@sortedset, +@string: HSET, HGETALL, EXPIRE, DEL, ZADD, SET, ...), PING "
    "and WAIT, on keys under the session prefix: grant them with ACL SETUSER"
)
#: Replies of a store that answers but will not work with this configuration, and what to fix.
REFUSALS = (
    ("WRONGPASS", "the user name or password in the store URL is wrong"),
    ("invalid username-password", "the user name or password in the store URL is wrong"),
    ("NOAUTH", "the server needs a password: put it in the store URL"),
    ("NOPERM", _MISSING_PERMISSION),
    # what Redis says when a command inside a script is denied (a plain ResponseError)
    ("The user executing the script can't", _MISSING_PERMISSION),
    ("DB index is out of range", "the database number in the store URL does not exist on this server"),
    ("MOVED", "this server is a cluster node: use a redis+cluster:// URL"),
    ("Cluster mode is not enabled", "this server is not a cluster node: use a redis:// URL"),
)


def refusal(error: BaseException) -> str | None:
    """What to fix when ``error`` says the store refuses this configuration (``None``: it does
    not). Checked before :func:`is_unavailable`: a failed login is a ConnectionError to redis-py,
    but retrying it never helps."""
    text = str(error)
    for marker, advice in REFUSALS:
        if marker in text:
            return advice
    if isinstance(error, (redis.exceptions.AuthenticationError, redis.exceptions.AuthenticationWrongNumberOfArgsError)):
        return "the server refused the login: check the user name and password in the store URL"
    if isinstance(error, redis.exceptions.NoPermissionError):
        return _MISSING_PERMISSION
    return None


def is_unavailable(error: BaseException) -> bool:
    """Whether a Redis error means the store is down or failing over (answer 503, retry later)."""
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, redis.exceptions.RedisClusterException):
        return isinstance(error, redis.exceptions.SlotNotCoveredError) or str(error).startswith(
            _UNREACHABLE_CLUSTER_MESSAGES
        ) or isinstance(error.__cause__, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
    return isinstance(error, redis.exceptions.ResponseError) and str(error).startswith(_UNAVAILABLE_MESSAGES)


def as_dropped_connection(error: Exception) -> Exception:
    """A ``ConnectionError`` for an error redis-py's own code raised on a connection closed under
    it; ``error`` itself for any other.

    During a failover redis-py can close a connection another task or thread is still using
    (redis/redis-py#4287), and that call then fails inside redis-py with an AttributeError
    (``'NoneType' object has no attribute 'writelines'``), a TypeError or a ValueError (``I/O
    operation on closed file``). For the session that is a dropped connection: a 503, or one
    more try for an idempotent call; never a 500 that blames the application.
    """
    if isinstance(error, (AttributeError, TypeError)) or (isinstance(error, ValueError) and "closed file" in str(error)):
        frames = traceback.extract_tb(error.__traceback__)
        if frames and _REDIS_PACKAGE in frames[-1].filename:
            dropped = redis.exceptions.ConnectionError(f"connection closed while in use: {type(error).__name__}: {error}")
            dropped.__cause__ = error
            return dropped
    return error


class WaitPolicy(NamedTuple):
    """``WAIT replicas timeout`` after every call that ends a session, and with ``durable_writes``
    after every call that writes (``replicas`` 0: never).

    Redis replication is asynchronous: a delete acknowledged by a master that fails before its
    replicas copied it is undone by the failover, and a logged-out session comes back; a write
    acknowledged that way is lost (a counter goes backwards).
    """

    replicas: int = 0
    timeout: float = 1.0
    durable_writes: bool = False

    @classmethod
    def of(cls, settings: SessionSettings) -> WaitPolicy:
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout, settings.redis_durable_writes)

    def covers(self, call: Call) -> bool:
        """Whether ``call`` is followed by WAIT."""
        return bool(self.replicas) and (
            call.script in ENDING_SCRIPTS or self.durable_writes and call.script in WRITING_SCRIPTS
        )

    def command(self) -> tuple[Any, ...]:
        """The WAIT command (Redis takes the timeout in milliseconds; 0 would block forever)."""
        return ("WAIT", self.replicas, max(1, round(self.timeout * 1000)))


#: The default: nothing waits for replicas (no extra command, no extra round trip).
NO_WAIT = WaitPolicy()
#: After a WAIT the replicas did not answer, how long a store stops waiting for them.
REPLICA_COOL_DOWN_SECONDS = 5.0


class ReplicasMissing(Exception):
    """Fewer replicas than session-redis-wait-replicas confirmed a write (the cause of a 503)."""


class StoreRules:
    """What the blocking and the asyncio store decide alike, without any I/O of their own."""

    def __init__(self, name: str, wait: WaitPolicy, stall_pause: float, client: Any) -> None:
        self.name = name
        self.wait = wait
        #: After a call times out, further calls fail at once (503) for this many seconds instead
        #: of each waiting out its own timeout. A blocking handler holds the IOLoop while it
        #: waits, so without the pause requests queued behind a stalled Redis would wait one
        #: timeout each, in turn (the tenth ten timeouts). The next call after it asks Redis again.
        self.stall_pause = stall_pause
        self.sentinel_pool = sentinel_pool(client)
        self._quiet_until = 0.0
        #: Until then replicas are taken to be missing (see waits_after), and what that cost.
        self._replicas_missing_until = 0.0
        self._unreplicated_logouts = 0
        self._refused_writes = 0
        # math.inf: stores that are not behind sentinels never check (one float compare per call)
        self._next_master_check = 0.0 if self.sentinel_pool is not None else math.inf

    def check_not_stalled(self) -> None:
        """Raise :class:`SessionUnavailableError` while the pause after a timeout lasts."""
        if self._quiet_until and time.monotonic() < self._quiet_until:
            raise SessionUnavailableError(self.name, redis.exceptions.TimeoutError(
                f"no reply within the timeout a moment ago; not asked again for {self.stall_pause:g} s"
            ))

    def master_check_due(self) -> bool:
        """Whether to ask the sentinels who the master is now (at most every MASTER_CHECK_SECONDS).

        redis-py asks the sentinels only when it opens a connection, so pooled connections would
        keep writing to the old master after a failover (it accepts writes until the sentinels
        demote it, then drops them when it resyncs). Asking once a second bounds that window at
        the cost of one sentinel round trip per second.
        """
        now = time.monotonic()
        if self._next_master_check > now:
            return False
        self._next_master_check = now + MASTER_CHECK_SECONDS
        return True

    def waits_after(self, call: Call) -> bool:
        """Whether to follow ``call`` with WAIT.

        Not while replicas are known to be missing (a WAIT they did not answer less than
        REPLICA_COOL_DOWN_SECONDS ago): each such call would block its request for the whole
        WAIT timeout (a blocking app: the whole IOLoop), and a failover took a blocking app from
        1,500 to under 10 requests a second. Meanwhile a logout goes unreplicated (it is done on
        the master, and counted), and a durable write answers 503 at once: acknowledging it
        without a replica would break the promise the setting makes.

        :raises SessionUnavailableError: for a durable write during the cool-down.
        """
        if not self.wait.covers(call):
            return False
        if self._replicas_missing_until:
            if time.monotonic() < self._replicas_missing_until:
                if call.script in ENDING_SCRIPTS:
                    self._unreplicated_logouts += 1
                    return False
                self._refused_writes += 1
                raise SessionUnavailableError(self.name, ReplicasMissing(
                    f"replicas did not confirm a write a moment ago (session-redis-wait-replicas={self.wait.replicas}); "
                    f"durable writes are refused for {REPLICA_COOL_DOWN_SECONDS:g} s"
                ))
            self._end_cool_down()
        return True

    def _end_cool_down(self) -> None:
        self._replicas_missing_until = 0.0
        logouts, writes = self._unreplicated_logouts, self._refused_writes
        self._unreplicated_logouts = self._refused_writes = 0
        logger.warning(
            "session store %s: waiting for replicas again; while they were missing %d logout(s) went unreplicated "
            "and %d durable write(s) answered 503", self.name, logouts, writes,
        )

    def retry_or_fail(self, call: Call, error: Exception) -> None:
        """Return if ``call`` may be sent once more after its first try failed with ``error``;
        raise what the error means otherwise (a 503 for an outage).

        Retries are off in the client (a timed-out incr may have been applied, and sending it
        again would count twice). An idempotent call is sent once more after a dropped
        connection, which covers a pooled connection that died while Redis restarted; never
        after a timeout, so a stalled Redis costs one timeout, not two.
        """
        error = as_dropped_connection(error)
        if not (call.idempotent and type(error) is redis.exceptions.ConnectionError):
            self.fail(error)

    def fail(self, error: Exception) -> NoReturn:
        """Raise what ``error`` means for a session: a refusal of the configuration (not an
        outage: retrying never helps), a 503 for an outage, else the error itself."""
        error = as_dropped_connection(error)
        if self.stall_pause and isinstance(error, redis.exceptions.TimeoutError):
            self._quiet_until = time.monotonic() + self.stall_pause
        advice = refusal(error)
        if advice is not None:
            raise StoreRefusedError(self.name, error, advice) from None
        if is_unavailable(error):
            raise SessionUnavailableError(self.name, error) from None
        raise error

    def check_acknowledged(self, call: Call, acknowledged: Any) -> None:
        """Judge the reply to the WAIT that followed ``call``.

        Too few replicas: the store stops waiting for a cool-down (see :meth:`waits_after`),
        logged once. A logout is not failed (the key is already gone on the master, and an error
        would leave the user logged in *and* told otherwise); a durable write is (503): it
        reached the master, but a failover now could lose it, so it is not acknowledged.
        No session id is logged.

        :raises SessionUnavailableError: for a durable write too few replicas confirmed.
        """
        wanted = self.wait.replicas
        confirmed = 0 if isinstance(acknowledged, Exception) else int(acknowledged)
        if confirmed >= wanted:
            return
        reason = (f"WAIT failed ({acknowledged})" if isinstance(acknowledged, Exception) else
                  f"{confirmed} of {wanted} replicas (session-redis-wait-replicas) confirmed within "
                  f"{self.wait.timeout:g} s (session-redis-wait-timeout)")
        if not self._replicas_missing_until:
            logger.warning(
                "session store %s: %s; for %g s logouts are not waited for (a failover then could bring a "
                "session back) and durable writes answer 503", self.name, reason, REPLICA_COOL_DOWN_SECONDS,
            )
        self._replicas_missing_until = time.monotonic() + REPLICA_COOL_DOWN_SECONDS
        if call.script not in ENDING_SCRIPTS:
            raise SessionUnavailableError(self.name, ReplicasMissing(
                f"the write reached the master, but {reason}: it could be lost in a failover"
            ))


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
