"""Load benchmark of redis_session against plain Tornado/Flask and hand-written redis-py handlers.

    python bench/run.py [--duration 6] [--connections 16] [--quick] [--instructions] [--redis URL] [--loadgen auto|wrk|python]

It starts its own ``redis-server`` on a free loopback port (unless ``--redis`` names one), every
app in a process of its own (bench/apps.py), the 2 ms latency proxy for scenario (f)
(bench/latency_proxy.py), and drives load from another process: wrk with bench/wrk_session.lua
when installed, else bench/load.py. Scenarios are measured in groups, each candidate beside its
baseline in the same run: each scenario's --duration is cut into slices (1 s by default) run in
turn, A B C, C B A, ..., so drift hits all of them alike, and a ratio is the median over the
rounds of the per-round ratios. --instructions also counts each app's CPU instructions per request
under valgrind's callgrind, which does not depend on the machine's load. It prints one table and
writes it, with the machine and the command, to bench/results.md.
What each row means and the targets: docs/performance.rst.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PYTHON = sys.executable

# Commands run.py itself sends between two snapshots; never counted against the apps.
OWN_COMMANDS = {"info", "scan", "config|resetstat"}


@dataclass
class Scenario:
    name: str                        # bench/apps.py scenario
    label: str                       # row label
    baseline: str | None = None   # name of the scenario it is compared with
    cookies: str = "keep"            # keep | none | setup (pre-created sessions)
    round_trips: float | None = None  # expected Redis round trips per request
    min_ratio: float | None = None    # target: req/s >= min_ratio x baseline
    counter: bool = False            # the page adds one to the session field "count"
    anonymous: bool = False          # target: no Redis command, no key, no Set-Cookie
    also: str | None = None       # a second baseline, reported beside the first (no target)


@dataclass
class Group:
    title: str
    scenarios: list[Scenario]
    connections: int | None = None  # None: --connections
    delay_ms: float = 0.0              # > 0: Redis behind bench/latency_proxy.py


GROUPS = [
    Group("(a) README counter: read then write", [
        Scenario("plain_counter", "(1) plain Tornado, counter in a signed cookie", round_trips=0),
        Scenario("raw_counter", "(2) raw redis-py: HGET+EXPIRE, HSET+EXPIRE", round_trips=2, counter=True),
        Scenario("raw_counter_lua", "(2) raw redis-py, the library's Redis work: EXPIRE+HMGET, EVALSHA write",
                 round_trips=2, counter=True),
        Scenario("lib_counter", "(a) count = session.count.int; session.count = count + 1", "raw_counter_lua",
                 round_trips=2, min_ratio=0.9, counter=True, also="raw_counter"),
    ]),
    Group("(b) counter with incr", [
        Scenario("raw_incr", "(2) raw redis-py: HINCRBY+EXPIRE", round_trips=1, counter=True),
        Scenario("raw_incr_lua", "(2) raw redis-py, the library's Redis work: EVALSHA incr", round_trips=1,
                 counter=True),
        Scenario("lib_incr", "(b) session.incr('count')", "raw_incr_lua", round_trips=1, min_ratio=0.9,
                 counter=True, also="raw_incr"),
    ]),
    Group("(c) anonymous read, no cookie", [
        Scenario("plain_read", "(1) plain Tornado, reads an absent signed cookie", cookies="none", round_trips=0),
        Scenario("lib_anon", "(c) session.count.int without a cookie", "plain_read", cookies="none",
                 round_trips=0, min_ratio=0.95, anonymous=True),
    ]),
    Group("(d) logged-in page reads 3 of 6 fields", [
        Scenario("raw_hmget3", "(2) raw redis-py: HMGET a b c+EXPIRE", cookies="setup", round_trips=1),
        Scenario("lib_get_many3", "(d) session.get_many('a', 'b', 'c')", "raw_hmget3", cookies="setup",
                 round_trips=1, min_ratio=0.9),
        Scenario("raw_hget3x", "(2) raw redis-py: 3 x (HGET+EXPIRE)", cookies="setup", round_trips=3),
        Scenario("lib_attr3", "(d') session.a.str, .b.str, .c.str", "raw_hget3x", cookies="setup",
                 round_trips=3, min_ratio=0.9),
    ]),
    Group("(e) load() of a 20-field session", [
        Scenario("raw_load20", "(2) raw redis-py: HGETALL+EXPIRE", cookies="setup", round_trips=1),
        Scenario("lib_load20", "(e) session.load()", "raw_load20", cookies="setup", round_trips=1, min_ratio=0.9),
    ]),
    Group("(h) coroutine handlers (AsyncSessionHandler) on redis.asyncio", [
        Scenario("raw_async_counter_lua", "(2) raw redis.asyncio, the library's Redis work: EXPIRE+HMGET, EVALSHA write",
                 round_trips=2, counter=True),
        Scenario("lib_async_counter", "(h) count = (await session.count).int; await session.set('count', ...)",
                 "raw_async_counter_lua", round_trips=2, min_ratio=0.9, counter=True),
        Scenario("raw_async_incr_lua", "(2) raw redis.asyncio, the library's Redis work: EVALSHA incr",
                 round_trips=1, counter=True),
        Scenario("lib_async_incr", "(h') await session.incr('count')", "raw_async_incr_lua",
                 round_trips=1, min_ratio=0.9, counter=True),
    ]),
    Group("(f) incr with +2 ms Redis latency each way", [
        Scenario("sync_incr", "(f) SessionHandler: session.incr('count')", round_trips=1, counter=True),
        Scenario("async_incr", "(f) AsyncSessionHandler: await session.incr('count')", "sync_incr",
                 round_trips=1, min_ratio=5.0, counter=True),
    ], connections=64, delay_ms=2.0),
    Group("(g) Flask counter, werkzeug threaded server", [
        Scenario("flask_plain", "(1) plain Flask, counter in flask.session", round_trips=0),
        Scenario("flask_lib", "(g) request.session counter (setup_session)", "flask_plain",
                 round_trips=2, counter=True),
    ]),
]


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


class Processes:
    """Every child we start, so that exit, an exception or Ctrl-C stops all of them."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.app_cpus: set | None = None    # CPU the apps run on (--pin)
        self.other_cpus: set | None = None  # CPUs for Redis, the proxy and the load generator

    def start(self, argv: list[str], app: bool = False, **kwargs: Any) -> subprocess.Popen:
        cpus = self.app_cpus if app else self.other_cpus
        if cpus:
            kwargs["preexec_fn"] = lambda: os.sched_setaffinity(0, cpus)
        # A session of its own: Ctrl-C reaches run.py only, which then stops the child cleanly.
        process = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=5)
        if process in self.children:
            self.children.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.children)):
            self.stop(process)


