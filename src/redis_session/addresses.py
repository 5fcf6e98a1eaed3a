"""The store URL grammar: how every part of the library splits, checks and shows a store URL.

``redis+cluster://[user:password@]host:port[,host:port...]`` (``[/0]``, nothing else)
    Any reachable nodes of a cluster; the client discovers the rest (``rediss+cluster://``: TLS).
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?options]``
    The sentinels watching ``service_name``; the client asks them where the master is.
    Options: ``sentinel_password``, ``sentinel_username`` (if the sentinels need their own).

One splitting rule for every scheme, the one of RFC 3986 that redis-py's ``from_url`` also
follows: the host part runs from ``://`` to the first ``/``, ``?`` or ``#``, and the user
information is everything in it up to its *last* ``@``. So a password may hold ``@`` and ``:``,
but ``/``, ``?``, ``#`` (and ``%``, ``+``, ``&``, ``,``) must be percent-encoded; passwords,
user names, the service name and option values are percent-decoded. A password that breaks the
rule leaves an ``@`` after the host part, which is refused (and never shown), rather than
quietly connecting somewhere else.

Parsing lives here, separate from connecting, so the sync and asyncio stores build their clients
from the same description, and settings validation (:func:`store_url_problems`) refuses a bad
URL at startup instead of on the first request.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote

from .errors import ConfigurationError

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
PLAIN_SCHEMES = ("redis", "rediss")
#: Query options each kind of URL understands (redis:// options are redis-py's own).
SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")
#: Query options whose values may hold an ``@`` without it being a misplaced password.
_SECRET_OPTIONS = frozenset({"password", "username", *SENTINEL_OPTIONS})
_DIGITS = re.compile(r"[0-9]+")
# A host name (or IPv4 address) without a port: no separators, no brackets, no spaces.
_HOST_NAME = re.compile(r"[^\s:\[\]@,/?#%]+")
_HOST_SHAPE = re.compile(r"(\[[0-9A-Za-z:.%_-]*\]|[^\s:\[\]@,/?#%]*)(:[0-9]*)?")


class UrlParts(NamedTuple):
    """A store URL split by the one rule (still percent-encoded, except the scheme)."""

    scheme: str  # lower case; "" when the text has no "://"
    userinfo: str | None  # None without an "@" in the host part
    hosts: str
    path: str
    query: str  # after "?", without it
    fragment: str | None  # None without a "#"
    after_hosts: str  # path, query and fragment as written


def split_url(url: str) -> UrlParts:
    """Split ``url`` by the rule above; never raises (a message about a bad URL needs it too)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    end = min((position for position in (rest.find(char) for char in "/?#") if position >= 0), default=len(rest))
    authority, after = rest[:end], rest[end:]
    userinfo: str | None
    if "@" in authority:
        userinfo, _, hosts = authority.rpartition("@")
    else:
        userinfo, hosts = None, authority
    head, has_fragment, fragment = after.partition("#")
    path, _, query = head.partition("?")
    return UrlParts(scheme.lower(), userinfo, hosts, path, query, fragment if has_fragment else None, after)


def _misplaced_at(parts: UrlParts) -> int:
    """Where in ``parts.after_hosts`` the last ``@`` stands that can only be the end of a password
    holding an unencoded ``/``, ``?`` or ``#`` (-1: none). An ``@`` inside the value of a
    password option (``?sentinel_password=p@ss``) is legitimate, and so is one in the socket path
    of ``unix:///run/redis@6379.sock`` (whose host part is empty)."""
    head, has_fragment, fragment = parts.after_hosts.partition("#")
    path, has_query, query = head.partition("?")
    if parts.scheme == "unix" and not parts.hosts:
        path = " " * len(path)
    items = []
    for item in query.split("&"):
        key, has_value, value = item.partition("=")
        if has_value and unquote(key).lower() in _SECRET_OPTIONS:
            value = " " * len(value)  # same length, so positions still match after_hosts
        items.append(key + has_value + value)
    masked = path + has_query + "&".join(items) + has_fragment + fragment
    return masked.rfind("@")


