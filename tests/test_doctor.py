"""``redis-session doctor``: what the server will do to sessions, run as an operator runs it
against spawned servers (a private standalone server each test may reconfigure with CONFIG SET,
the shared 3-master cluster and the shared sentinel setup, which are only read). Each test
asserts what the operator sees: the exit code and a phrase of the report."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from redis_session.__main__ import run
from redis_session.doctor import Finding, diagnose, has_risk
from redis_session.protocol import session_key
from redis_session.settings import SessionSettings
from tests import redis_topologies
from tests.redis_servers import RedisServer, free_port


@dataclass
class Report:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def line(self, check: str, server: str | None = None) -> str:
        """The text line of one check (of one server, when several are listed)."""
        lines = [line for line in self.out.splitlines()[1:-1] if columns(line)[2] == check
                 and (server is None or columns(line)[1] == server)]
        assert len(lines) == 1, (check, self.out)
        return lines[0]


def columns(line: str) -> list[str]:
    """A text line's LEVEL, SERVER, CHECK and FINDING (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line, maxsplit=3)


def doctor(url: str, *arguments: str) -> Report:
    """``redis-session --session-redis=URL doctor ARGUMENTS``, in process."""
    out, err = io.StringIO(), io.StringIO()
    code = run([f"--session-redis={url}", "doctor", *arguments], out=out, err=err)
    return Report(code, out.getvalue(), err.getvalue())


def configure(server: RedisServer, **settings: Any) -> None:
    """``CONFIG SET`` on the test's own server (``maxmemory_policy=...`` sets maxmemory-policy)."""
    client = server.client()
    try:
        for name, value in settings.items():
            client.config_set(name.replace("_", "-"), value)
        # turning AOF on starts a rewrite, and until it ends Redis refuses to shut down
        redis_topologies.wait_until(lambda: not any(client.info("persistence")[field] for field in (
            "aof_rewrite_in_progress", "aof_rewrite_scheduled")), 10, "the first AOF rewrite ending")
    finally:
        client.close()


def test_a_redis_that_evicts_sessions_is_a_risk_and_strict_fails(own_redis_server: RedisServer) -> None:
    """allkeys-lru under maxmemory: the report says Redis deletes sessions silently, and how many
    keys it already evicted; it exits 0, and 6 with --strict."""
    client = own_redis_server.client()
    configure(own_redis_server, maxmemory_policy="allkeys-lru", maxmemory=int(client.info("memory")["used_memory"]) + 256 * 1024)
    pipeline = client.pipeline(transaction=False)
    for _ in range(200):  # 2 MB of sessions into a server with room for 256 kB more
        key = session_key("app", secrets.token_urlsafe(32))
        pipeline.hset(key, "payload", "x" * 10_000)
        pipeline.expire(key, 3600)
    pipeline.execute()
    client.close()

    report = doctor(own_redis_server.url)
    assert report.code == 0, report
    assert report.line("maxmemory-policy").startswith("risk")
    assert "allkeys-lru: when memory is full, Redis silently deletes keys, sessions among them" in report.out
    assert "fix: set maxmemory-policy noeviction" in report.out
    assert re.search(r"^risk .* evicted-keys +\d+ keys were evicted since the server started", report.out, re.MULTILINE)
    assert doctor(own_redis_server.url, "--strict").code == 6


def test_noeviction_with_a_limit_and_aof_passes_strict(own_redis_server: RedisServer) -> None:
    """maxmemory with noeviction and appendonly yes on a lone server: every finding is ok, so
    --strict exits 0."""
    configure(own_redis_server, maxmemory="64mb", maxmemory_policy="noeviction", appendonly="yes")
    report = doctor(own_redis_server.url, "--strict")
    assert report.code == 0, report
    assert {line.split()[0] for line in report.out.splitlines()[1:-1]} == {"ok"}
    assert "noeviction: when memory is full, writes fail (503) and no session is dropped" in report.out
    assert "appendonly yes (appendfsync everysec): sessions survive a restart" in report.out
    assert "maxmemory 64 MiB" in report.line("maxmemory")
    assert report.out.endswith("(6 ok on 1 server)\n")


def test_an_acl_user_without_config_gets_unknowns_not_a_crash(own_redis_server: RedisServer) -> None:
    """A user denied CONFIG (ACL SETUSER noconfig on >pw ~* +@all -config): what only CONFIG GET
    tells is an unknown naming the refusal, what INFO also tells is still read, and unknowns do
    not fail --strict."""
    configure(own_redis_server, maxmemory="64mb", maxmemory_policy="noeviction")
    client = own_redis_server.client()
    client.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "+@all", "-config")
    client.close()
    url = f"redis://noconfig:pw@127.0.0.1:{own_redis_server.port}/0"

    report = doctor(url)
    assert report.code == 0 and "Traceback" not in report.err, report
    persistence = report.line("persistence")
    assert persistence.startswith("unknown")
    assert "could not read save: CONFIG GET was refused" in persistence and "no permissions" in persistence
    assert "ACL SETUSER <user> +config|get" in persistence
    assert report.line("maxmemory-policy").startswith("ok")  # from INFO
    assert doctor(url, "--strict").code == 0
    assert [finding["check"] for finding in doctor(url, "--json").json() if finding["level"] == "unknown"] == ["persistence"]


