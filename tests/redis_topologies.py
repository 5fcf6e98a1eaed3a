"""Redis Cluster and Sentinel topologies for the scaling tests, built from real redis-server
processes on free loopback ports (never the machine's 6379), plus the pytest fixtures that start
them.

* :class:`RedisCluster`: N masters (3) and optionally one replica per master, created with
  ``redis-cli --cluster create``; ``kill_master(i)`` crashes a master and waits for its replica to
  take over; ``freeze_all()`` / ``thaw_all()`` and ``stop_all()`` / ``restart_all()`` take every
  node away and bring it back.
* :class:`SentinelSetup`: one master, one replica and three sentinels; ``failover()`` asks for a
  failover (``SENTINEL FAILOVER``, once the sentinels agree and see an in-sync replica, retried
  while they answer NOGOODSLAVE or INPROG), ``kill_master()`` crashes the master and waits for
  the sentinels to promote the replica.

Every node runs in its own temporary directory (cluster nodes and sentinels rewrite their config
files) with no persistence. Short timeouts (``cluster-node-timeout 1000``,
``down-after-milliseconds 1000``) keep failovers to a few seconds. Anything that does not come up
within its deadline goes through :func:`tests.redis_servers.unavailable`: a skip on a developer
machine, a failure under ``CI=true``.

A test module uses a fixture by binding it to a module-level name of its own:
``redis_cluster = redis_topologies.redis_cluster`` (``pytest_plugins`` would need this module
unimported, and importing the fixture by name trips ruff's F811 on every test argument).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.redis_servers import RedisServer, free_port, unavailable

CLUSTER_SLOTS = 16384
SERVICE_NAME = "mymaster"
Address = tuple[str, int]
# A replica's full sync starts at once, not after the default 5 s wait for more replicas.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def wait_until(condition: Callable[[], Any], deadline_seconds: float, describe: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; connection trouble counts as "not yet".

    Past the deadline the topology is reported unavailable (skip locally, fail in CI).
    """
    deadline = time.monotonic() + deadline_seconds
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (redis.exceptions.RedisError, OSError) as error:
            last_error = error
        if time.monotonic() > deadline:
            suffix = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            unavailable(f"{describe} did not happen within {deadline_seconds}s{suffix}")
        time.sleep(interval)


def kill_hard(server: RedisServer) -> None:
    """SIGKILL the server (a crash: no goodbye to clients or to the cluster) and reap it."""
    process, server.process = server.process, None
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def info_section(client: redis.Redis[bytes], command: str) -> dict[str, str]:
    """``CLUSTER INFO`` / ``INFO replication`` as a plain ``{name: value}`` of strings."""
    raw = client.execute_command(*command.split())
    if isinstance(raw, dict):  # redis-py may already have parsed it
        return {str(name): str(value) for name, value in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip()] = value.strip()
    return fields


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sentinel_command(client: redis.Redis[bytes], *words: str) -> Any:
    """``SENTINEL <words...>`` with the reply as the server sent it. Each word goes as its own
    argument, so redis-py looks up no reply parser (its parsers are keyed by "SENTINEL MASTER"
    and the like, and the one behind ``sentinel_master()`` is broken in redis-py 6.3 to 7.0)."""
    return client.execute_command("SENTINEL", *words)


