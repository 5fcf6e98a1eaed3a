"""What a Redis error means for a session: an outage (503, retry later), a refusal of this
configuration (a misconfiguration no retry fixes, with what to change), or a connection redis-py
closed under a call in flight. Both stores, the start-up check and ``doctor`` judge errors here.
"""

from __future__ import annotations

import os
import traceback

import redis

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
