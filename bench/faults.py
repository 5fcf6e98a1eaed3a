"""The fault suite: what a Tornado app on redis_session answers, and what Redis keeps, when Redis
fails under load.

    python bench/faults.py [--scenario NAME ...] [--duration S] [--long] [--json FILE]
                           [--handler blocking|coroutine]

Each scenario starts a Redis topology of its own on free loopback ports (tests/redis_servers.py
and tests/redis_topologies.py: never the machine's 6379; needs ``redis-server`` and the test
extras), the counter app of bench/fault_app.py in a process of its own (``POST /incr`` does
``self.session.incr("count")`` and answers the new value; ``--session-redis-timeout 0.5``), and
16 client threads keeping 100 sessions busy over 16 keep-alive connections, as fast as the app
answers. Mid-run it injects its fault and heals it, keeps the load on until every request has
succeeded for a second, then compares what the clients were told with what Redis holds:

* *ok/s before*: 200s per second while every session is busy, before the fault (the setup's
  healthy throughput: the two sentinel scenarios, side by side, give what durable writes cost);
* *acknowledged*: 200s with the new value; *503s*: 503 with ``Retry-After``; *unexpected*:
  anything else (a 500, a 503 without ``Retry-After``, no answer within 5 s, a dropped
  connection), which fails the scenario whatever its expectations;
* *stored*: the sum of every session's counter in Redis at the end (sessions no client knows of,
  such as one a 503 created, included);
* *lost*: per session, the 200s it got minus what Redis holds, when positive: acknowledged
  increments the store does not hold;
* *phantom*: per session, what Redis holds minus the 200s, when positive: increments stored but
  never acknowledged (a 503 whose write landed: allowed);
* *longest outage*: the longest gap between two successful responses with a failure in between;
  *p99*: of every request's latency, in milliseconds.

It prints one row per scenario and what each expected, writes them with ``--json``, and exits 1
if any scenario misses an expectation (or could not run). A scenario takes 8-25 s, the nine
together under 2 minutes on 2 cores; ``--long`` adds ``soak`` (10 minutes). ``--handler
coroutine`` drives the AsyncSessionHandler page instead. What they show: README.rst, "When Redis
is down or slow".
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
if ROOT not in sys.path:  # run as a script: tests.redis_servers is found from the repository root
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402 - the topology helpers report "cannot start" as pytest outcomes
import redis  # noqa: E402
import tornado.web  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from redis_session.protocol import session_key, session_key_pattern  # noqa: E402
from tests.redis_servers import RedisServer, free_port  # noqa: E402
from tests.redis_topologies import SentinelSetup, kill_hard, wait_until  # noqa: E402

PYTHON = sys.executable
COOKIE_SECRET = "faults-cookie-secret-" + "x" * 32
COOKIE_NAME = "session-id"
#: The app's --session-redis-timeout: short, as the failover tests use, so a fault costs half a
#: second per attempt rather than two.
REDIS_TIMEOUT = 0.5
#: A request not answered within this long is a hang (an unexpected outcome), whatever happens.
HANG_SECONDS = 5.0
#: Load before the fault, once every session exists.
LEAD_IN_SECONDS = 1.5
#: After the fault is healed: how long every request must succeed to count as recovered, and how
#: long to wait for that before giving up (durable writes answer 503 for 5 s after a failed WAIT).
QUIET_SECONDS = 1.0
RECOVERY_DEADLINE_SECONDS = 20.0
SESSIONS = 100
CONNECTIONS = 16
SHORT_SECONDS = 8.0
SOAK_SECONDS = 600.0
#: Errors that raise out of a scenario that could not run (a topology that would not start is a
#: pytest skip or failure, raised by the test helpers).
SCENARIO_ERRORS: tuple[type[BaseException], ...] = (Exception, pytest.skip.Exception, pytest.fail.Exception)


# --------------------------------------------------------------------------------------------
# topologies
# --------------------------------------------------------------------------------------------


class Topology(Protocol):
    @property
    def url(self) -> str: ...

    def master(self) -> RedisServer: ...

    def cleanup(self) -> None: ...


class SingleRedis:
    """One redis-server (no persistence unless ``extra_args`` ask for it)."""

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self.server = RedisServer(extra_args).start()

    @property
    def url(self) -> str:
        return self.server.url

    def master(self) -> RedisServer:
        return self.server

    def cleanup(self) -> None:
        self.server.cleanup()


class Sentinels:
    """A master, a replica and three sentinels (quorum 2, down after 1 s)."""

    def __init__(self) -> None:
        self.setup = SentinelSetup().start()

    @property
    def url(self) -> str:
        return self.setup.url()

    def master(self) -> RedisServer:
        return self.setup.master()

    def cleanup(self) -> None:
        self.setup.cleanup()


@contextlib.contextmanager
def connected(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    try:
        yield client
    finally:
        client.close()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


@dataclass
class Stored:
    """What Redis holds at the end: each known session's counter, and the counters of sessions no
    client heard of (created by a request that then answered 503)."""

    by_session: dict[str, int]
    unknown: int


def read_stored(server: RedisServer, prefix: str, session_ids: set[str]) -> Stored:
    key_to_id = {session_key(prefix, session_id): session_id for session_id in session_ids}
    by_session: dict[str, int] = {}
    unknown = 0
    with connected(server) as client:
        keys = [key.decode() for key in client.scan_iter(match=session_key_pattern(prefix), count=1000)]
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            pipeline.hget(key, "count")
        for key, raw in zip(keys, pipeline.execute()):
            count = int(raw or 0)
            if key in key_to_id:
                by_session[key_to_id[key]] = count
            else:
                unknown += count
    return Stored(by_session, unknown)


# --------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------


@dataclass
class App:
    """bench/fault_app.py in a process of its own."""

    process: subprocess.Popen[str]
    port: int
    log_path: str

    @classmethod
    def start(cls, redis_session: dict[str, Any], workdir: str) -> App:
        port = free_port()  # outside the ephemeral range, like the Redis ports
        log_path = os.path.join(workdir, "app.log")
        options = {"port": port, "cookie_secret": COOKIE_SECRET, "redis_session": redis_session}
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                [PYTHON, os.path.join(BENCH, "fault_app.py"), json.dumps(options)],
                stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
            )
        app = cls(process, port, log_path)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            app.stop()
            raise RuntimeError(f"the app did not start: {app.log_tail()}")
        return app

    def rss_bytes(self) -> int:
        """The app process's resident memory (VmRSS)."""
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

    def log_tail(self, characters: int = 2000) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()[-characters:].strip() or "(empty log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One request, as its client saw it (a soak keeps a million of them: slots)."""

    started: float
    finished: float
    session_id: str | None  # the session it was counted on: the cookie it set, else the one sent
    status: str  # "ok", "503", or what was unexpected
    value: int | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Browser:
    """One visitor: the cookie it sends back and the session id signed inside it."""

    cookie: str | None = None
    session_id: str | None = None
    first_seen: dict[str, float] = field(default_factory=dict)  # session id -> when it was issued

    def take_cookie(self, response: http.client.HTTPResponse, now: float) -> None:
        for header in response.msg.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() != COOKIE_NAME:
                continue
            value = rest.split(";", 1)[0].strip()
            decoded = tornado.web.decode_signed_value(COOKIE_SECRET, COOKIE_NAME, value.strip('"'), min_version=2)
            if decoded is None:
                continue
            self.cookie, self.session_id = value, decoded.decode()
            self.first_seen.setdefault(self.session_id, now)


