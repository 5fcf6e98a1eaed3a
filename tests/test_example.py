"""examples/tornado_counter.py as a user runs it: a separate process, flags on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tornado.web

from redis_session.protocol import session_key
from tests.redis_servers import RedisServer, free_port
from tests.web import Browser, Response

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tornado_counter.py"
ASYNC_EXAMPLE = EXAMPLE.with_name("tornado_async_counter.py")
EXAMPLE_SECRET = "example-test-secret-" + "z" * 32


class RunningExample:
    """One example process on a free port, its output captured in ``log``."""

    def __init__(self, flags: list[str], log: Path, script: Path = EXAMPLE) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, str(script), f"--port={port}", "--session-cookie-secure=false", *flags],
                stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "COOKIE_SECRET": EXAMPLE_SECRET},
            )

    def browser(self) -> Browser:
        return Browser(self.url)

    def first_page(self, browser: Browser, seconds: float = 15) -> Response:
        """The first answer of the freshly started server, retrying until it accepts connections."""
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the example exited with code {self.process.returncode}:\n{self.log.read_text()}")
            try:
                return browser.get("/", timeout=5)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the example did not accept connections within {seconds}s:\n{self.log.read_text()}")
                time.sleep(0.05)

    def terminate(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[..., RunningExample]]:
    """``run_example(*flags)`` starts the counter example; every process is terminated afterwards."""
    started: list[RunningExample] = []

    def run(*flags: str) -> RunningExample:
        example = RunningExample(list(flags), tmp_path / f"example-{len(started)}.log")
        started.append(example)
        return example

    yield run
    for example in started:
        example.terminate()


def counts(response: Response) -> list[str]:
    """The two numbers the counter prints: the count before and after this visit."""
    assert response.status == 200, response
    return [line.rsplit(":", 1)[1] for line in response.text.splitlines()]


def session_id_of(browser: Browser) -> str:
    raw = browser.cookies["session-id"].strip('"')
    decoded = tornado.web.decode_signed_value(EXAMPLE_SECRET, "session-id", raw, min_version=2)
    assert decoded is not None
    return decoded.decode("ascii")


def test_the_counter_example_counts_per_browser_in_memory(run_example):
    """`tornado_counter.py --session-redis=memory://` counts 0->1, 1->2 for one browser and starts at 0 for another."""
    example = run_example("--session-redis=memory://")
    alice = example.browser()
    assert counts(example.first_page(alice)) == ["0", "1"]
    assert counts(alice.get("/")) == ["1", "2"]
    assert counts(example.browser().get("/")) == ["0", "1"]


def test_the_counter_example_keeps_sessions_in_redis(run_example, redis_server: RedisServer):
    """Pointed at a Redis with --session-redis and --session-redis-prefix, the example keeps {prefix}:sessions:<id> there."""
    prefix = f"example{uuid.uuid4().hex[:10]}"
    example = run_example(f"--session-redis={redis_server.url}", f"--session-redis-prefix={prefix}")
    alice = example.browser()
    assert counts(example.first_page(alice)) == ["0", "1"]
    assert counts(alice.get("/")) == ["1", "2"]
    assert counts(example.browser().get("/")) == ["0", "1"]
    client = redis_server.client()
    try:
        key = session_key(prefix, session_id_of(alice))
        assert client.exists(key) == 1
        assert client.hget(key, "count") == b"2"
    finally:
        client.close()
