"""Judging what a Redis server said: each check of :mod:`redis_session.doctor` turns the facts
one server reported (:class:`Facts`) into a :class:`Finding` in plain words, with what to set
instead. No I/O here: :mod:`redis_session.doctor` asks the servers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .settings import SessionSettings

OK, RISK, UNKNOWN = "ok", "risk", "unknown"
PRIMARY, REPLICA = "primary", "replica"
CLUSTER_SLOTS = 16384
#: The oldest Redis the library supports (and its test suite runs against).
OLDEST_SUPPORTED = (7, 0)
#: ``setting: (INFO field, how its value reads as the setting's)``.
INFO_EQUIVALENTS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "maxmemory": ("maxmemory", str),
    "maxmemory-policy": ("maxmemory_policy", str),
    "appendonly": ("aof_enabled", lambda enabled: "yes" if int(enabled) else "no"),
}
GRANT_INFO = "let this user run INFO (ACL SETUSER <user> +info)"
NO_EVICTION_FIX = "set maxmemory-policy noeviction (or give the sessions a Redis of their own, if other data there must be evicted)"


@dataclass(frozen=True)
class Finding:
    """One check of one server: its ``level`` (``ok``, ``risk``, ``unknown``), what the server
    will do to sessions in plain words, and what to set instead (``fix``; empty when there is
    nothing to change)."""

    check: str
    level: str
    message: str
    fix: str
    #: ``host:port`` (or a socket path) of the server it is about.
    server: str
    #: ``primary`` (the server that takes writes) or ``replica`` (one a failover may promote).
    role: str = PRIMARY

    def as_json(self) -> dict[str, str]:
        """The finding as a JSON object: what ``redis-session doctor --json`` prints for it."""
        return dataclasses.asdict(self)


def has_risk(findings: list[Finding]) -> bool:
    """Whether any finding is a risk (what ``doctor --strict`` fails on; unknowns do not count)."""
    return any(finding.level == RISK for finding in findings)

@dataclass
class Facts:
    """What one server answered (``INFO``, ``CONFIG GET``, ``CLUSTER INFO``), and why it did not."""

    server: str
    role: str
    info: dict[str, Any]
    info_error: str | None
    config: dict[str, str]
    config_error: str | None
    #: ``None`` with no error: not a cluster node.
    cluster: dict[str, str] | None = None
    cluster_error: str | None = None

    def setting(self, name: str) -> str | None:
        """The server's value of a setting: from CONFIG GET, else from INFO (``None``: neither said)."""
        if name in self.config:
            return self.config[name]
        equivalent = INFO_EQUIVALENTS.get(name)
        if equivalent is not None and equivalent[0] in self.info:
            return equivalent[1](self.info[equivalent[0]])
        return None

    def unreadable(self, *names: str) -> str:
        """``could not read NAME: why``, for settings :meth:`setting` could not give."""
        reasons = [self.config_error or "the server did not list it"]
        if any(name in INFO_EQUIVALENTS for name in names) and self.info_error:
            reasons.append(self.info_error)
        return f"could not read {' and '.join(names)}: {'; '.join(reasons)}"

    def replicas(self) -> list[tuple[str, int]]:
        """The replicas this server reports (``INFO replication``: ``slave0``, ``slave1``, ...)."""
        found = []
        for number in range(int(self.info.get("connected_slaves", 0) or 0)):
            entry = self.info.get(f"slave{number}")
            if entry is None:
                continue
            if not isinstance(entry, dict):  # an older redis-py hands back the raw text
                entry = dict(item.partition("=")[::2] for item in str(entry).split(","))
            found.append((str(entry["ip"]), int(entry["port"])))
        return found

    def finding(self, check: str, level: str, message: str, fix: str = "") -> Finding:
        return Finding(check, level, message, fix, self.server, self.role)

# -- the checks ----------------------------------------------------------------------------------------


def check_server(facts: Facts, settings: SessionSettings) -> list[Finding]:
    """Every check that applies to the server's role, in :data:`CHECKS` order."""
    findings = []
    for check, roles in CHECKS:
        if facts.role in roles:
            finding = check(facts, settings)
            if finding is not None:
                findings.append(finding)
    return findings


def check_version(facts: Facts, settings: SessionSettings) -> Finding | None:
    version = facts.info.get("redis_version")
    if version is None:
        return facts.finding("version", UNKNOWN, f"could not read the Redis version: {facts.info_error}",
                             GRANT_INFO)
    numbers = tuple(int(part) for part in re.findall(r"\d+", str(version))[:2])
    if numbers >= OLDEST_SUPPORTED:
        return facts.finding("version", OK, f"Redis {version}")
    return facts.finding("version", RISK, f"Redis {version} is older than 7.0: it cannot parse the scripts' flags line "
                         "(which makes a full Redis refuse a write as a whole), so every session call fails",
                         "upgrade to Redis 7.0 or newer")


