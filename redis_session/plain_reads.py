"""Reads of a session without an absolute lifetime: a two-command pipeline instead of a script.

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
"""

from __future__ import annotations

from typing import Any, List

import redis

#: The :attr:`~redis_session.store.Call.script` name stores run as a pipeline.
PLAIN_READ = "plain_read"

_GONE, _OK, _CORRUPT = 0, 1, -4


def queue_read(pipeline: Any, key: str, args: Any) -> None:
    """Queue ``EXPIRE`` then the read on ``pipeline`` (a redis-py pipeline of any flavour).

    ``args`` is ``(idle seconds, "fields" | "all" | "names", *field names)``.
    """
    pipeline.expire(key, args[0])
    what = args[1]
    if what == "fields":
        pipeline.hmget(key, args[2:])
    elif what == "all":
        pipeline.hgetall(key)
    else:
        pipeline.hkeys(key)


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


def plain_read(client: Any, key: str, args: Any) -> List[Any]:
    """Run a plain read on a blocking client."""
    pipeline = client.pipeline(transaction=False)
    queue_read(pipeline, key, args)
    return reply_of(pipeline.execute(raise_on_error=False))


async def plain_read_async(client: Any, key: str, args: Any) -> List[Any]:
    """Run a plain read on an asyncio client."""
    pipeline = client.pipeline(transaction=False)
    queue_read(pipeline, key, args)
    return reply_of(await pipeline.execute(raise_on_error=False))