def post_incr(connection: http.client.HTTPConnection, browser: Browser, path: str) -> tuple[Outcome, bool]:
    """One ``POST`` of the counter page; the outcome, and whether the connection may be reused."""
    headers = {"Cookie": f"{COOKIE_NAME}={browser.cookie}"} if browser.cookie else {}
    sent = browser.session_id
    started = time.monotonic()
    try:
        connection.request("POST", path, body=b"", headers=headers)
        response = connection.getresponse()
        body = response.read()
    except TimeoutError:
        return Outcome(started, time.monotonic(), sent, f"no answer within {HANG_SECONDS:g} s"), False
    except (OSError, http.client.HTTPException) as error:
        return Outcome(started, time.monotonic(), sent, f"connection: {type(error).__name__}"), False
    finished = time.monotonic()
    if response.status == 200:
        browser.take_cookie(response, finished)
        if not body.isdigit() or browser.session_id is None:
            return Outcome(started, finished, browser.session_id, f"200 with {body[:40]!r}"), True
        return Outcome(started, finished, browser.session_id, "ok", int(body)), True
    if response.status == 503 and response.getheader("Retry-After"):
        return Outcome(started, finished, sent, "503"), True
    described = f"{response.status} without Retry-After" if response.status == 503 else str(response.status)
    return Outcome(started, finished, sent, described), True