def test_a_managed_redis_that_disabled_config_gets_unknowns() -> None:
    """A server whose CONFIG command is renamed away (rename-command CONFIG "", as managed Redis
    services do): the same unknowns, saying the command does not exist."""
    server = RedisServer(["--rename-command", "CONFIG", ""]).start()
    try:
        report = doctor(server.url)
    finally:
        server.cleanup()
    assert report.code == 0, report
    assert "could not read save: CONFIG GET was refused: unknown command" in report.line("persistence")
    assert report.line("maxmemory").startswith("risk")  # maxmemory 0, read from INFO


def test_waiting_for_a_replica_that_is_not_there_is_a_risk(redis_server: RedisServer) -> None:
    """--session-redis-wait-replicas 1 against a server with no replica: every logout would wait
    the whole timeout; the report says so in aligned columns and --strict fails."""
    report = doctor(redis_server.url, "--session-redis-wait-replicas=1", "--session-redis-wait-timeout=0.5")
    assert report.code == 0, report
    line = report.line("wait-replicas")
    assert line.startswith("risk") and "but 0 replicas are connected: every logout waits the whole" in line
    assert "--session-redis-wait-timeout (0.5 s)" in line and "fix: set --session-redis-wait-replicas 0" in line
    header, *rows = report.out.splitlines()[:-1]
    assert header.split() == ["LEVEL", "SERVER", "CHECK", "FINDING"]
    assert {row.index(redis_server.url.split("//")[1].split("/")[0]) for row in rows} == {header.index("SERVER")}
    assert {len(row) - len(row[header.index("FINDING"):]) for row in rows} == {header.index("FINDING")}
    assert doctor(redis_server.url, "--session-redis-wait-replicas=1", "--strict").code == 6


def test_the_json_report_is_a_list_of_findings(redis_server: RedisServer) -> None:
    """--json prints every finding with its check, level, message, fix, server and role."""
    findings = doctor(redis_server.url, "--json").json()
    assert {tuple(sorted(finding)) for finding in findings} == {("check", "fix", "level", "message", "role", "server")}
    assert {finding["server"] for finding in findings} == {f"127.0.0.1:{redis_server.port}"}
    assert [finding["check"] for finding in findings] == [
        "version", "maxmemory", "maxmemory-policy", "evicted-keys", "persistence", "replicas"]
    assert all(finding["fix"] for finding in findings if finding["level"] == "risk")


def test_the_checks_are_callable_from_code(redis_server: RedisServer) -> None:
    """redis_session.doctor.diagnose(settings) returns the same findings as frozen Findings."""
    findings = diagnose(SessionSettings(redis_url=redis_server.url))
    assert all(isinstance(finding, Finding) for finding in findings) and has_risk(findings)
    persistence = next(finding for finding in findings if finding.check == "persistence")
    assert persistence.level == "risk" and "a restart of Redis loses every session" in persistence.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        persistence.level = "ok"  # type: ignore[misc]


def test_an_unreachable_store_exits_3() -> None:
    """A store that refuses connections exits 3 with one line, as the other commands do."""
    report = doctor(f"redis://127.0.0.1:{free_port()}/0", "--strict")
    assert report.code == 3 and report.out == "" and "unavailable" in report.err


@pytest.mark.cluster
def test_a_cluster_has_every_primary_checked_and_every_slot_covered(shared_redis_cluster: redis_topologies.RedisCluster) -> None:
    """On a redis+cluster:// URL each of the 3 masters is checked, and each says all 16384 slots
    are assigned and the cluster is ok."""
    findings = doctor(shared_redis_cluster.url(), "--json").json()
    masters = {f"127.0.0.1:{master.port}" for master in shared_redis_cluster.masters()}
    assert {finding["server"] for finding in findings} == masters
    coverage = [finding for finding in findings if finding["check"] == "cluster"]
    assert {finding["server"] for finding in coverage} == masters
    assert {(finding["level"], finding["message"]) for finding in coverage} == {("ok", "cluster_state ok, all 16384 slots assigned")}
    assert doctor(shared_redis_cluster.url()).out.endswith("on 3 servers)\n")


@pytest.mark.sentinel
def test_behind_sentinels_the_master_and_its_replica_are_checked(shared_sentinel_setup: redis_topologies.SentinelSetup) -> None:
    """On a redis+sentinel:// URL the master the sentinels name is checked as the primary, with
    its replica; the replica (which a failover promotes) is checked too; a master that
    acknowledges writes without its replica is a risk that names the settings to change."""
    master, (replica,) = shared_sentinel_setup.master(), shared_sentinel_setup.replicas()
    report = doctor(shared_sentinel_setup.url(), "--session-redis-wait-replicas=1")
    assert report.code == 0, report
    primary, copy = f"127.0.0.1:{master.port}", f"127.0.0.1:{replica.port}"
    assert report.line("replicas", primary).startswith("ok") and "1 replica connected" in report.out
    assert "every logout waits until 1 of the 1 replicas has it" in report.line("wait-replicas", primary)
    partition = report.line("min-replicas-to-write", primary)
    assert partition.startswith("risk") and "min-replicas-to-write 1 and min-replicas-max-lag 10" in partition
    assert "--session-redis-durable-writes" in partition
    assert report.line("persistence", f"{copy} (replica)").startswith("risk")
    roles = {(finding["server"], finding["role"]) for finding in doctor(shared_sentinel_setup.url(), "--json").json()}
    assert roles == {(primary, "primary"), (copy, "replica")}