def sentinel_state(reply: Any) -> dict[str, str]:
    """One ``SENTINEL MASTER`` / ``SENTINEL REPLICAS`` entry as ``{field: text}``: over RESP2 a flat
    list of names and values, over RESP3 a map."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {text_of(name): text_of(value) for name, value in pairs}


def sentinel_master_state(client: redis.Redis[bytes]) -> dict[str, str]:
    """What the sentinel behind ``client`` knows of the master (``SENTINEL MASTER mymaster``)."""
    return sentinel_state(sentinel_command(client, "MASTER", SERVICE_NAME))


def sentinel_replica_states(client: redis.Redis[bytes]) -> list[dict[str, str]]:
    """What the sentinel behind ``client`` knows of each replica (``SENTINEL REPLICAS mymaster``)."""
    return [sentinel_state(entry) for entry in sentinel_command(client, "REPLICAS", SERVICE_NAME)]


def flags_of(state: dict[str, str]) -> set[str]:
    """The comma-separated ``flags`` of a :func:`sentinel_state` as a set."""
    return set(state.get("flags", "").split(",")) - {""}


def role_of(client: redis.Redis[bytes]) -> str:
    role = client.execute_command("ROLE")[0]
    return role.decode() if isinstance(role, bytes) else str(role)


def redis_cli_binary() -> str:
    binary = os.environ.get("REDIS_CLI_BINARY") or shutil.which("redis-cli")
    if not binary:
        unavailable("redis-cli is not installed (apt-get install -y redis-tools)")
    return str(binary)


# -- Redis Cluster ---------------------------------------------------------------------------


class ClusterNode:
    """One line of ``CLUSTER NODES``."""

    def __init__(self, line: str) -> None:
        parts = line.split()
        self.id = parts[0]
        address = parts[1].split("@")[0]
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.flags = set(parts[2].split(","))
        self.master_id = parts[3] if parts[3] != "-" else None
        self.link_state = parts[7]
        self.slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            first, _, last = item.partition("-")
            self.slots.append((int(first), int(last or first)))

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr"})


class RedisCluster:
    """``masters`` masters, each with ``replicas_per_master`` (0 or 1) replicas, on loopback."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 0, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.replicas_per_master = replicas_per_master
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas_per_master)):
            node = RedisServer()
            node.extra_args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{node.port}.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                # the bus port would be port + 10000, which may be taken
                "--cluster-port", str(free_port()),
                *FAST_SYNC,
            ]
            self.nodes.append(node)
        self.killed: list[RedisServer] = []

    # -- life cycle --------------------------------------------------------------------------

    def start(self, deadline_seconds: float = 45.0) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            command = [
                redis_cli_binary(), "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
            ]
            try:
                created = subprocess.run(command, capture_output=True, timeout=deadline_seconds, check=False)
            except subprocess.TimeoutExpired:
                unavailable(f"redis-cli --cluster create did not finish within {deadline_seconds}s")
            if created.returncode != 0:
                output = (created.stdout + created.stderr).decode(errors="replace")[-2000:]
                unavailable(f"redis-cli --cluster create failed with code {created.returncode}: {output}")
            self.wait_healthy(deadline_seconds)
            if self.replicas_per_master:
                self.wait_replicas_online(deadline_seconds)
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for node in self.nodes + self.killed:
            node.cleanup()

    # -- views ---------------------------------------------------------------------------------

    @property
    def alive(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def url(self) -> str:
        """``redis+cluster://`` naming every live node (the client needs just one)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.alive)

    def node_table(self, via: RedisServer | None = None) -> list[ClusterNode]:
        """``CLUSTER NODES`` as seen by ``via`` (the first live node by default)."""
        client = (via or self.alive[0]).client()
        try:
            # two words, so that redis-py hands back the raw text instead of its own parse
            text = client.execute_command("CLUSTER", "NODES")
        finally:
            client.close()
        if isinstance(text, bytes):
            text = text.decode()
        return [ClusterNode(line) for line in str(text).splitlines() if line.strip()]

    def server_at(self, port: int) -> RedisServer:
        for node in self.nodes + self.killed:
            if node.port == port:
                return node
        raise KeyError(port)

    def masters(self) -> list[RedisServer]:
        """The live masters that serve slots, ordered by their lowest slot (a stable order)."""
        serving = [entry for entry in self.node_table() if entry.is_master and entry.slots and not entry.failed]
        serving.sort(key=lambda entry: min(first for first, _ in entry.slots))
        return [self.server_at(entry.port) for entry in serving]

    def replica_of(self, master: RedisServer) -> RedisServer | None:
        """The replica ``master`` itself counts as attached (its ``INFO replication``), or the one
        the node table names. The master's word comes first: gossip can take a moment to tell
        the node that answers CLUSTER NODES about a replica the master already serves."""
        client = master.client()
        try:
            replica = client.info("replication").get("slave0")
        finally:
            client.close()
        if replica is not None:
            if not isinstance(replica, dict):
                replica = dict(item.partition("=")[::2] for item in text_of(replica).split(","))
            return self.server_at(int(replica["port"]))
        table = self.node_table()
        master_id = next(entry.id for entry in table if entry.port == master.port)
        for entry in table:
            if entry.master_id == master_id and not entry.failed:
                return self.server_at(entry.port)
        return None

    def node_id(self, server: RedisServer) -> str:
        client = server.client()
        try:
            raw = client.execute_command("CLUSTER MYID")
        finally:
            client.close()
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def keyslot(self, key: str) -> int:
        client = self.alive[0].client()
        try:
            return int(client.execute_command("CLUSTER KEYSLOT", key))
        finally:
            client.close()

    def master_for_slot(self, slot: int) -> RedisServer:
        for entry in self.node_table():
            if entry.is_master and not entry.failed and any(first <= slot <= last for first, last in entry.slots):
                return self.server_at(entry.port)
        raise KeyError(slot)

    # -- health --------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok with all slots covered and agrees on the slot
        owners; every replica is in sync with its master."""
        expected_nodes = len(self.nodes) + len(self.killed)
        owners: list[tuple[int, int, int]] | None = None
        for node in self.alive:
            client = node.client()
            try:
                info = info_section(client, "CLUSTER INFO")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS:
                    return False
                if int(info.get("cluster_known_nodes", 0)) != expected_nodes:
                    return False
                if role_of(client) == "slave":
                    replication = info_section(client, "INFO replication")
                    if replication.get("master_link_status") != "up":
                        return False
            finally:
                client.close()
            table = self.node_table(node)
            seen = sorted(
                (first, last, entry.port)
                for entry in table if entry.is_master and not entry.failed for first, last in entry.slots
            )
            if sum(last - first + 1 for first, last, _ in seen) != CLUSTER_SLOTS:
                return False
            if any(entry.port in {dead.port for dead in self.killed} for entry in table
                   if entry.is_master and entry.slots):
                return False
            if owners is not None and seen != owners:
                return False
            owners = seen
        return True

    def wait_healthy(self, deadline_seconds: float = 30.0) -> None:
        wait_until(self.healthy, deadline_seconds, "the cluster reaching cluster_state:ok on every node")

    def replicas_online(self) -> bool:
        """Every master serving slots counts its replica as attached and online in its own
        ``INFO replication`` (``connected_slaves`` >= 1, ``slave0`` with ``state=online``).

        :meth:`healthy` asks the replicas (``master_link_status:up``), but a master lists a
        replica as online a moment later, at the end of the full sync; until then a ``WAIT 1``
        on that master counts no replica and times out."""
        for master in self.masters():
            client = master.client()
            try:
                replication = client.info("replication")
            finally:
                client.close()
            if int(replication.get("connected_slaves", 0)) < 1:
                return False
            # "slave0:ip=127.0.0.1,port=...,state=online,...", which redis-py parses into a dict
            replica = replication.get("slave0")
            if not isinstance(replica, dict):
                replica = dict(item.partition("=")[::2] for item in text_of(replica or "").split(","))
            if text_of(replica.get("state", "")) != "online":
                return False
        return True

    def wait_replicas_online(self, deadline_seconds: float = 30.0) -> None:
        wait_until(self.replicas_online, deadline_seconds,
                   "every cluster master reporting its replica connected and online")

    # -- faults --------------------------------------------------------------------------------

    def kill_master(self, index: int, deadline_seconds: float = 30.0) -> float:
        """Crash ``masters()[index]`` (SIGKILL) and wait until its replica is a master and the
        cluster is ok again. Returns the seconds from the kill to a healthy cluster."""
        victim = self.masters()[index]
        replica = self.replica_of(victim)
        if replica is None:
            raise ValueError("kill_master() needs a cluster created with replicas_per_master=1")
        started = time.monotonic()
        kill_hard(victim)
        self.nodes.remove(victim)
        self.killed.append(victim)

        def promoted() -> bool:
            client = replica.client()
            try:
                return role_of(client) == "master"
            finally:
                client.close()

        wait_until(promoted, deadline_seconds, f"the replica on port {replica.port} being promoted")
        # the dead master stays in every node table, flagged fail and without slots
        wait_until(self.healthy, deadline_seconds, "the cluster reaching cluster_state:ok after the failover")
        return time.monotonic() - started

    def freeze_all(self) -> None:
        """SIGSTOP every node: nothing answers, yet connects still succeed (the kernel accepts
        them), as when every host hangs. :meth:`thaw_all` undoes it."""
        for node in self.nodes:
            node.pause()

    def thaw_all(self, deadline_seconds: float = 30.0) -> None:
        """SIGCONT every node and wait until the cluster is ok again (data intact)."""
        for node in self.nodes:
            node.resume()
        self.wait_healthy(deadline_seconds)

    def stop_all(self) -> None:
        """Stop every node (connections refused), keeping each node's directory and cluster config."""
        for node in self.nodes:
            node.stop()

    def restart_all(self, deadline_seconds: float = 30.0) -> None:
        """Start every node again on its port and wait until the cluster is ok. Each node reloads
        its cluster config (its slots and the other nodes), so the same cluster forms again,
        empty: nothing is persisted."""
        for node in self.nodes:
            node.start()
        self.wait_healthy(deadline_seconds)


# -- Sentinel ------------------------------------------------------------------------------


class SentinelServer(RedisServer):
    """A redis-server in sentinel mode with its own config file (sentinels rewrite it)."""

    def __init__(self, master_port: int, quorum: int = 2, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.config_path = os.path.join(self.directory, "sentinel.conf")
        with open(self.config_path, "w", encoding="ascii") as config:
            config.write(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                "protected-mode no\n"
                "daemonize no\n"
                f"dir {self.directory}\n"
                'logfile ""\n'
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE_NAME} {failover_timeout_ms}\n"
            )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, deadline_seconds: float = 10.0) -> SentinelServer:
        if not self.binary:
            unavailable("redis-server is not installed (apt-get install -y redis-server)")
        self.process = self.spawn([str(self.binary), self.config_path, "--sentinel"])
        self.wait_answering("sentinel", deadline_seconds)
        return self