class Load:
    """``connections`` threads, each with one keep-alive connection, cycling through its share of
    ``sessions`` browsers as fast as the app answers (browser i belongs to thread i % connections)."""

    def __init__(self, port: int, path: str, sessions: int = SESSIONS, connections: int = CONNECTIONS) -> None:
        self.port = port
        self.path = path
        self.browsers = [Browser() for _ in range(sessions)]
        self.connections = connections
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.threads = [threading.Thread(target=self.drive, args=(index,), daemon=True) for index in range(connections)]
        self.started = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def drive(self, index: int) -> None:
        browsers = self.browsers[index::self.connections]
        connection: http.client.HTTPConnection | None = None
        try:
            while not self.stopping.is_set():
                for browser in browsers:
                    if connection is None:
                        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG_SECONDS)
                    outcome, reusable = post_incr(connection, browser, self.path)
                    with self.lock:
                        self.outcomes.append(outcome)
                    if not reusable:
                        connection.close()
                        connection = None
        finally:
            if connection is not None:
                connection.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(HANG_SECONDS + 5)

    def snapshot(self, since: float = -math.inf) -> list[Outcome]:
        """The outcomes so far (those that finished after ``since``: they were recorded last)."""
        with self.lock:
            first = len(self.outcomes)
            while first > 0 and self.outcomes[first - 1].finished > since:
                first -= 1
            return self.outcomes[first:]

    def wait_for_sessions(self, deadline_seconds: float = 20.0) -> None:
        """Until every browser has a session (its first request created it)."""
        deadline = time.monotonic() + deadline_seconds
        while any(browser.session_id is None for browser in self.browsers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every browser got a session within {deadline_seconds:g} s")
            time.sleep(0.05)

    def wait_recovered(self, since: float, deadline_seconds: float = RECOVERY_DEADLINE_SECONDS) -> float | None:
        """Wait until every request has succeeded for QUIET_SECONDS after ``since``; return when
        the first success after the last failure finished (``None``: not within the deadline)."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
            outcomes = self.snapshot(since)
            settled = max((o.finished for o in outcomes if o.status != "ok"), default=since)
            successes = [o.finished for o in outcomes if o.status == "ok" and o.finished > settled]
            if successes and time.monotonic() - settled >= QUIET_SECONDS:
                return min(successes)
        return None


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """When a scenario's fault began and was healed (monotonic seconds), and what it measured."""

    started: float = 0.0
    healed: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def begin(self) -> None:
        self.started = time.monotonic()

    def heal(self) -> None:
        self.healed = time.monotonic()


@dataclass
class Run:
    """What a fault may act on."""

    topology: Topology
    app: App
    load: Load
    seconds: float  # the scenario's length of load

    @property
    def server(self) -> RedisServer:
        """The redis-server of a scenario on one server."""
        assert isinstance(self.topology, SingleRedis), "a fault for one redis-server"
        return self.topology.server

    @property
    def sentinels(self) -> SentinelSetup:
        """The master, replica and sentinels of a sentinel scenario."""
        assert isinstance(self.topology, Sentinels), "a fault for a sentinel setup"
        return self.topology.setup


def kill_and_restart_empty(run: Run, fault: Fault) -> None:
    """SIGKILL Redis; 2 s later start it again on its port, with nothing persisted."""
    server = run.server
    fault.begin()
    kill_hard(server)
    time.sleep(2.0)
    server.start()
    fault.heal()


def freeze(run: Run, fault: Fault) -> None:
    """SIGSTOP Redis for 3 s: connections stay open, nothing answers; then SIGCONT."""
    server = run.server
    fault.begin()
    server.pause()
    time.sleep(3.0)
    server.resume()
    fault.heal()


def kill_and_restart_from_aof(run: Run, fault: Fault) -> None:
    """SIGKILL Redis (appendonly yes, appendfsync always); 1 s later start it on its directory,
    which replays the AOF."""
    server = run.server
    fault.begin()
    kill_hard(server)
    time.sleep(1.0)
    server.start()
    fault.heal()


def shutdown_nosave_and_restart(run: Run, fault: Fault) -> None:
    """``SHUTDOWN NOSAVE`` (a clean stop, nothing written); 1 s later start Redis again, empty."""
    server = run.server
    process = server.process
    fault.begin()
    # one try: redis-py would otherwise retry the connection the shutdown closed, for seconds
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown(nosave=True)
    finally:
        client.close()
    if process is not None:
        process.wait(timeout=10)
    server.process = None
    time.sleep(1.0)
    server.start()
    fault.heal()


def kill_clients(server: RedisServer, every: float, until: float) -> int:
    """``CLIENT KILL TYPE normal`` (every connection but our own) every ``every`` seconds until
    ``until``; how many connections were killed."""
    killed = 0
    with connected(server) as admin:
        while time.monotonic() < until:
            killed += int(admin.client_kill_filter(_type="normal", skipme=True))
            time.sleep(every)
    return killed


def client_kills(run: Run, fault: Fault) -> None:
    """The app's Redis connections killed every 0.5 s for 4 s."""
    fault.begin()
    fault.notes["connections killed"] = kill_clients(run.server, 0.5, time.monotonic() + 4.0)
    fault.heal()


def memory_full(run: Run, fault: Fault) -> None:
    """``maxmemory`` set 64 kB below what Redis uses, with ``noeviction``, for 3 s: every write is
    refused. Samples ``used_memory`` meanwhile: it must not grow. (The margin is the tests':
    Redis frees idle clients' query buffers on its own, and with 16 kB that once took it back
    under the limit, and every write went through.)"""
    with connected(run.server) as client:
        client.config_set("maxmemory-policy", "noeviction")
        used = used_memory(client)
        limit = used - 64 * 1024
        fault.begin()
        client.config_set("maxmemory", limit)
        lowest = peak = used
        while time.monotonic() < fault.started + 3.0:
            now = used_memory(client)
            lowest, peak = min(lowest, now), max(peak, now)
            time.sleep(0.02)
        client.config_set("maxmemory", 0)
        fault.heal()
    fault.notes.update({"used when limited (bytes)": used, "limit (bytes)": limit, "lowest used (bytes)": lowest,
                        "peak used (bytes)": peak})


def cache_burst(run: Run, fault: Fault) -> None:
    """``allkeys-lru`` with ``maxmemory`` 512 kB above what Redis uses, then 3 s of 4 kB cache
    writes beside the sessions: Redis evicts least recently used keys, sessions among them."""
    with connected(run.server) as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
        evicted_before = int(client.info("stats")["evicted_keys"])
        limit = used_memory(client) + 512 * 1024
        fault.begin()
        client.config_set("maxmemory", limit)
        written = 0
        while time.monotonic() < fault.started + 3.0:
            pipeline = client.pipeline(transaction=False)
            for _ in range(64):
                pipeline.set(f"cache:{written}", b"x" * 4096)
                written += 1
            pipeline.execute()
        evicted = int(client.info("stats")["evicted_keys"]) - evicted_before
        client.config_set("maxmemory", 0)
        fault.heal()
    fault.notes.update({"limit (bytes)": limit, "cache keys written": written, "keys evicted": evicted})


def replica_online(master: RedisServer) -> bool:
    """Whether ``master`` counts a replica connected and in sync (what a ``WAIT 1`` needs)."""
    with connected(master) as client:
        replica = client.info("replication").get("slave0") or {}
    if not isinstance(replica, dict):  # redis-py parses "ip=...,state=online,..." into a dict, or may not
        replica = dict(item.partition("=")[::2] for item in str(replica).split(","))
    return replica.get("state") == "online"


def sentinel_failover(run: Run, fault: Fault) -> None:
    """``SENTINEL FAILOVER``: the replica is promoted; the sentinels then make the old master a
    replica of the new one. Healed once every sentinel agrees and that replica is in sync."""
    setup = run.sentinels
    fault.begin()
    promoted = setup.failover()  # from the accepted command to a new master answering ROLE master
    accepted = time.monotonic() - promoted
    new_master = setup.wait_sentinels_agree()
    wait_until(lambda: replica_online(new_master), 60, "the old master in sync as a replica of the new one")
    replica_back = time.monotonic() - accepted
    setup.wait_healthy()
    fault.heal()
    fault.notes.update({"promoted after (s)": round(promoted, 2), "replica in sync after (s)": round(replica_back, 2)})


def rss_and_memory(run: Run) -> tuple[int, int]:
    with connected(run.server) as client:
        return run.app.rss_bytes(), used_memory(client)


def soak(run: Run, fault: Fault) -> None:
    """Load for the whole run, the app's Redis connections killed every 2 s; the app's RSS and
    Redis's used_memory sampled every 10 s. "start" is the sample after a fifth of the run (the
    allocators have settled), "end" the last."""
    fault.begin()
    until = run.load.started + run.seconds - 2 * QUIET_SECONDS
    settled_at = fault.started + (until - fault.started) / 5
    samples: list[tuple[float, int, int]] = []
    killed = 0
    with connected(run.server) as admin:
        next_sample = time.monotonic()
        while time.monotonic() < until:
            killed += int(admin.client_kill_filter(_type="normal", skipme=True))
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - fault.started, *rss_and_memory(run)))
                next_sample += 10.0
            time.sleep(2.0)
    samples.append((time.monotonic() - fault.started, *rss_and_memory(run)))
    fault.heal()
    start = next(sample for sample in samples if sample[0] >= settled_at - fault.started)
    fault.notes.update({
        "connections killed": killed,
        "app RSS start (bytes)": start[1], "app RSS end (bytes)": samples[-1][1],
        "Redis used_memory start (bytes)": start[2], "Redis used_memory end (bytes)": samples[-1][2],
        "samples (s, app RSS, Redis used_memory)": [[round(seconds), rss, used] for seconds, rss, used in samples],
    })


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    requests: int = 0
    acknowledged: int = 0
    failed: int = 0  # 503s
    unexpected: int = 0
    stored: int = 0
    lost: int = 0
    phantom: int = 0
    longest_outage: float = 0.0
    p99_ms: float = 0.0
    #: 200s per second in the lead-in, before the fault: the throughput of the setup when healthy
    ok_per_second_before: float | None = None
    #: acknowledged increments on the sessions issued before the fault: what a Redis that
    #: restarts empty loses
    acknowledged_on_old_sessions: int = 0
    #: sessions that got a 200 but are not in Redis at the end (restarted empty, or evicted)
    sessions_missing: int = 0
    recovered_after: float | None = None  # seconds from the heal to the first success after the last failure
    unexpected_kinds: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    expectations: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0  # the scenario's wall time, start-up included
    error: str | None = None  # the scenario could not run

    @property
    def passed(self) -> bool:
        return self.error is None and all(self.expectations.values())

    def missed(self) -> list[str]:
        """The expectations that failed (or why the scenario could not run)."""
        if self.error is not None:
            return [f"could not run: {self.error}"]
        return [text for text, held in self.expectations.items() if not held]

    def describe(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)


