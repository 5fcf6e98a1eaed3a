"""The store URL grammar beyond plain ``redis://``: Redis Cluster and Sentinel.

``redis+cluster://[user:password@]host:port[,host:port...][?options]``
    Any reachable nodes of a cluster; the client discovers the rest (``rediss+cluster://``: TLS).
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?options]``
    The sentinels watching ``service_name``; the client asks them where the master is.
    Options: ``sentinel_password``, ``sentinel_username`` (if the sentinels need their own).

Parsing lives here, separate from connecting, so the sync and asyncio stores build their clients
from the same description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True)
class NodesAddress:
    """A cluster or a set of sentinels, as given in a store URL."""

    kind: str  # "cluster" or "sentinel"
    nodes: Tuple[Tuple[str, int], ...]
    username: Optional[str]
    password: Optional[str]
    tls: bool
    service_name: str = ""
    db: int = 0
    sentinel_username: Optional[str] = None
    sentinel_password: Optional[str] = None

    def connection_options(self) -> Dict[str, Any]:
        options: Dict[str, Any] = {}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        if self.tls:
            options["ssl"] = True
        return options

    def sentinel_options(self) -> Dict[str, Any]:
        options: Dict[str, Any] = {}
        if self.sentinel_username:
            options["username"] = self.sentinel_username
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.tls:
            options["ssl"] = True
        return options


def parse_nodes_url(url: str) -> NodesAddress:
    """Parse a ``redis+cluster://`` or ``redis+sentinel://`` URL.

    :raises ConfigurationError: saying what part of the URL is wrong.
    """
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    credentials, _, location = rest.rpartition("@")
    username: Optional[str] = None
    password: Optional[str] = None
    if credentials:
        user_part, has_password, password_part = credentials.partition(":")
        username = unquote(user_part) or None
        password = unquote(password_part) if has_password else None
    hosts_part, _, query = location.partition("?")
    hosts_part, _, path = hosts_part.partition("/")
    nodes: List[Tuple[str, int]] = []
    for item in filter(None, hosts_part.split(",")):
        parsed = urlsplit("//" + item)
        try:
            port = parsed.port or (26379 if scheme in SENTINEL_SCHEMES else 6379)
        except ValueError:
            raise ConfigurationError(f"session-redis: {item!r} in the store URL is not host:port") from None
        if not parsed.hostname:
            raise ConfigurationError(f"session-redis: {item!r} in the store URL has no host")
        nodes.append((parsed.hostname, port))
    if not nodes:
        raise ConfigurationError(f"session-redis: a {scheme}:// URL needs at least one host:port")
    options = {key: values[-1] for key, values in parse_qs(query).items()}
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        return NodesAddress("cluster", tuple(nodes), username, password, tls)
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        raise ConfigurationError(
            "session-redis: a redis+sentinel:// URL needs the service name: "
            "redis+sentinel://host:26379,host2:26379/mymaster[/db]"
        )
    db = 0
    if len(segments) > 1:
        try:
            db = int(segments[1])
        except ValueError:
            raise ConfigurationError(f"session-redis: database {segments[1]!r} in the store URL is not a number") from None
    return NodesAddress(
        "sentinel", tuple(nodes), username, password, tls, unquote(segments[0]), db,
        options.get("sentinel_username"), options.get("sentinel_password"),
    )