class SentinelSetup:
    """One master, one replica, three sentinels watching ``mymaster`` (quorum 2)."""

    def __init__(self, sentinels: int = 3, quorum: int = 2) -> None:
        self.master_server = RedisServer(list(FAST_SYNC))
        self.replica_server = RedisServer(["--replicaof", "127.0.0.1", str(self.master_server.port), *FAST_SYNC])
        self.data_nodes = [self.master_server, self.replica_server]
        self.sentinels = [SentinelServer(self.master_server.port, quorum) for _ in range(sentinels)]
        self.killed: list[RedisServer] = []

    def start(self, deadline_seconds: float = 30.0) -> SentinelSetup:
        try:
            for server in self.data_nodes:
                server.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_healthy(deadline_seconds)
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for server in self.sentinels + self.data_nodes + self.killed:
            server.cleanup()

    def url(self, db: int | None = None) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE_NAME}" + (f"/{db}" if db is not None else "")

    # -- views -----------------------------------------------------------------------------------

    def reported_masters(self) -> list[Address | None]:
        """What each sentinel answers to ``SENTINEL get-master-addr-by-name`` (None: no answer)."""
        answers: list[Address | None] = []
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                reply = sentinel_command(client, "GET-MASTER-ADDR-BY-NAME", SERVICE_NAME)
            except redis.exceptions.RedisError:
                reply = None
            finally:
                client.close()
            if reply:
                host, port = reply
                answers.append((text_of(host), int(port)))
            else:
                answers.append(None)
        return answers

    def server_at(self, port: int) -> RedisServer:
        for server in self.data_nodes + self.killed:
            if server.port == port:
                return server
        raise KeyError(port)

    def master(self) -> RedisServer:
        """The data node every sentinel currently names as master."""
        answers = set(self.reported_masters())
        if len(answers) != 1 or None in answers:
            raise AssertionError(f"the sentinels disagree about the master: {answers}")
        (_, port), = answers  # type: ignore[misc]
        return self.server_at(port)

    def replicas(self) -> list[RedisServer]:
        master = self.master()
        return [server for server in self.data_nodes if server is not master]

    # -- health --------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Every sentinel names the same live master, knows the other sentinels and a replica
        that is in sync; the master's ROLE is master."""
        answers = set(self.reported_masters())
        if len(answers) != 1 or None in answers:
            return False
        (_, port), = answers  # type: ignore[misc]
        if port not in {server.port for server in self.data_nodes}:
            return False
        master = self.server_at(port)
        client = master.client()
        try:
            if role_of(client) != "master":
                return False
            if int(info_section(client, "INFO replication").get("connected_slaves", 0)) != len(self.data_nodes) - 1:
                return False
        finally:
            client.close()
        for server in self.data_nodes:
            if server is master:
                continue
            client = server.client()
            try:
                replication = info_section(client, "INFO replication")
            finally:
                client.close()
            if replication.get("master_link_status") != "up" or replication.get("master_port") != str(port):
                return False
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state = sentinel_master_state(client)
                if "master" not in flags_of(state) or flags_of(state) & {"s_down", "o_down"}:
                    return False
                if int(state.get("num-other-sentinels", 0)) != len(self.sentinels) - 1:
                    return False
                replicas = sentinel_replica_states(client)
            finally:
                client.close()
            # (a sentinel's copy of the replica's link status is refreshed only every 10 s, so
            # the replica's own INFO above is what says it is in sync)
            good = [
                replica for replica in replicas
                if not flags_of(replica) & {"s_down", "o_down"}
                and int(replica.get("port", 0)) in {server.port for server in self.data_nodes}
            ]
            if len(good) != len(self.data_nodes) - 1:
                return False
        return True

    def wait_healthy(self, deadline_seconds: float = 30.0) -> None:
        wait_until(self.healthy, deadline_seconds, "the sentinels agreeing on a master with an in-sync replica",
                   interval=0.1)

    def _wait_promoted(self, old_port: int, deadline_seconds: float) -> RedisServer:
        def promoted() -> RedisServer | None:
            for answer in self.reported_masters():
                if answer is None or answer[1] == old_port:
                    continue
                server = self.server_at(answer[1])
                client = server.client()
                try:
                    if role_of(client) == "master":
                        return server
                finally:
                    client.close()
            return None

        server: RedisServer = wait_until(promoted, deadline_seconds, "a sentinel naming a new master", interval=0.02)
        return server

    def wait_sentinels_agree(self, deadline_seconds: float = 30.0) -> RedisServer:
        """Wait until every sentinel names the same live master; return it. (Right after a
        failover only the leader knows; the others learn from its hello messages.)"""
        def agreed() -> RedisServer | None:
            answers = set(self.reported_masters())
            if len(answers) != 1 or None in answers:
                return None
            (_, port), = answers  # type: ignore[misc]
            return self.server_at(port) if port in {server.port for server in self.data_nodes} else None

        server: RedisServer = wait_until(agreed, deadline_seconds, "every sentinel naming the same master")
        return server

    # -- faults --------------------------------------------------------------------------------

    def failover(self, deadline_seconds: float = 30.0) -> float:
        """``SENTINEL FAILOVER``, then wait until a sentinel names the new master and its ROLE is
        master. Returns the seconds from the accepted command to that; the caller may
        ``wait_healthy()`` before the next fault.

        A sentinel refuses the command with NOGOODSLAVE until it has a fresh view of a healthy
        replica (right after setup or a previous failover it may not have one yet: it rebuilds
        its replica list and needs an INFO reply from each) and with INPROG while a previous
        failover is still finishing. So first wait until every sentinel names the same master
        and the asked sentinel sees a replica it would promote, and retry those two refusals
        until the deadline; past it the test fails, naming the refusals and the sentinel's view.
        """
        deadline = time.monotonic() + deadline_seconds
        old = self.wait_sentinels_agree(deadline_seconds)
        asked = self.sentinels[0]
        refusals: list[str] = []
        view = "not read yet"
        while True:
            try:
                ready, view = self.promotable_replica(asked, old.port)
                if ready:
                    client = asked.client()
                    try:
                        client.execute_command("SENTINEL FAILOVER", SERVICE_NAME)
                    finally:
                        client.close()
                    break
            except redis.exceptions.ResponseError as error:
                if not str(error).startswith(("NOGOODSLAVE", "INPROG")):
                    raise
                refusals.append(str(error))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                view = f"sentinel on port {asked.port} did not answer: {type(error).__name__}: {error}"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"SENTINEL FAILOVER of the master on port {old.port} was not accepted within "
                    f"{deadline_seconds}s; refusals: {sorted(set(refusals)) or 'none (never asked)'}; "
                    f"the sentinel's last view: {view}",
                    pytrace=False,
                )
            time.sleep(0.1)
        started = time.monotonic()
        self._wait_promoted(old.port, max(1.0, deadline - started))
        return time.monotonic() - started

    def promotable_replica(self, sentinel: SentinelServer, master_port: int) -> tuple[bool, str]:
        """Whether ``sentinel`` names ``master_port`` as master, has no failover in progress and
        sees a replica it would promote (the checks of Redis's ``sentinelSelectSlave``) that is in
        sync by its own INFO; also a description of what it sees, for messages.

        The replica's link status comes from the replica itself: the sentinel's copy is refreshed
        only every 10 s, and right after a failover it still describes the old master as it was
        before its demotion (role master, no link), which the sentinel would happily promote.
        """
        client = sentinel.client()
        try:
            state = sentinel_master_state(client)
            replicas = sentinel_replica_states(client)
        finally:
            client.close()
        master_flags = flags_of(state)
        described: list[str] = []
        good = 0
        for replica in replicas:
            port = int(replica.get("port", 0))
            own = self.own_replication(port)
            described.append(
                f"replica {replica.get('ip')}:{port} flags={','.join(sorted(flags_of(replica)))} "
                f"info-refresh={replica.get('info-refresh')}ms last-ok-ping={replica.get('last-ok-ping-reply')}ms "
                f"link-down={replica.get('master-link-down-time')}ms, by its own INFO: {own}"
            )
            selectable = (
                not flags_of(replica) & {"s_down", "o_down", "disconnected"}
                and int(replica.get("slave-priority", 1)) > 0
                # sentinelSelectSlave skips a replica whose last INFO reply is older than 3 INFO
                # periods (30 s), whose last ping reply is older than 5 ping periods (5 s), or
                # whose link to the master has been down longer than 10 down-after periods (10 s)
                and int(replica.get("info-refresh", 1 << 62)) < 20_000
                and int(replica.get("last-ok-ping-reply", 1 << 62)) < 4_000
                and int(replica.get("master-link-down-time", 0)) < 5_000
            )
            in_sync = own == f"slave of {master_port}, link up"
            good += selectable and in_sync
        view = (f"master port {state.get('port')} flags={','.join(sorted(master_flags))}; "
                + ("; ".join(described) or "no replicas"))
        if int(state.get("port", 0)) != master_port or "failover_in_progress" in master_flags:
            return False, view
        return good > 0, view

    def own_replication(self, port: int) -> str:
        """What the data node on ``port`` says of its replication: ``slave of <port>, link <status>``,
        ``master``, or why it could not say."""
        try:
            server = self.server_at(port)
        except KeyError:
            return "not one of this setup's data nodes"
        if server.process is None:
            return "stopped"
        client = server.client()
        try:
            replication = info_section(client, "INFO replication")
        except (redis.exceptions.RedisError, OSError) as error:
            return f"no answer ({type(error).__name__})"
        finally:
            client.close()
        if replication.get("role") != "slave":
            return str(replication.get("role"))
        return f"slave of {replication.get('master_port')}, link {replication.get('master_link_status')}"

    def kill_master(self, deadline_seconds: float = 30.0) -> float:
        """Crash the master (SIGKILL) and wait until the sentinels promote the replica. Returns
        the seconds from the kill to a new master answering ROLE master."""
        old = self.master()
        started = time.monotonic()
        kill_hard(old)
        self.data_nodes.remove(old)
        self.killed.append(old)
        self._wait_promoted(old.port, deadline_seconds)
        return time.monotonic() - started