def check_maxmemory(facts: Facts, settings: SessionSettings) -> Finding | None:
    value = facts.setting("maxmemory")
    if value is None:
        return facts.finding("maxmemory", UNKNOWN, facts.unreadable("maxmemory"), grant_config("maxmemory"))
    if int(value) == 0:
        return facts.finding("maxmemory", RISK, "no memory limit (maxmemory 0): Redis may grow until the operating system "
                             "kills it, taking every session not yet saved with it",
                             "set maxmemory below the memory the host can give Redis, with maxmemory-policy noeviction")
    used = facts.info.get("used_memory")
    detail = f", {size(int(used))} used ({int(used) * 100 // int(value)}%)" if used is not None else ""
    return facts.finding("maxmemory", OK, f"maxmemory {size(int(value))}{detail}")


def check_policy(facts: Facts, settings: SessionSettings) -> Finding | None:
    policy = facts.setting("maxmemory-policy")
    if policy is None:
        return facts.finding("maxmemory-policy", UNKNOWN, facts.unreadable("maxmemory-policy"), grant_config("maxmemory-policy"))
    if policy == "noeviction":
        return facts.finding("maxmemory-policy", OK, "noeviction: when memory is full, writes fail (503) and no session is dropped")
    when = "when memory is full" if facts.setting("maxmemory") != "0" else "when memory reaches maxmemory (none is set now)"
    if policy.startswith("allkeys-"):
        return facts.finding("maxmemory-policy", RISK, f"{policy}: {when}, Redis silently deletes keys, sessions among them "
                             "(their users are logged out)", NO_EVICTION_FIX)
    if policy.startswith("volatile-"):
        return facts.finding("maxmemory-policy", RISK, f"{policy}: {when}, Redis silently deletes keys that have a TTL, and every "
                             "session has one: sessions go first", NO_EVICTION_FIX)
    return facts.finding("maxmemory-policy", UNKNOWN, f"{policy}: a policy this check does not know", NO_EVICTION_FIX)


def check_evictions(facts: Facts, settings: SessionSettings) -> Finding | None:
    evicted = facts.info.get("evicted_keys")
    if evicted is None:
        return facts.finding("evicted-keys", UNKNOWN, f"could not read evicted_keys: {facts.info_error}", GRANT_INFO)
    if int(evicted) == 0:
        return facts.finding("evicted-keys", OK, "no key was evicted since the server started")
    return facts.finding("evicted-keys", RISK, f"{evicted} keys were evicted since the server started: users whose session was "
                         "among them were logged out", f"{NO_EVICTION_FIX}; and give Redis the memory it needs")


def check_persistence(facts: Facts, settings: SessionSettings) -> Finding | None:
    aof, save = facts.setting("appendonly"), facts.setting("save")
    if aof == "yes":
        fsync = facts.setting("appendfsync")
        return facts.finding("persistence", OK, f"appendonly yes{f' (appendfsync {fsync})' if fsync else ''}: sessions survive a restart")
    if save:
        return facts.finding("persistence", OK, f"RDB snapshots only (save {save}): a restart keeps sessions, but a crash loses "
                             "those written since the last snapshot (appendonly yes keeps them too)")
    if aof == "no" and save == "":
        return facts.finding("persistence", RISK, 'no persistence (appendonly no, save ""): a restart of Redis loses every '
                             "session, and every user is logged out",
                             "set appendonly yes (or a save schedule), unless logging everyone out on a restart is acceptable")
    unread = [name for name, value in (("appendonly", aof), ("save", save)) if value is None]
    known = "appendonly no, and " if aof == "no" else ""
    return facts.finding("persistence", UNKNOWN, known + facts.unreadable(*unread), grant_config(*unread))


def check_replicas(facts: Facts, settings: SessionSettings) -> Finding | None:
    count = connected_replicas(facts)
    if count is None:
        return facts.finding("replicas", UNKNOWN, f"could not read connected_slaves: {facts.info_error}", GRANT_INFO)
    if count == 0:
        return facts.finding("replicas", OK, "no replica: nothing can take over if this server fails, and if its host is "
                             "lost, so are its sessions")
    return facts.finding("replicas", OK, f"{count} replica{'s' if count != 1 else ''} connected")


