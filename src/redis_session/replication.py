"""What a store does about replicas: ``WAIT`` after ending a session, and spotting the pool of a
store behind sentinels (which must follow a failover).

Redis replication is asynchronous: a delete acknowledged by a master that fails before its
replicas copied it is undone by the failover, and a logged-out session comes back. ``WAIT`` on
the connection that deleted the key blocks until enough replicas have the delete; this module
decides how it is sent and what a late or missing acknowledgement means.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, NamedTuple, Tuple

from .settings import SessionSettings

logger = logging.getLogger("redis_session")

#: The calls that end a session: with redis-wait-replicas they are followed by WAIT.
ENDING_SCRIPTS = frozenset({"destroy", "take"})


class WaitPolicy(NamedTuple):
    """``WAIT replicas timeout`` after every delete that ends a session (``replicas`` 0: never)."""

    replicas: int = 0
    timeout: float = 1.0

    @classmethod
    def of(cls, settings: SessionSettings) -> WaitPolicy:
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout)

    def command(self) -> Tuple[Any, ...]:
        """The WAIT command (Redis takes the timeout in milliseconds; 0 would block forever)."""
        return ("WAIT", self.replicas, max(1, round(self.timeout * 1000)))

    def check(self, store_name: str, acknowledged: Any) -> None:
        """Log, but do not fail, a delete fewer replicas confirmed than asked for.

        The key is already gone on the master, and answering the logout with an error would only
        leave the user logged in *and* told otherwise; the warning tells the operator that a
        failover now could bring the session back. No session id is logged.
        """
        if isinstance(acknowledged, Exception):
            logger.warning(
                "session store %s: WAIT after ending a session failed (%s); the session is deleted on the "
                "master, but no replica confirmed it (session-redis-wait-replicas=%d)",
                store_name, acknowledged, self.replicas,
            )
        elif int(acknowledged) < self.replicas:
            logger.warning(
                "session store %s: %d of %d replicas (session-redis-wait-replicas) confirmed ending a session "
                "within %.3g s (session-redis-wait-timeout); it is deleted on the master, but a failover now "
                "could bring it back", store_name, int(acknowledged), self.replicas, self.timeout,
            )


#: The default: deletes are not followed by WAIT (no extra command, no extra round trip).
NO_WAIT = WaitPolicy()


def wait_target(client: Any, key: str) -> Dict[str, Any]:
    """Where WAIT must go to count the replicas of ``key``'s delete: on a cluster, the primary that
    owns the key (redis-py would otherwise send a keyless WAIT to every node and add the replies).
    WAIT counts only the writes of its own connection, so it is queued in the delete's pipeline."""
    get_node_from_key = getattr(client, "get_node_from_key", None)
    return {} if get_node_from_key is None else {"target_nodes": get_node_from_key(key)}


def sentinel_pool(client: Any) -> Any:
    """The client's sentinel-managed connection pool, or ``None`` for any other store."""
    pool = getattr(client, "connection_pool", None)
    return pool if callable(getattr(pool, "get_master_address", None)) else None