# -- fixtures ------------------------------------------------------------------------------


def _refuse_external() -> None:
    if os.environ.get("REDIS_SESSION_TEST_URL"):
        pytest.skip("REDIS_SESSION_TEST_URL given: tests that spawn servers are skipped")


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three masters, no replicas; shared by a module (tests use their own key prefixes)."""
    _refuse_external()
    cluster = RedisCluster(masters=3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="module")
def redis_cluster_with_replicas() -> Iterator[RedisCluster]:
    """Three masters with one replica each, for failover tests (which may kill masters)."""
    _refuse_external()
    cluster = RedisCluster(masters=3, replicas_per_master=1).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture
def redis_cluster_to_stop() -> Iterator[RedisCluster]:
    """Three masters, no replicas, of one test's own: it may freeze, stop and restart every node."""
    _refuse_external()
    cluster = RedisCluster(masters=3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """A master, a replica and three sentinels; tests may fail over (roles swap) but leave it
    healthy (``wait_healthy()``) for the next one."""
    _refuse_external()
    setup = SentinelSetup().start()
    yield setup
    setup.cleanup()


@pytest.fixture
def sentinel_setup_to_kill() -> Iterator[SentinelSetup]:
    """A sentinel setup of one test's own, for tests that crash its master for good."""
    _refuse_external()
    setup = SentinelSetup().start()
    yield setup
    setup.cleanup()


# Session scope: the behaviour suite's ``store_url`` params "cluster" and "sentinel" (conftest.py)
# share one topology each for the whole run. pytest starts a session fixture only when a test that
# requests it runs, so a run that selects no cluster (sentinel) test never starts one. Tests on
# them keep to their own key prefix and must neither flush, reshape nor fail them over: faults
# belong to the module- and test-scoped topologies above.


@pytest.fixture(scope="session")
def shared_redis_cluster() -> Iterator[RedisCluster]:
    """Three masters, no replicas, started on first use and shared by the whole run."""
    _refuse_external()
    cluster = RedisCluster(masters=3).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def shared_sentinel_setup() -> Iterator[SentinelSetup]:
    """A master, a replica and three sentinels, started on first use and shared by the whole run."""
    _refuse_external()
    setup = SentinelSetup().start()
    yield setup
    setup.cleanup()