def describe_url(url: str) -> str:
    """``url`` without any password, for messages and logs: scheme, hosts and path only.

    The user information, the query (it may hold ``password=``) and any fragment are left out.
    When a password broke the splitting rule, whatever precedes its end is hidden too, and a
    host entry that cannot be a host (the start of such a password) is shown as ``***``.
    """
    parts = split_url(url)
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    misplaced = _misplaced_at(parts)
    if misplaced >= 0:
        tail = parts.after_hosts[misplaced + 1:]
        cut = min((position for position in (tail.find(char) for char in "?#") if position >= 0), default=len(tail))
        return f"{scheme}***@{tail[:cut]}"
    hosts = ",".join(item if _shows_as_host(item) else "***" for item in parts.hosts.split(","))
    return f"{scheme}{hosts}{parts.path}"


def _shows_as_host(item: str) -> bool:
    """Whether ``item`` may be shown: it has the shape of ``host[:digits]`` (a password that
    broke the splitting rule, such as ``user:secret``, does not)."""
    return _HOST_SHAPE.fullmatch(item) is not None


@dataclass(frozen=True)
class NodesAddress:
    """A cluster or a set of sentinels, as given in a store URL."""

    kind: str  # "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    service_name: str = ""
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def connection_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        if self.tls:
            options["ssl"] = True
        return options

    def sentinel_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.sentinel_username:
            options["username"] = self.sentinel_username
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.tls:
            options["ssl"] = True
        return options


def parse_nodes_url(url: str) -> NodesAddress:
    """Parse a ``redis+cluster://`` or ``redis+sentinel://`` URL.

    :raises ConfigurationError: naming the URL (without its password) and every wrong part.
    """
    address, problems = _parse_nodes(split_url(url))
    if address is None or problems:
        shown = describe_url(url)
        raise ConfigurationError([f"session-redis: {shown!r}: {problem}" for problem in problems])
    return address


def store_url_problems(url: str) -> list[str]:
    """Why ``url`` cannot work, each naming the URL without its password (``[]``: it can).

    Cluster and sentinel URLs are checked in full; ``redis://``/``rediss://`` for their host,
    port and database; ``unix://`` and ``memory://`` only for a misplaced password. A scheme
    this library does not know is the caller's to report.
    """
    parts = split_url(url)
    problems: list[str] = []
    if parts.scheme in CLUSTER_SCHEMES or parts.scheme in SENTINEL_SCHEMES:
        problems = _parse_nodes(parts)[1]
    elif _misplaced_at(parts) >= 0:
        problems = [_MISPLACED_AT]
    elif parts.scheme in PLAIN_SCHEMES:
        problems = _plain_problems(parts)
    shown = describe_url(url)
    return [f"{shown!r}: {problem}" for problem in problems]


_MISPLACED_AT = (
    "an '@' follows the host part: a password holding '/', '?' or '#' must be percent-encoded "
    "(%2F, %3F, %23)"
)


def _plain_problems(parts: UrlParts) -> list[str]:
    """A ``redis://`` URL names one server (redis-py reads it; here only what it would ignore)."""
    problems: list[str] = []
    if "," in parts.hosts:
        problems.append(f"a {parts.scheme}:// URL names one server; for several use redis+cluster:// or redis+sentinel://")
    elif parts.hosts:
        problem = _split_host(parts.hosts, 6379, _label(parts.hosts, 1, 1))[2]
        if problem:
            problems.append(problem)
    database = parts.path.strip("/")
    if database and not _DIGITS.fullmatch(database):
        problems.append(f"database {parts.path!r} must be a whole number >= 0, as in {parts.scheme}://host:6379/0")
    if parts.fragment is not None:
        problems.append(_FRAGMENT)
    return problems


_FRAGMENT = "a '#' starts a fragment, which a store URL cannot have; write '#' in a password as %23"


