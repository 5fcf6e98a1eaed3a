"""Real redis-server processes for the tests, on free loopback ports, never the machine's 6379.

Each server runs with no persistence in its own temporary directory and is stopped by the
fixture that started it. Under CI=true a server that cannot start fails the test instead of
skipping it, so a green CI always means the real-Redis tests ran.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _listening_port_range() -> range:
    """Ports below the kernel's ephemeral range (``ip_local_port_range``).

    A port found free by binding to port 0 comes from the ephemeral range, and between the probe
    and the server's own bind any outgoing connection (the suite makes thousands, cluster nodes
    gossip) may take it as its local port: the server then exits with "Address already in use".
    Ports below that range are never handed out to outgoing connections.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ephemeral:
            first_ephemeral = int(ephemeral.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    return range(20000, max(first_ephemeral, 20000 + 1000))


def _port_candidates(ports: range) -> Iterator[int]:
    """Every port of the range once, from a random start, so one run never hands a port out twice
    and two runs side by side rarely meet."""
    start = random.randrange(len(ports))
    return itertools.cycle([*ports[start:], *ports[:start]])


_PORTS = _listening_port_range()
_PORT_CANDIDATES = _port_candidates(_PORTS)


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range (see above)."""
    for _ in range(len(_PORTS)):
        port = next(_PORT_CANDIDATES)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where every real-Redis test must run."""
    if IN_CI:
        pytest.fail(f"CI=true and a real redis-server is needed: {reason}", pytrace=False)
    pytest.skip(reason)


class RedisServer:
    """One redis-server child process that can be stopped, paused and restarted on its port."""

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self.binary = os.environ.get("REDIS_SERVER_BINARY") or shutil.which("redis-server")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="redis-session-test-")
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis[bytes]:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, deadline_seconds: float = 10.0) -> RedisServer:
        if not self.binary:
            unavailable("redis-server is not installed (apt-get install -y redis-server)")
        arguments = [
            str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.directory,
            "--daemonize", "no", "--protected-mode", "no", "--logfile", "",
            *self.extra_args,
        ]
        self.process = self.spawn(arguments)
        return self.wait_answering("redis-server", deadline_seconds)

    def wait_answering(self, what: str, deadline_seconds: float) -> RedisServer:
        """Wait until the spawned process answers as itself (:meth:`answers_as_itself`). A process
        that does not, or a probe that fails in an unexpected way, is stopped before the error
        leaves: no server outlives a failed start (its ``Popen`` would warn when collected)."""
        assert self.process is not None
        try:
            deadline = time.monotonic() + deadline_seconds
            last_error: BaseException | None = None
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    unavailable(f"{what} on port {self.port} exited at start with code "
                                f"{self.process.returncode}: {self.log_tail()}")
                try:
                    if self.answers_as_itself():
                        return self
                except redis.exceptions.ConnectionError as error:
                    last_error = error
                time.sleep(0.02)
            suffix = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            unavailable(f"{what} on port {self.port} did not answer PING within {deadline_seconds}s{suffix}")
        except BaseException:
            self.stop()
            raise
        return self

    def answers_as_itself(self) -> bool:
        """True once the server on our port is our process: a PING alone would also be answered
        by another Redis that held the port while ours failed to bind it."""
        client = self.client()
        try:
            serving_pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        return self.process is not None and serving_pid == self.process.pid

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, "redis-server.log")

    def spawn(self, arguments: list[str]) -> subprocess.Popen[bytes]:
        """Start the process with its log (stdout) appended to a file of its directory, so a
        server that exits at start can say why."""
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self, characters: int = 600) -> str:
        try:
            with open(self.log_path, "rb") as log:
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return text[-characters:].strip() or "(empty log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class ReplyDroppingProxy:
    """A loopback TCP proxy in front of a redis-server that can lose replies on purpose.

    After :meth:`drop_next_replies` ``(n)``, the next ``n`` requests a client sends still reach
    Redis (and run there), but their replies are thrown away and the client's connection is
    closed, as when a connection dies after the command left: the client cannot tell whether
    the command ran. That is the case where a retry would apply a command twice.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._drops = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_next_replies(self, count: int = 1) -> None:
        with self._lock:
            self._drops = count

    def close(self) -> None:
        self._listener.close()
        for connection in list(self._open):
            with contextlib.suppress(OSError):
                connection.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, upstream]
            dropping = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, dropping), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, dropping), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, dropping: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = client.recv(65536)
                if not data:
                    break
                with self._lock:
                    if self._drops > 0:
                        self._drops -= 1
                        dropping.set()
                upstream.sendall(data)
                if dropping.is_set():
                    return  # the reply handler closes both sides once Redis has answered
        with contextlib.suppress(OSError):
            upstream.close()

    def _replies(self, upstream: socket.socket, client: socket.socket, dropping: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if dropping.is_set():
                    break  # Redis ran the command; the client never hears of it
                client.sendall(data)
        for connection in (client, upstream):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                connection.close()
