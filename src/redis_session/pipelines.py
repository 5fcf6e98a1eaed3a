"""The calls a store runs as plain pipelines instead of scripts.

``PLAIN_READ``: a read of a session without an absolute lifetime, a two-command pipeline (or,
when the same request set the TTL a moment ago, the read alone: one command).

A read needs no branch on the server: ``EXPIRE`` both refreshes the TTL and says whether the
session exists (0 for a missing key), and the ``HMGET``/``HGETALL``/``HKEYS`` after it either
answers or fails with ``WRONGTYPE`` for a key that is not a hash. Sent together they are one
round trip, like the script, but cost the server a fraction of it (every ``redis.call`` inside a
script costs several times the plain command), and reads are most of a site's session traffic.

A session deleted between the two commands reads as empty, which is what a read of a destroyed
session returns anyway; nothing is ever created by a read. With an absolute lifetime the TTL
depends on the creation time, so those reads stay in the ``read`` script.

The reply has the script's shape, ``[status]`` or ``[status, data]``, so the session core cannot
tell which ran.

``LIVE_KEYS``: which of several session keys still exist (``EXISTS`` each, one round trip), for
pruning a user's index of sessions that expired. The keys sit in different cluster slots, so no
script could look at them together; a pipeline can (redis-py's cluster pipeline sends each
command to the node that owns its key).
"""

from __future__ import annotations

from typing import Any, List

import redis

#: :attr:`~redis_session.store.Call.script` names that stores run as pipelines.
PLAIN_READ = "plain_read"
LIVE_KEYS = "live_keys"
PIPELINES = frozenset({PLAIN_READ, LIVE_KEYS})

_GONE, _OK, _CORRUPT = 0, 1, -4


def queue_read(pipeline: Any, key: str, args: Any) -> None:
    """Queue ``EXPIRE`` then the read on ``pipeline`` (a redis-py pipeline of any flavour).

    ``args`` is ``(idle seconds, "fields" | "all" | "names", *field names)``.
    """
    pipeline.expire(key, args[0])
    read_without_expire(pipeline, key, args)


def read_without_expire(target: Any, key: str, args: Any) -> Any:
    """The read of ``args`` without the EXPIRE: queued on a pipeline, or sent as one command on a
    client (whose reply, or awaitable reply, is returned)."""
    what = args[1]
    if what == "fields":
        return target.hmget(key, args[2:])
    if what == "all":
        return target.hgetall(key)
    return target.hkeys(key)


def reply_of(results: List[Any]) -> List[Any]:
    """Turn the pipeline's ``[expired, data]`` (run with ``raise_on_error=False``) into a
    script-shaped reply; an error that is not ``WRONGTYPE`` is raised for the store to judge."""
    expired, data = results
    if isinstance(expired, BaseException):
        raise expired
    if not expired:
        return [_GONE]
    if isinstance(data, BaseException):
        if isinstance(data, redis.exceptions.ResponseError) and str(data).startswith("WRONGTYPE"):
            return [_CORRUPT]
        raise data
    return [_OK, data]


def queue(pipeline: Any, name: str, key: str, args: Any) -> None:
    """Queue the commands of pipeline ``name`` (``LIVE_KEYS``: ``args`` are the keys)."""
    if name == PLAIN_READ:
        queue_read(pipeline, key, args)
    else:
        for session_key in args:
            pipeline.exists(session_key)


def reply(name: str, results: List[Any]) -> Any:
    """The pipeline's replies in the shape the session core expects."""
    if name == PLAIN_READ:
        return reply_of(results)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [bool(result) for result in results]


def _alone_reply(error: Any, data: Any) -> List[Any]:
    """The script-shaped reply of a read sent without EXPIRE: it cannot tell a missing key from
    missing fields (both read empty, which is what a read of a gone session gives anyway), but
    WRONGTYPE still says the key is not a hash."""
    if error is not None:
        if isinstance(error, redis.exceptions.ResponseError) and str(error).startswith("WRONGTYPE"):
            return [_CORRUPT]
        raise error
    return [_OK, data]


def run(client: Any, name: str, key: str, args: Any) -> Any:
    """Run pipeline ``name`` on a blocking client (a read with a fresh TTL is a single command)."""
    if name == PLAIN_READ:
        if not args[0]:
            try:
                return _alone_reply(None, read_without_expire(client, key, args))
            except redis.exceptions.ResponseError as error:
                return _alone_reply(error, None)
        # what queue() and reply() do for a read, spelled out: this is every page's round trip
        pipeline = client.pipeline(transaction=False)
        pipeline.expire(key, args[0])
        read_without_expire(pipeline, key, args)
        return reply_of(pipeline.execute(raise_on_error=False))
    if name == LIVE_KEYS and not args:
        return []
    pipeline = client.pipeline(transaction=False)
    queue(pipeline, name, key, args)
    return reply(name, pipeline.execute(raise_on_error=False))


async def run_async(client: Any, name: str, key: str, args: Any) -> Any:
    """Run pipeline ``name`` on an asyncio client (a read with a fresh TTL is a single command)."""
    if name == PLAIN_READ and not args[0]:
        try:
            return _alone_reply(None, await read_without_expire(client, key, args))
        except redis.exceptions.ResponseError as error:
            return _alone_reply(error, None)
    if name == LIVE_KEYS and not args:
        return []
    pipeline = client.pipeline(transaction=False)
    queue(pipeline, name, key, args)
    return reply(name, await pipeline.execute(raise_on_error=False))