def _parse_nodes(parts: UrlParts) -> tuple[NodesAddress | None, list[str]]:
    """The address and every problem found (the address is None when it cannot be built)."""
    scheme = parts.scheme
    if scheme not in CLUSTER_SCHEMES and scheme not in SENTINEL_SCHEMES:
        known = ", ".join(f"{s}://" for s in CLUSTER_SCHEMES + SENTINEL_SCHEMES)
        return None, [f"not a cluster or sentinel URL (use one of {known})"]
    if _misplaced_at(parts) >= 0:
        return None, [_MISPLACED_AT]
    sentinel = scheme in SENTINEL_SCHEMES
    problems: list[str] = []
    nodes = _nodes(parts.hosts, 26379 if sentinel else 6379, problems)
    username = password = None
    if parts.userinfo is not None:
        user_part, has_password, password_part = parts.userinfo.partition(":")
        username = unquote(user_part) or None
        password = (unquote(password_part) or None) if has_password else None
    options = _options(parts.query, SENTINEL_OPTIONS if sentinel else (), scheme, problems)
    if parts.fragment is not None:
        problems.append(_FRAGMENT)
    tls = scheme.startswith("rediss")
    if not sentinel:
        if parts.path.strip("/") not in ("", "0"):
            problems.append(f"Redis Cluster has database 0 only; remove the path {parts.path!r}")
        return NodesAddress("cluster", nodes, username, password, tls), problems
    service_name, db = _service_and_db(parts.path, problems)
    address = NodesAddress(
        "sentinel", nodes, username, password, tls, service_name, db,
        options.get("sentinel_username"), options.get("sentinel_password"),
    )
    return address, problems


def _nodes(hosts: str, default_port: int, problems: list[str]) -> tuple[tuple[str, int], ...]:
    if not hosts:
        problems.append("no host: name at least one host:port")
        return ()
    nodes: list[tuple[str, int]] = []
    items = hosts.split(",")
    for number, item in enumerate(items, 1):
        host, port, problem = _split_host(item, default_port, _label(item, number, len(items)))
        if problem:
            problems.append(problem)
        else:
            nodes.append((host, port))
    return tuple(nodes)


def _label(item: str, number: int, count: int) -> str:
    """How a message names a host entry: as written, unless that could show a password."""
    if item and _shows_as_host(item):
        return repr(item)
    return "the host part" if count == 1 else f"host entry {number} of {count}"


def _split_host(item: str, default_port: int, label: str) -> tuple[str, int, str | None]:
    """``(host, port, None)`` for ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; else a problem."""
    if not item:
        return "", 0, f"{label} is empty (two commas, or one at an end)"
    if item.startswith("["):
        inside, bracket, port_part = item[1:].partition("]")
        host = inside
        if not bracket or (port_part and not port_part.startswith(":")):
            return "", 0, f"{label} is not [IPv6 address]:port"
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            return "", 0, f"{label} holds no IPv6 address between its brackets"
        has_port, port_text = bool(port_part), port_part[1:]
    else:
        host, has_port_sep, port_text = item.partition(":")
        if ":" in port_text:
            return "", 0, f"{label}: write an IPv6 address in brackets, as in [::1]:6379"
        if not _HOST_NAME.fullmatch(host):
            return "", 0, f"{label} has no valid host name"
        has_port = bool(has_port_sep)
    if not has_port:
        return host, default_port, None
    if not _DIGITS.fullmatch(port_text):
        return "", 0, f"the port of {label} is not a number"
    port = int(port_text)
    if not 0 < port < 65536:
        return "", 0, f"port {port} of {label} is out of range (1-65535)"
    return host, port, None


def _options(query: str, known: tuple[str, ...], scheme: str, problems: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        raw_key, has_value, raw_value = item.partition("=")
        key = unquote(raw_key)
        if key not in known:
            accepted = f"known: {', '.join(known)}" if known else f"a {scheme}:// URL takes none"
            problems.append(f"unknown option {key!r} ({accepted})")
        elif not has_value:
            problems.append(f"option {key!r} has no value (write {key}=...)")
        elif key in options:
            problems.append(f"option {key!r} is given twice")
        else:
            options[key] = unquote(raw_value)
    return options


def _service_and_db(path: str, problems: list[str]) -> tuple[str, int]:
    segments = path[1:].split("/") if path else []
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash
    if not segments or not segments[0]:
        problems.append("no service name: write redis+sentinel://host:26379,host2:26379/mymaster[/db]")
        return "", 0
    service_name, db = unquote(segments[0]), 0
    if len(segments) > 1:
        if _DIGITS.fullmatch(segments[1]):
            db = int(segments[1])
        else:
            problems.append(f"database {segments[1]!r} must be a whole number >= 0")
    if len(segments) > 2:
        problems.append(f"unexpected path after the database: {'/' + '/'.join(segments[2:])!r} (the path is /service_name[/db])")
    return service_name, db