@dataclass(frozen=True)
class Expectation:
    text: str
    holds: Callable[[Result], bool]


NOTHING_UNEXPECTED = Expectation("unexpected == 0", lambda result: result.unexpected == 0)
NOTHING_LOST = Expectation("lost == 0", lambda result: result.lost == 0)
FELT = Expectation("503s > 0", lambda result: result.failed > 0)
RECOVERS = Expectation("recovers", lambda result: result.recovered_after is not None)
ALL_BEFORE_LOST = Expectation(
    "lost == what the old sessions had acknowledged (nothing persisted: expected)",
    lambda result: result.lost == result.acknowledged_on_old_sessions > 0,
)
MEMORY_HELD = Expectation(
    "used_memory grows < 4 kB while full",
    lambda result: result.notes["peak used (bytes)"] - result.notes["used when limited (bytes)"] < 4 * 1024,
)
SESSIONS_EVICTED = Expectation("lost > 0 (sessions evicted: what doctor warns about)", lambda result: result.lost > 0)
APP_RSS_FLAT = Expectation(
    "app RSS grows < 5 MB",
    lambda result: result.notes["app RSS end (bytes)"] - result.notes["app RSS start (bytes)"] < 5 * 2**20,
)
REDIS_MEMORY_FLAT = Expectation(
    "Redis used_memory grows < 256 kB",
    lambda result: result.notes["Redis used_memory end (bytes)"] - result.notes["Redis used_memory start (bytes)"]
    < 256 * 1024,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: Callable[[], Topology]  # starts it
    fault: Callable[[Run, Fault], None]
    expectations: tuple[Expectation, ...]
    settings: dict[str, Any] = field(default_factory=dict)  # redis_session settings beyond the defaults here
    seconds: float = SHORT_SECONDS
    long: bool = False  # only with --long (or named)
    #: Load before the fault, once every session exists: the window *ok/s before* is measured in.
    lead_in: float = LEAD_IN_SECONDS


DURABLE = {"redis_wait_replicas": 1, "redis_wait_timeout": 0.3, "redis_durable_writes": True}
SURVIVES = (NOTHING_UNEXPECTED, NOTHING_LOST, FELT, RECOVERS)

SCENARIOS = {scenario.name: scenario for scenario in [
    Scenario("kill", SingleRedis, kill_and_restart_empty, (NOTHING_UNEXPECTED, FELT, RECOVERS, ALL_BEFORE_LOST)),
    Scenario("freeze", SingleRedis, freeze, SURVIVES),
    Scenario("restart-aof", lambda: SingleRedis(["--appendonly", "yes", "--appendfsync", "always"]),
             kill_and_restart_from_aof, SURVIVES),
    Scenario("restart-no-aof", SingleRedis, shutdown_nosave_and_restart,
             (NOTHING_UNEXPECTED, FELT, RECOVERS, ALL_BEFORE_LOST)),
    Scenario("client-kill", SingleRedis, client_kills, (NOTHING_UNEXPECTED, NOTHING_LOST, RECOVERS)),
    Scenario("oom-noeviction", SingleRedis, memory_full, (*SURVIVES, MEMORY_HELD)),
    Scenario("oom-allkeys-lru", SingleRedis, cache_burst, (NOTHING_UNEXPECTED, RECOVERS, SESSIONS_EVICTED)),
    # 5 s of load before these failovers: their *ok/s before* columns, side by side on one
    # topology, are what durable writes cost in throughput.
    Scenario("sentinel-failover", Sentinels, sentinel_failover, (NOTHING_UNEXPECTED, RECOVERS), lead_in=5.0),
    Scenario("sentinel-failover-durable", Sentinels, sentinel_failover, (NOTHING_UNEXPECTED, NOTHING_LOST, RECOVERS),
             settings=DURABLE, lead_in=5.0),
    Scenario("soak", SingleRedis, soak, (NOTHING_UNEXPECTED, NOTHING_LOST, RECOVERS, APP_RSS_FLAT, REDIS_MEMORY_FLAT),
             seconds=SOAK_SECONDS, long=True),
]}


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ok_per_second(outcomes: list[Outcome], since: float, until: float) -> float | None:
    """200s per second among the requests that started at ``since`` or later and finished
    before ``until`` (``None`` for a scenario whose fault never began)."""
    if until <= since:
        return None
    return round(sum(1 for o in outcomes if o.status == "ok" and o.started >= since and o.finished < until) / (until - since))


def longest_outage(outcomes: list[Outcome]) -> float:
    """The longest gap between two successful responses with a failed request in between (the
    last success to the end of the run, when it ends failing)."""
    longest = 0.0
    last_success: float | None = None
    failed_since = False
    for outcome in sorted(outcomes, key=lambda outcome: outcome.finished):
        if outcome.status != "ok":
            failed_since = True
            continue
        if failed_since and last_success is not None:
            longest = max(longest, outcome.finished - last_success)
        last_success, failed_since = outcome.finished, False
    if failed_since and last_success is not None and outcomes:
        longest = max(longest, max(outcome.finished for outcome in outcomes) - last_success)
    return longest


def account(name: str, outcomes: list[Outcome], stored: Stored, fault: Fault, first_seen: dict[str, float]) -> Result:
    """Per session: the 200s it got against what Redis holds."""
    acknowledged: Counter[str] = Counter(o.session_id for o in outcomes if o.status == "ok" and o.session_id)
    lost = sum(max(0, count - stored.by_session.get(session_id, 0)) for session_id, count in acknowledged.items())
    phantom = stored.unknown + sum(
        max(0, count - acknowledged[session_id]) for session_id, count in stored.by_session.items()
    )
    unexpected = Counter(o.status for o in outcomes if o.status not in ("ok", "503"))
    return Result(
        scenario=name,
        requests=len(outcomes),
        acknowledged=sum(acknowledged.values()),
        failed=sum(1 for o in outcomes if o.status == "503"),
        unexpected=sum(unexpected.values()),
        stored=sum(stored.by_session.values()) + stored.unknown,
        lost=lost,
        phantom=phantom,
        longest_outage=round(longest_outage(outcomes), 2),
        p99_ms=round(percentile([o.seconds for o in outcomes], 0.99) * 1000, 1),
        acknowledged_on_old_sessions=sum(count for session_id, count in acknowledged.items()
                                         if first_seen.get(session_id, math.inf) < fault.started),
        sessions_missing=sum(1 for session_id in acknowledged if session_id not in stored.by_session),
        unexpected_kinds=dict(unexpected),
        notes=dict(fault.notes),
    )


def run_scenario(scenario: Scenario, seconds: float | None = None, handler: str = "blocking") -> Result:
    """Start the scenario's topology and app, drive the load through its fault, and account.
    Whatever was started is stopped, however it ends; errors raise (see SCENARIO_ERRORS)."""
    began = time.monotonic()
    seconds = seconds or scenario.seconds
    prefix = f"faults{uuid.uuid4().hex[:8]}"
    fault = Fault()
    recovered: float | None = None
    measured_from = 0.0
    with tempfile.TemporaryDirectory(prefix="redis-session-faults-") as workdir:
        topology = scenario.topology()
        try:
            settings = {"redis": topology.url, "redis_prefix": prefix, "cookie_secure": False,
                        "redis_timeout": REDIS_TIMEOUT, **scenario.settings}
            app = App.start(settings, workdir)
            try:
                load = Load(app.port, "/incr" if handler == "blocking" else "/incr-async").start()
                try:
                    load.wait_for_sessions()
                    measured_from = time.monotonic()
                    time.sleep(scenario.lead_in)
                    scenario.fault(Run(topology, app, load, seconds), fault)
                    recovered = load.wait_recovered(fault.healed)
                    time.sleep(max(0.0, load.started + seconds - time.monotonic()))
                finally:
                    load.stop()
                if any(thread.is_alive() for thread in load.threads):
                    raise RuntimeError("a client thread hung")
            finally:
                app.stop()
            first_seen = {session_id: when for browser in load.browsers for session_id, when in browser.first_seen.items()}
            outcomes = load.snapshot()
            stored = read_stored(topology.master(), prefix, set(first_seen))
        finally:
            topology.cleanup()
    result = account(scenario.name, outcomes, stored, fault, first_seen)
    result.ok_per_second_before = ok_per_second(outcomes, measured_from, fault.started)
    result.recovered_after = None if recovered is None else round(recovered - fault.healed, 2)
    result.expectations = {expectation.text: expectation.holds(result) for expectation in scenario.expectations}
    result.seconds = round(time.monotonic() - began, 1)
    return result


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

HEADER = ["scenario", "ok/s before", "requests", "acknowledged", "503s", "unexpected", "stored", "lost", "phantom",
          "longest outage (s)", "p99 (ms)", "expectations"]


def row(result: Result) -> list[str]:
    if result.error is not None:
        return [result.scenario, *["-"] * (len(HEADER) - 2), "ERROR"]
    before = "-" if result.ok_per_second_before is None else f"{result.ok_per_second_before:.0f}"
    return [result.scenario, before, str(result.requests), str(result.acknowledged), str(result.failed), str(result.unexpected),
            str(result.stored), str(result.lost), str(result.phantom), f"{result.longest_outage:.2f}",
            f"{result.p99_ms:.0f}", "PASS" if result.passed else "FAIL"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left column left-aligned, numbers right-aligned."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if i in (0, len(cells) - 1) else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *map(line, rows)])


def shown(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def details(result: Result) -> str:
    """What the scenario expected, each checked, and what its fault measured."""
    if result.error is not None:
        return f"{result.scenario}: could not run: {result.error}"
    checks = ", ".join(f"{text}: {'ok' if held else 'FAILED'}" for text, held in result.expectations.items())
    recovered = "never" if result.recovered_after is None else f"{result.recovered_after:.2f} s after the heal"
    facts = [f"recovered {recovered}"]
    if result.sessions_missing:
        facts += [f"sessions gone from Redis {result.sessions_missing}",
                  f"acknowledged on the sessions issued before the fault {result.acknowledged_on_old_sessions:,}"]
    facts += [f"{name} {shown(value)}" for name, value in result.notes.items() if not isinstance(value, list)]
    if result.unexpected_kinds:
        facts.append("unexpected: " + ", ".join(f"{kind} x{count}" for kind, count in result.unexpected_kinds.items()))
    return f"{result.scenario}: {checks}\n    " + "; ".join(facts)


def redis_version() -> str:
    binary = os.environ.get("REDIS_SERVER_BINARY") or shutil.which("redis-server") or "redis-server"
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return next((word.split("=", 1)[1] for word in output.split() if word.startswith("v=")), output.strip())


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "redis": redis_version(),
        "packages": {package: version(package) for package in ("tornado", "redis")},
        "load": f"{SESSIONS} sessions over {CONNECTIONS} keep-alive connections, --session-redis-timeout {REDIS_TIMEOUT}",
    }


def markdown(command: str, elapsed: float, results: list[Result]) -> str:
    """The run as the docs show it: the command, the machine, the table and each row's facts.
    Written by the harness, never copied by hand, so the page cannot drift from a run."""
    machine = environment()
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Fault harness results",
        "",
        f"Command: `{command}` ({elapsed:.0f} s, {time.strftime('%Y-%m-%d', time.gmtime())})",
        "",
        f"Machine: {machine['nproc']} cores, Python {machine['python']}, Redis {machine['redis']}, {packages}; "
        f"{machine['load']}.",
        "",
        "```text",
        text_table(HEADER, [row(result) for result in results]),
        "```",
        "",
        *[f"- {line}" for result in results for line in details(result).replace("\n    ", " -- ").splitlines()],
        "",
    ]
    return "\n".join(lines)


def selected(names: list[str] | None, long: bool) -> list[Scenario]:
    if names:
        return [SCENARIOS[name] for name in names]
    return [scenario for scenario in SCENARIOS.values() if long or not scenario.long]


def run_all(scenarios: list[Scenario], seconds: float | None, handler: str) -> list[Result]:
    """Each scenario in turn; one that cannot run is reported (as an error row), not raised."""
    results = []
    for number, scenario in enumerate(scenarios, 1):
        print(f"[{number}/{len(scenarios)}] {scenario.name} ...", end=" ", flush=True)
        try:
            result = run_scenario(scenario, seconds, handler)
        except SCENARIO_ERRORS as error:
            result = Result(scenario.name, error=f"{type(error).__name__}: {error}")
        print(f"{result.seconds:.1f} s, {'PASS' if result.passed else 'FAIL'}", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join((__doc__ or "").split("\n\n")[0].split()))
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
                        help=f"run this scenario (repeatable; default: all but soak): {', '.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help=f"seconds of load per scenario (default {SHORT_SECONDS:g}, soak {SOAK_SECONDS:g}; "
                             "a scenario runs on until it has recovered)")
    parser.add_argument("--long", action="store_true", help="also run soak (10 minutes)")
    parser.add_argument("--handler", choices=("blocking", "coroutine"), default="blocking",
                        help="SessionHandler (default) or AsyncSessionHandler")
    parser.add_argument("--json", metavar="FILE", help="write the results, the command and the machine here")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write the table, the command and the machine as Markdown (the docs include bench/faults.md)")
    options = parser.parse_args(argv)
    command = "python bench/faults.py" + "".join(f" {shlex.quote(word)}" for word in (sys.argv[1:] if argv is None else argv))
    started = time.monotonic()
    try:
        results = run_all(selected(options.scenario, options.long), options.duration, options.handler)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    print()
    print(text_table(HEADER, [row(result) for result in results]))
    print()
    for result in results:
        print(details(result))
    print(f"\n{len(results)} scenarios in {elapsed:.0f} s; "
          + ("all met their expectations" if all(result.passed for result in results) else
             "FAILED: " + "; ".join(f"{result.scenario}: {', '.join(result.missed())}" for result in results
                                    if not result.passed)))
    if options.markdown:
        with open(options.markdown, "w", encoding="utf-8") as output:
            output.write(markdown(command, elapsed, results))
    if options.json:
        with open(options.json, "w", encoding="utf-8") as output:
            json.dump({"command": command, "seconds": round(elapsed, 1), "environment": environment(),
                       "results": [asdict(result) for result in results]}, output, indent=1)
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
