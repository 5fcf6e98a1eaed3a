"""The calls a store runs as plain commands instead of scripts, and what their replies mean.

``PLAIN_READ``: a read of a session without an absolute lifetime. A read needs no branch on the
server: ``EXPIRE`` both refreshes the TTL and says whether the session exists (0 for a missing
key), and the ``HMGET``/``HGETALL``/``HKEYS`` after it either answers or fails with
``WRONGTYPE`` for a key that is not a hash. Sent together they are one round trip, like a
script, but cost the server a fraction of one, and reads are most of a site's session traffic.
When the same request refreshed the TTL a moment ago the read goes alone, as one command.

A session deleted between the two commands reads as empty, which is what a read of a destroyed
session returns anyway; nothing is ever created by a read. With an absolute lifetime the TTL
depends on the creation time, so those reads stay in the ``read`` script.

``COMMANDS``: read-only commands on several keys in one round trip (which of a user's sessions
still exist, what an administrator sees of each). The keys sit in different cluster slots, so no
script could look at them together; a pipeline can (redis-py's cluster pipeline sends each
command to the node that owns its key). The reply is the list of results, with a command's
error (``WRONGTYPE``, say) in its place, for the caller to judge.

Both stores send :func:`commands` and hand the results to :func:`reply`, which answers in the
scripts' shape (``[status]`` or ``[status, data]``), so the core cannot tell which ran.
"""

from __future__ import annotations

from typing import Any

import redis

from .protocol import COMMANDS, PLAIN_READ, Call, Command, Status

_READERS = {"fields": "hmget", "all": "hgetall", "names": "hkeys"}


def commands(call: Call) -> list[Command]:
    """The commands of ``call``, in the order they are sent.

    A ``PLAIN_READ`` call's ``args`` are ``(idle seconds or 0, "fields" | "all" | "names",
    *field names)``; a ``COMMANDS`` call's ``args`` are the commands.
    """
    if call.script == PLAIN_READ:
        idle, what, *names = call.args
        read: Command = (_READERS[what], (call.key, names) if what == "fields" else (call.key,))
        return [("expire", (call.key, idle)), read] if idle else [read]
    if call.script == COMMANDS:
        return list(call.args)
    raise ValueError(f"{call.script!r} is not a pipeline")


def reply(call: Call, results: list[Any]) -> Any:
    """The replies of :func:`commands` (errors included, as exceptions) in the shape the core
    expects; an error that is not a ``WRONGTYPE`` is raised for the store to judge."""
    if call.script == COMMANDS:
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, redis.exceptions.ResponseError):
                raise result
        return results
    if len(results) == 2:
        expired, data = results
        if isinstance(expired, BaseException):
            raise expired
        if not expired:
            return [Status.GONE]
    else:  # the read alone: a missing key reads as empty, which is what a gone session gives
        data = results[0]
    if isinstance(data, BaseException):
        if isinstance(data, redis.exceptions.ResponseError) and str(data).startswith("WRONGTYPE"):
            return [Status.CORRUPT]
        raise data
    return [Status.OK, data]
