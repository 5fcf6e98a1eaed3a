"""The rules both stores follow, without any I/O of their own: what an error means for the
request, what may be sent twice, WAIT after a call that ends a session (or, with durable writes,
after every write) and the cool-down when replicas do not answer, how often a store behind
sentinels asks who the master is, and the pause after a timeout.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, NamedTuple, NoReturn

import redis

from .clients import sentinel_pool
from .errors import SessionUnavailableError, StoreRefusedError
from .protocol import ENDING_SCRIPTS, WRITING_SCRIPTS, Call
from .settings import SessionSettings
from .store_errors import as_dropped_connection, is_unavailable, refusal

logger = logging.getLogger("redis_session")


#: How often a store behind sentinels asks them who the master is (see Store.follow_master).
MASTER_CHECK_SECONDS = 1.0


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