PROCESSES = Processes()
atexit.register(PROCESSES.stop_all)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server), or pass --redis URL")
    for _ in range(5):
        port = free_port()
        process = PROCESSES.start(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        # Redis shares its core with the load generator here; in production it has cores of its
        # own. Without priority every slice of Redis's time that wrk takes becomes wait time of
        # the sync apps (they block on each reply), which penalises whichever app asks Redis for
        # more work per request. Best effort: needs root (or CAP_SYS_NICE).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, process.pid, -10)
        client = redis.Redis.from_url(url)
        for _ in range(100):
            if process.poll() is not None:
                break
            with contextlib.suppress(redis.exceptions.ConnectionError):
                client.ping()
                return process, url
            time.sleep(0.05)
        PROCESSES.stop(process)
    sys.exit("could not start redis-server")


def start_proxy(target_url: str, delay_ms: float, logs: str) -> tuple[subprocess.Popen, str]:
    """bench/latency_proxy.py in front of the Redis at ``target_url``; returns it and its URL."""
    match = re.match(r"redis://(?:[^@/]*@)?([^:/@]+):(\d+)", target_url)
    if not match:
        sys.exit(f"the latency proxy needs a redis://host:port URL, got {target_url!r}")
    host, port = match.group(1), match.group(2)
    with open(os.path.join(logs, "latency_proxy.log"), "w") as log:
        process = PROCESSES.start(
            [PYTHON, os.path.join(BENCH, "latency_proxy.py"), "--target", f"{host}:{port}", "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening "):
        sys.exit(f"latency proxy did not start: {line!r}")
    return process, target_url.replace(f"{host}:{port}", f"127.0.0.1:{line.split()[1]}", 1)


def http_get(port: int, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@dataclass
class App:
    scenario: Scenario
    process: subprocess.Popen
    port: int
    prefix: str
    log_path: str
    cookie_file: str | None = None

    def stats(self) -> dict[str, int]:
        status, _, body = http_get(self.port, "/__stats")
        if status != 200:
            raise RuntimeError(f"{self.scenario.name}: /__stats answered {status}")
        return json.loads(body)


def start_app(scenario: Scenario, redis_url: str, prefix: str, logs: str) -> App:
    port = free_port()
    log_path = os.path.join(logs, f"{scenario.name}.log")
    with open(log_path, "w") as log:
        process = PROCESSES.start(
            [PYTHON, os.path.join(BENCH, "apps.py"), scenario.name, f"--port={port}",
             f"--session-redis={redis_url}", f"--prefix={prefix}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, app=True,
        )
    app = App(scenario, process, port, prefix, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            app.stats()
            return app
        time.sleep(0.05)
    with open(log_path) as log:
        sys.exit(f"app {scenario.name} did not start:\n{log.read()}")


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


class LoadGenerator:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "wrk":
            out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
            self.version = (out.stdout + out.stderr).splitlines()[0].strip() if (out.stdout + out.stderr) else "wrk"
        else:
            self.version = f"bench/load.py (asyncio, Python {platform.python_version()})"

    def seconds(self, seconds: float) -> float:
        """wrk takes whole seconds only."""
        return float(max(1, round(seconds))) if self.kind == "wrk" else seconds

    def run(self, app: App, connections: int, seconds: float) -> dict[str, Any]:
        url = f"http://127.0.0.1:{app.port}/"
        mode = "none" if app.scenario.cookies == "none" else "keep"
        if self.kind == "wrk":
            argv = ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{int(seconds)}s",
                    "--timeout", "10s", "-s", os.path.join(BENCH, "wrk_session.lua"), url]
            env = dict(os.environ, BENCH_COOKIES=mode, BENCH_COOKIE_FILE=app.cookie_file or "")
        else:
            argv = [PYTHON, os.path.join(BENCH, "load.py"), url, "--connections", str(connections),
                    "--duration", str(seconds), "--cookies", mode]
            if app.cookie_file:
                argv += ["--cookie-file", app.cookie_file]
            env = dict(os.environ)
        process = PROCESSES.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            out, err = process.communicate(timeout=seconds + 60)
        finally:
            PROCESSES.stop(process)
        for line in out.splitlines():
            if line.startswith("BENCH-RESULT "):
                return json.loads(line[len("BENCH-RESULT "):])
        raise RuntimeError(f"load generator gave no result for {app.scenario.name}:\n{out}\n{err}")


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Measured:
    requests: int = 0           # completed responses seen by the load generator
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (latency us, weight)
    served: int = 0             # requests the app answered on "/" during the windows
    failed: int = 0
    round_trips: int = 0
    sent: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    keys: int = 0
    lost: int | None = None
    counted: int | None = None  # sum of the "count" fields in Redis
    total_served: int = 0
    gc_seconds: float = 0.0     # time the app spent in the cyclic garbage collector
    gc_collections: int = 0
    cpu_seconds: float = 0.0    # CPU time of the app process
    redis_wait: float = 0.0     # time the app blocked in sync redis-py reads
    set_cookie_on_anonymous: bool | None = None
    slice_rates: list[float] = field(default_factory=list)  # req/s of each slice, one per round
    instructions: int | None = None  # app instructions per request (--instructions)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def ratios_to(self, baseline: Measured) -> list[float]:
        """req/s over the baseline's, round by round: each scenario runs once per round, next to
        its baseline, so each ratio compares two slices measured a second apart."""
        return [mine / theirs for mine, theirs in zip(self.slice_rates, baseline.slice_rates) if theirs]

    def ratio_to(self, baseline: Measured) -> float:
        """The median of the per-round ratios. This machine's speed drifts by ±20% over seconds;
        the median of paired slices follows the code, the ratio of totals follows the drift."""
        ratios = sorted(self.ratios_to(baseline))
        if not ratios:
            return self.rate / baseline.rate if baseline.rate else 0.0
        middle = len(ratios) // 2
        return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        total = sum(weight for _, weight in ordered)
        running = 0.0
        for value, weight in ordered:
            running += weight
            if running >= p / 100 * total:
                return value
        return ordered[-1][0] if ordered else 0.0

    def per_request(self, amount: float) -> float:
        return amount / self.served if self.served else 0.0


def command_stats(client: redis.Redis) -> dict[str, int]:
    info = client.info("commandstats")
    return {name[len("cmdstat_"):]: int(value["calls"]) for name, value in info.items()}


def count_keys(client: redis.Redis, prefix: str) -> int:
    return sum(1 for _ in client.scan_iter(match=f"{prefix}:*", count=1000))


def sum_counters(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=f"{prefix}:sessions:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "count")
    return sum(int(value) for value in pipe.execute() if value is not None)


def drain(app: App) -> None:
    """Wait until the app has answered what the load generator left in flight.

    Only the request counters are compared: the stats also carry the app's CPU time, which every
    /__stats request itself moves, so whole snapshots never repeat.
    """
    def answered() -> tuple[int, int]:
        stats = app.stats()
        return stats["ok"], stats["failed"]

    deadline = time.monotonic() + 10
    before = answered()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        after = answered()
        if after == before:
            return
        before = after


def create_sessions(app: App, count: int, workdir: str) -> None:
    cookies = []
    for _ in range(count):
        status, headers, _ = http_get(app.port, "/__setup")
        if status != 200 or "set-cookie" not in headers:
            raise RuntimeError(f"{app.scenario.name}: /__setup answered {status} without a cookie")
        cookies.append(headers["set-cookie"].split(";", 1)[0])
    app.cookie_file = os.path.join(workdir, f"{app.scenario.name}.cookies")
    with open(app.cookie_file, "w") as handle:
        handle.write("\n".join(cookies) + "\n")


def measure_group(group: Group, options: argparse.Namespace, client: redis.Redis, redis_url: str, run_id: str,
                  workdir: str, load: LoadGenerator, results: dict[str, Measured]) -> None:
    connections = group.connections or options.connections
    proxy = None
    url = redis_url
    if group.delay_ms:
        proxy, url = start_proxy(redis_url, group.delay_ms, workdir)
    apps: dict[str, App] = {}
    try:
        for scenario in group.scenarios:
            apps[scenario.name] = start_app(scenario, url, f"bench{run_id}:{scenario.name}", workdir)
            if scenario.cookies == "setup":
                create_sessions(apps[scenario.name], connections, workdir)
        for app in apps.values():  # warm up: connections, scripts loaded, code paths hot
            load.run(app, connections, load.seconds(options.warmup))
            drain(app)
        names = [scenario.name for scenario in group.scenarios]
        order = [name for index in range(options.rounds) for name in (names if index % 2 == 0 else names[::-1])]
        seconds = load.seconds(options.duration / options.rounds)
        for name in order:
            app = apps[name]
            measured = results.setdefault(name, Measured())
            keys_before = count_keys(client, app.prefix)
            stats_before, commands_before = app.stats(), command_stats(client)
            print(f"  {name:<15} {seconds:g}s ...", end="", flush=True)
            result = load.run(app, connections, seconds)
            drain(app)
            commands_after, stats_after = command_stats(client), app.stats()
            measured.keys += count_keys(client, app.prefix) - keys_before
            measured.requests += int(result["requests"])
            measured.seconds += float(result["duration_s"])
            measured.slice_rates.append(int(result["requests"]) / float(result["duration_s"]))
            for kind, amount in result["errors"].items():
                measured.errors[kind] = measured.errors.get(kind, 0) + int(amount)
            quantiles = result["quantiles"][:-1]
            weight = int(result["requests"]) / max(1, len(quantiles))
            measured.samples.extend((float(q), weight) for q in quantiles)
            measured.served += stats_after["ok"] - stats_before["ok"]
            measured.failed += stats_after["failed"] - stats_before["failed"]
            measured.round_trips += stats_after["round_trips"] - stats_before["round_trips"]
            measured.sent += stats_after["commands"] - stats_before["commands"]
            measured.gc_seconds += stats_after["gc_seconds"] - stats_before["gc_seconds"]
            measured.gc_collections += sum(stats_after["gc_collections"]) - sum(stats_before["gc_collections"])
            measured.cpu_seconds += stats_after["cpu"] - stats_before["cpu"]
            measured.redis_wait += stats_after["redis_wait"] - stats_before["redis_wait"]
            for command, calls in commands_after.items():
                delta = calls - commands_before.get(command, 0)
                if delta and command not in OWN_COMMANDS:
                    measured.commands[command] = measured.commands.get(command, 0) + delta
            print(f" {int(result['requests']) / float(result['duration_s']):8.0f} req/s", flush=True)
        for scenario in group.scenarios:
            app, measured = apps[scenario.name], results[scenario.name]
            final = app.stats()
            measured.total_served = final["ok"]
            if scenario.counter:
                measured.counted = sum_counters(client, app.prefix)
                measured.lost = final["ok"] - measured.counted
            if scenario.anonymous:
                _, headers, _ = http_get(app.port, "/")
                measured.set_cookie_on_anonymous = "set-cookie" in headers
    finally:
        for app in apps.values():
            PROCESSES.stop(app.process)
        if proxy is not None:
            PROCESSES.stop(proxy)


def measure_memory(redis_url: str, prefix: str, count: int) -> dict[str, Any]:
    """Average MEMORY USAGE of sessions with 6 short fields, created through the library."""
    sys.path.insert(0, ROOT)
    from redis_session.protocol import session_key
    from redis_session.session import Session
    from redis_session.settings import SessionSettings
    from redis_session.start_up import NoCookie
    from redis_session.store import Store

    settings = SessionSettings.from_mapping({"redis": redis_url, "redis-prefix": prefix})
    store = Store.connect(settings)
    fields = {"a": "alice", "b": "bob", "c": "carol", "d": "dave", "e": "erin", "f": "frank"}
    keys = []
    for _ in range(count):
        session = Session(store, settings, None, NoCookie())
        session.update(fields)
        keys.append(session_key(prefix, session.session_id or ""))  # the id's digest, as the library keys it
    client: redis.Redis = store.client
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    usages = pipe.execute()
    # the same six fields written by hand (no __rs:created), under keys of the same length
    raw_keys = [key[:-8] + "rawfield" for key in keys[:100]]
    pipe = client.pipeline(transaction=False)
    for key in raw_keys:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, 86400)
    pipe.execute()
    pipe = client.pipeline(transaction=False)
    for key in raw_keys:
        pipe.memory_usage(key, samples=0)
    raw_usages = pipe.execute()
    return {
        "sessions": count,
        "average": sum(usages) / len(usages),
        "raw_average": sum(raw_usages) / len(raw_usages),
        "encoding": client.object("encoding", keys[0]).decode(),
        "fields": client.hlen(keys[0]),
        "key_length": len(keys[0]),
    }


def count_instructions(scenario: Scenario, redis_url: str, prefix: str, workdir: str, requests: int = 300) -> int:
    """CPU instructions the app process executes per request (valgrind's callgrind), for
    ``--instructions``: unlike req/s this does not move when the machine's speed drifts, so it
    shows what the library itself costs. Requests are sent one at a time on one connection,
    after 100 unmeasured ones; Redis's own work is not included. Python keeps its own allocator
    (valgrind's usual PYTHONMALLOC=malloc would make every allocation several times dearer than
    it is in production, and overstate code that allocates)."""
    port = free_port()
    out = os.path.join(workdir, f"callgrind.{scenario.name}")
    log_path = os.path.join(workdir, f"{scenario.name}.callgrind.log")
    with open(log_path, "w") as log:
        process = PROCESSES.start(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", PYTHON, os.path.join(BENCH, "apps.py"),
             scenario.name, f"--port={port}", f"--session-redis={redis_url}", f"--prefix={prefix}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ), app=True,
        )
    app = App(scenario, process, port, prefix, log_path)
    deadline = time.monotonic() + 120  # a Python process starts slowly under valgrind
    while True:
        with contextlib.suppress(OSError):
            app.stats()
            break
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"app {scenario.name} did not start under valgrind (see {log_path})")
        time.sleep(0.5)
    cookie = None
    if scenario.cookies != "none":
        _, headers, _ = http_get(port, "/__setup")
        cookie = headers.get("set-cookie", "").split(";", 1)[0] or None

    def visit(times: int, cookie: str | None) -> str | None:
        """``times`` requests on one connection, keeping the cookie as a browser would."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(times):
            connection.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{scenario.name}: / answered {response.status} under valgrind")
            issued = response.getheader("set-cookie")
            if issued and scenario.cookies == "keep":
                cookie = issued.split(";", 1)[0]
        connection.close()
        return cookie

    cookie = visit(100, cookie)
    subprocess.run(["callgrind_control", "--zero", str(process.pid)], capture_output=True, check=True)
    visit(requests, cookie)
    subprocess.run(["callgrind_control", "--dump", str(process.pid)], capture_output=True, check=True)
    PROCESSES.stop(process)
    dumps = sorted(path for path in os.listdir(workdir) if path.startswith(f"callgrind.{scenario.name}.") and path.endswith(".1"))
    with open(os.path.join(workdir, dumps[-1])) as dump:
        for line in dump:
            if line.startswith("summary:"):
                return int(line.split()[1]) // requests
    raise RuntimeError(f"no callgrind summary for {scenario.name}")


def measure_instructions(groups: list[Group], redis_url: str, run_id: str, workdir: str, results: dict[str, Measured]) -> None:
    for group in groups:
        if group.delay_ms:
            continue  # (f) is about waiting, not about instructions
        for scenario in group.scenarios:
            print(f"  {scenario.name:<15} under callgrind ...", end="", flush=True)
            count = count_instructions(scenario, redis_url, f"bench{run_id}:cg:{scenario.name}", workdir)
            results.setdefault(scenario.name, Measured()).instructions = count
            print(f" {count:,} instructions/request", flush=True)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def verdicts(scenario: Scenario, measured: Measured, baseline: Measured | None) -> tuple[str, list[str]]:
    """('target text', ['failure', ...]) for one row."""
    targets, failures = [], []
    if scenario.min_ratio is not None and baseline is not None:
        targets.append(f">= {scenario.min_ratio:g}x")
        if measured.ratio_to(baseline) < scenario.min_ratio:
            failures.append(f"{measured.ratio_to(baseline):.2f}x < {scenario.min_ratio:g}x")
    if scenario.round_trips is not None:
        rt = measured.per_request(measured.round_trips)
        targets.append(f"RT {scenario.round_trips:g}")
        # a session's first request has nothing to read (no round trip for it), hence the slack below
        if rt > scenario.round_trips + 0.01 or rt < scenario.round_trips * 0.95:
            failures.append(f"RT {rt:.2f} != {scenario.round_trips:g}")
    if scenario.anonymous:
        targets.append("0 cmds, 0 keys, no cookie")
        if sum(measured.commands.values()) or measured.keys or measured.round_trips:
            failures.append("Redis was used")
        if measured.set_cookie_on_anonymous:
            failures.append("Set-Cookie sent")
    if scenario.counter:
        targets.append("0 lost")
        if measured.lost:
            failures.append(f"{measured.lost} lost updates")
    errors = sum(measured.errors.values()) + measured.failed
    if errors:
        failures.append(f"{errors} errors")
    return ", ".join(targets) or "-", failures


def build_table(results: dict[str, Measured], memory: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    header = ["scenario", "req/s", "ratio", "p50 ms", "p99 ms", "Redis cmds/req", "sent/req", "RT/req",
              "keys", "lost", "instructions/req", "target", "result"]
    rows, failures = [], []
    for group in GROUPS:
        for scenario in group.scenarios:
            measured = results.get(scenario.name)
            if measured is None:
                continue
            baseline = results.get(scenario.baseline) if scenario.baseline else None
            ratio = "baseline"
            if baseline and baseline.rate:
                spread = sorted(measured.ratios_to(baseline))
                ratio = f"{measured.ratio_to(baseline):.2f}x vs {scenario.baseline}"
                if len(spread) > 2:
                    ratio += f" (rounds {spread[0]:.2f}-{spread[-1]:.2f})"
            second = results.get(scenario.also) if scenario.also else None
            if second and second.rate:
                ratio += f"; {measured.ratio_to(second):.2f}x vs {scenario.also}"
            target, failed = verdicts(scenario, measured, baseline)
            result = "PASS" if not failed else "FAIL: " + "; ".join(failed)
            if failed:
                failures.append(f"{scenario.name}: " + "; ".join(failed))
            lost = "-" if measured.lost is None else f"{measured.lost} of {measured.total_served}"
            instructions = "-"
            if measured.instructions is not None:
                instructions = f"{measured.instructions / 1e6:.3f} M"
                if baseline is not None and baseline.instructions:
                    instructions += f" ({measured.instructions / baseline.instructions:.3f}x)"
                if second is not None and second.instructions:
                    instructions += f" ({measured.instructions / second.instructions:.3f}x vs {scenario.also})"
            rows.append([
                scenario.label, f"{measured.rate:.0f}", ratio,
                f"{measured.percentile(50) / 1000:.2f}", f"{measured.percentile(99) / 1000:.2f}",
                f"{measured.per_request(sum(measured.commands.values())):.2f}",
                f"{measured.per_request(measured.sent):.2f}",
                f"{measured.per_request(measured.round_trips):.2f}",
                str(measured.keys), lost, instructions, target, result,
            ])
    if memory:
        ok = memory["average"] < 300
        if not ok:
            failures.append(f"memory: {memory['average']:.0f} bytes >= 300")
        rows.append([
            f"memory per 6-field session ({memory['sessions']} sessions, {memory['encoding']})",
            "-", f"raw HSET of the same 6 fields: {memory['raw_average']:.0f} B", "-", "-", "-", "-", "-",
            str(memory["sessions"]), "-", "-", "< 300 B", f"{'PASS' if ok else 'FAIL'}: {memory['average']:.0f} B",
        ])
    return header, rows, failures


def diagnostics_table(results: dict[str, Measured]) -> tuple[list[str], list[list[str]]]:
    """Where each request's time goes in the app process (the same counters for every row)."""
    header = ["scenario", "app CPU us/req", "Redis wait us/req", "GC us/req", "GC runs/1k req",
              "errors (socket, non-2xx)"]
    rows = []
    for group in GROUPS:
        for scenario in group.scenarios:
            measured = results.get(scenario.name)
            if measured is None:
                continue
            errors = sum(measured.errors.values()) + measured.failed
            rows.append([
                scenario.name,
                f"{measured.per_request(measured.cpu_seconds) * 1e6:.0f}",
                f"{measured.per_request(measured.redis_wait) * 1e6:.0f}",
                f"{measured.per_request(measured.gc_seconds) * 1e6:.1f}",
                f"{measured.per_request(measured.gc_collections) * 1000:.1f}",
                str(errors),
            ])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(client: redis.Redis, load: LoadGenerator) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("tornado", "redis", "flask", "werkzeug", "hiredis"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
    return [
        f"nproc: {os.cpu_count()}",
        f"CPU: {model}",
        f"Python: {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
        f"Redis: {client.info('server')['redis_version']}",
        f"packages: {', '.join(versions)}",
        f"load generator: {load.version}",
    ]


def command_breakdown(results: dict[str, Measured]) -> list[str]:
    lines = []
    for group in GROUPS:
        for scenario in group.scenarios:
            measured = results.get(scenario.name)
            if measured is None:
                continue
            parts = sorted(measured.commands.items(), key=lambda item: -item[1])
            text = ", ".join(f"{name} {measured.per_request(calls):.2f}" for name, calls in parts) or "none"
            lines.append(f"- `{scenario.name}`: {text}")
    return lines


def kept_sections(path: str) -> list[str]:
    """What other benchmark scripts wrote into the report (bench/tricks.py), kept as it was."""
    try:
        text = open(path).read()
    except OSError:
        return []
    start, end = "<!-- tricks:start -->", "<!-- tricks:end -->"
    if start not in text or end not in text:
        return []
    return [text[text.index(start):text.index(end) + len(end)], ""]


def report(options: argparse.Namespace, command: str, results: dict[str, Measured], memory: dict[str, Any],
           client: redis.Redis, load: LoadGenerator, elapsed: float) -> int:
    header, rows, failures = build_table(results, memory)
    print()
    print(text_table(header, rows))
    print()
    diagnostics_header, diagnostics_rows = diagnostics_table(results)
    print(text_table(diagnostics_header, diagnostics_rows))
    print()
    print("targets: " + ("all PASS" if not failures else "FAIL: " + " | ".join(failures)))
    if options.output:
        lines = [
            "# redis_session load benchmark",
            "",
            f"Command: `{command}`",
            "",
            f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {elapsed:.0f} s; {options.connections} connections "
            f"(64 for (f)); {options.duration:g} s per scenario in {options.rounds} slices, alternating "
            "A B C, C B A, ... within each group"
            + (" (--quick)" if options.quick else "")
            + (f"; apps pinned to CPU {sorted(PROCESSES.app_cpus)}, Redis/proxy/load generator to "
               f"{sorted(PROCESSES.other_cpus or [])}" if PROCESSES.app_cpus else "; no CPU pinning"),
            "",
            "Machine:",
            "",
            *[f"- {line}" for line in machine(client, load)],
            "",
            markdown_table(header, rows),
            "",
            "Targets: " + ("all PASS" if not failures else "FAIL: " + "; ".join(failures)),
            "",
            "Columns: *ratio* is the median, over the rounds, of req/s over the baseline row named in "
            "the same round (the range of the per-round ratios in brackets); *Redis cmds/req* is the INFO commandstats "
            "delta per request (commands run inside Lua scripts included); *sent/req* the commands the app "
            "process sent; *RT/req* its round trips (one per request/pipeline written to a Redis socket); "
            "*keys* the keys created under the app's prefix while measured; *lost* the requests answered "
            "minus the sum of the counters left in Redis, over the app's life.",
            "",
            "Where the time goes, per request, in the app process (the same counters in every app; "
            "*Redis wait* is time blocked in the sync client's read_response, so 0 for async and cookie-only "
            "rows; *GC* is time in the cyclic garbage collector, from gc.callbacks):",
            "",
            markdown_table(diagnostics_header, diagnostics_rows),
            "",
            "Redis commands executed per request (commandstats):",
            "",
            *command_breakdown(results),
            "",
        ]
        lines += kept_sections(options.output)
        with open(options.output, "w") as handle:
            handle.write("\n".join(lines))
        print(f"written to {os.path.relpath(options.output)}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="use this Redis (redis://host:port/db) instead of starting one; "
                        "only keys under a fresh bench<id>: prefix are touched, and deleted at the end")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per scenario (default 6)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16; (f) uses 64)")
    parser.add_argument("--quick", action="store_true", help="short smoke run: 1 s per scenario, one round")
    parser.add_argument("--slice", type=float, default=1.0,
                        help="seconds per slice: each scenario's --duration is cut into slices run in turn with "
                             "the rest of its group, A B C, C B A, A B C, ... (default 1)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--only", help="comma-separated group letters to run, e.g. a,c,f")
    parser.add_argument("--memory-sessions", type=int, default=1000)
    parser.add_argument("--instructions", action="store_true",
                        help="also count each app's CPU instructions per request under valgrind's callgrind "
                             "(deterministic, unlike req/s; adds about a minute per scenario)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the apps to CPU 0 and everything else to the other CPUs")
    parser.add_argument("--output", default=os.path.join(BENCH, "results.md"),
                        help="markdown report (default bench/results.md; '' for none)")
    options = parser.parse_args(argv)
    options.warmup = 1.0
    if options.quick:
        options.duration, options.slice, options.memory_sessions = 1.0, 1.0, 200
    options.rounds = max(1, round(options.duration / max(options.slice, 0.1)))
    command = "python bench/run.py" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))
    kind = options.loadgen
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
    load = LoadGenerator(kind)
    signal.signal(signal.SIGTERM, _terminate)
    cpus = sorted(os.sched_getaffinity(0))
    if options.pin and len(cpus) >= 2:
        PROCESSES.app_cpus, PROCESSES.other_cpus = {cpus[0]}, set(cpus[1:])
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    groups = GROUPS
    if options.only:
        wanted = {letter.strip() for letter in options.only.split(",")}
        groups = [group for group in GROUPS if group.title[1] in wanted]
    with tempfile.TemporaryDirectory(prefix="redis-session-bench-") as workdir:
        try:
            if options.redis:
                redis_url = options.redis
            else:
                _, redis_url = start_redis(workdir)
            client = redis.Redis.from_url(redis_url)
            print(f"Redis {client.info('server')['redis_version']} at {redis_url}; load generator: {load.version}")
            results: dict[str, Measured] = {}
            for group in groups:
                print(group.title)
                measure_group(group, options, client, redis_url, run_id, workdir, load, results)
            if options.instructions:
                if not shutil.which("valgrind"):
                    sys.exit("--instructions needs valgrind (apt-get install -y valgrind)")
                print("instructions per request (callgrind, sequential requests)")
                measure_instructions(groups, redis_url, run_id, workdir, results)
            memory: dict[str, Any] = {}
            if not options.only or "m" in options.only:
                memory = measure_memory(redis_url, f"bench{run_id}:memory", options.memory_sessions)
            status = report(options, command, results, memory, client, load, time.monotonic() - started)
            if options.redis:
                for key in client.scan_iter(match=f"bench{run_id}:*", count=1000):
                    client.unlink(key)
            return status
        except KeyboardInterrupt:
            print("\ninterrupted; stopping every process this run started", file=sys.stderr)
            return 130
        finally:
            PROCESSES.stop_all()


if __name__ == "__main__":
    sys.exit(main())
