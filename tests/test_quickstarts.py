"""The README's three quick starts (examples/quickstart_*.py), run as a reader runs them: their
own process, the command their docstring gives, on the memory:// store, driven over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_servers import free_port
from tests.web import Browser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FLASK = [sys.executable, "-m", "flask", "--app", str(EXAMPLES / "quickstart_flask.py"), "run", "--host", "127.0.0.1", "--port"]
TORNADO_FLAGS = ["--session-redis=memory://", "--session-cookie-secure=false", "--port"]
COMMANDS = {
    "tornado": [sys.executable, str(EXAMPLES / "quickstart_tornado.py"), *TORNADO_FLAGS],
    "coroutine": [sys.executable, str(EXAMPLES / "quickstart_coroutine.py"), *TORNADO_FLAGS],
    "flask": FLASK,
}


def first_answer(browser: Browser, process: subprocess.Popen[bytes], log: Path, seconds: float = 15) -> str:
    """The first page of the freshly started app, retrying until it accepts connections."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"the quick start exited with code {process.returncode}:\n{log.read_text()}")
        try:
            response = browser.get("/", timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the quick start did not accept connections within {seconds}s:\n{log.read_text()}")
            time.sleep(0.05)
            continue
        assert response.status == 200, response.text
        return response.text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_quick_start_counts_per_browser(name: str, tmp_path: Path) -> None:
    """Each visit of one browser adds one to its count and its visits; another browser starts at 1."""
    port = free_port()
    command = COMMANDS[name]
    command = [*command[:-1], f"{command[-1]}={port}"] if name != "flask" else [*command, str(port)]
    log = tmp_path / "app.log"
    # Flask reads FLASK_SESSION_* through app.config.from_prefixed_env(); its SESSION_COOKIE_SECURE is off by default
    env = {**os.environ, "FLASK_SESSION_REDIS": "memory://"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        alice = Browser(f"http://127.0.0.1:{port}")
        assert first_answer(alice, process, log) == "count 1, visits 1\n"
        assert alice.get("/").text == "count 2, visits 2\n"
        assert Browser(f"http://127.0.0.1:{port}").get("/").text == "count 1, visits 1\n"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