def check_min_replicas(facts: Facts, settings: SessionSettings) -> Finding | None:
    count = connected_replicas(facts)
    need, lag = facts.setting("min-replicas-to-write"), facts.setting("min-replicas-max-lag")
    effective = int(need) if need is not None and lag is not None and int(lag) > 0 else 0
    if count == 0:
        if effective:  # with no replica to count, the setting refuses every write
            return facts.finding("min-replicas-to-write", RISK, f"min-replicas-to-write {need}, but no replica is connected: "
                                 "the server refuses every write (503)", "connect a replica, or set min-replicas-to-write 0")
        return None  # nothing to protect
    if need is None or lag is None:
        unread = [name for name, value in (("min-replicas-to-write", need), ("min-replicas-max-lag", lag)) if value is None]
        return facts.finding("min-replicas-to-write", UNKNOWN, facts.unreadable(*unread), grant_config(*unread))
    if not effective:
        off = " (min-replicas-max-lag 0 turns it off)" if int(need) else ""
        return facts.finding("min-replicas-to-write", RISK, f"min-replicas-to-write {need}{off}: a master cut off from its replicas "
                             "keeps acknowledging writes that a failover then discards (a logout can come undone)",
                             "set min-replicas-to-write 1 and min-replicas-max-lag 10, or --session-redis-durable-writes")
    if count is not None and effective > count:
        return facts.finding("min-replicas-to-write", RISK, f"min-replicas-to-write {need}, but {count} replica"
                             f"{'s are' if count != 1 else ' is'} connected: the server refuses every write (503)",
                             f"set min-replicas-to-write {count}, or connect more replicas")
    return facts.finding("min-replicas-to-write", OK, f"min-replicas-to-write {need}, min-replicas-max-lag {lag}: a master cut off "
                         "from its replicas refuses writes (503) instead of losing them")


def check_wait_replicas(facts: Facts, settings: SessionSettings) -> Finding | None:
    wanted, count = settings.redis_wait_replicas, connected_replicas(facts)
    if not wanted:
        if count:
            return facts.finding("wait-replicas", OK, "--session-redis-wait-replicas 0: a logout does not wait for a replica, "
                                 "so a failover just after it can bring the session back (1 closes that window)")
        return None
    if count is None:
        return facts.finding("wait-replicas", UNKNOWN, f"--session-redis-wait-replicas {wanted}, but could not read how many "
                             f"replicas are connected: {facts.info_error}", GRANT_INFO)
    if wanted > count:
        return facts.finding("wait-replicas", RISK, f"--session-redis-wait-replicas {wanted}, but {count} replica"
                             f"{'s are' if count != 1 else ' is'} connected: every logout waits the whole "
                             f"--session-redis-wait-timeout ({settings.redis_wait_timeout:g} s) and logs a warning",
                             f"set --session-redis-wait-replicas {count}" + (", or add a replica" if not count else ""))
    return facts.finding("wait-replicas", OK, f"--session-redis-wait-replicas {wanted}: every logout waits until {wanted} of the "
                         f"{count} replicas ha{'ve' if wanted != 1 else 's'} it")


def check_cluster(facts: Facts, settings: SessionSettings) -> Finding | None:
    if facts.cluster is None:
        if facts.cluster_error is None:
            return None  # not a cluster node
        return facts.finding("cluster", UNKNOWN, f"could not read cluster_state: {facts.cluster_error}",
                             "let this user run CLUSTER INFO")
    state, assigned = facts.cluster.get("cluster_state", "?"), int(facts.cluster.get("cluster_slots_assigned", 0))
    if state == "ok" and assigned == CLUSTER_SLOTS:
        return facts.finding("cluster", OK, f"cluster_state ok, all {CLUSTER_SLOTS} slots assigned")
    return facts.finding("cluster", RISK, f"cluster_state {state}, {assigned} of {CLUSTER_SLOTS} slots assigned: sessions "
                         "in the other slots can be neither read nor written (503)",
                         "assign every slot and bring failed nodes back (redis-cli --cluster check, --cluster fix)")


#: Each check and the roles it applies to: a replica's own replication does not matter until it
#: is promoted, and then it is the master that reports it.
CHECKS: tuple[tuple[Callable[[Facts, SessionSettings], Finding | None], tuple[str, ...]], ...] = (
    (check_version, (PRIMARY, REPLICA)),
    (check_maxmemory, (PRIMARY, REPLICA)),
    (check_policy, (PRIMARY, REPLICA)),
    (check_evictions, (PRIMARY, REPLICA)),
    (check_persistence, (PRIMARY, REPLICA)),
    (check_replicas, (PRIMARY,)),
    (check_min_replicas, (PRIMARY,)),
    (check_wait_replicas, (PRIMARY,)),
    (check_cluster, (PRIMARY,)),
)


def connected_replicas(facts: Facts) -> int | None:
    count = facts.info.get("connected_slaves")
    return None if count is None else int(count)


def grant_config(*names: str) -> str:
    return (f"let this user run CONFIG GET (ACL SETUSER <user> +config|get), or look up {' and '.join(names)} "
            "where the server is managed")


def size(count: int) -> str:
    """``67108864`` -> ``64 MiB``; ``1536`` -> ``1.5 KiB``."""
    if count < 1024:
        return f"{count} B"
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f}".removesuffix(".0") + " " + units[0]
