"""Is each speed trick in the library worth it? Instructions per request with and without it.

    python bench/tricks.py [--requests 500] [--write]

The project keeps a speed trick that makes code harder to read only where measuring it alone
shows at least 1% on a benchmark page (design.md). For each trick this runs the same page
in-process (a Tornado app and a keep-alive client on one event loop, against a redis-server it
starts on a free loopback port) under valgrind's callgrind, once as the library ships and once
with the trick undone by a patch applied at start-up, and counts the instructions per request:
``(total for N + 100 requests - total for 100 requests) / N``, so start-up and warm-up cancel.
Instruction counts, unlike timings, do not depend on what else the machine is doing.

``--write`` puts the table into bench/results.md, between the markers bench/run.py keeps.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH, "results.md")
START, END = "<!-- tricks:start -->", "<!-- tricks:end -->"

#: name -> (page, what the trick is, the patch that undoes it: Python run before the app starts)
TRICKS = {
    "one command without a pipeline": (
        "attr3",
        "a read whose TTL this request has just refreshed is sent as one command, not as a "
        "one-command pipeline (redis_session.store.Store._send, redis_session.async_store.AsyncStore._send)",
        "import redis_session.pipelines as p, redis_session.store as s\n"
        "original = s.Store._send\n"
        "def always_pipeline(self, call):\n"
        "    if call.script in s.PIPELINES:\n"
        "        pipeline = self.client.pipeline(transaction=False)\n"
        "        for method, args in p.commands(call):\n"
        "            getattr(pipeline, method)(*args)\n"
        "        return p.reply(call, pipeline.execute(raise_on_error=False))\n"
        "    return original(self, call)\n"
        "s.Store._send = always_pipeline\n",
    ),
}

PAGES = '''
import asyncio, sys
import tornado.web, tornado.httpserver
from redis_session.tornado_session import SessionHandler

class Setup(SessionHandler):
    def get(self):
        self.session.update({"a": "alice", "b": "bob", "c": "carol", "count": 1})
        self.write("ok")

class Attr3(SessionHandler):
    def get(self):
        self.write(f"{self.session.a.str} {self.session.b.str} {self.session.c.str}")

class Counter(SessionHandler):
    def get(self):
        count = self.session.count.int
        self.session.count = count + 1
        self.write(f"count: {count + 1}")

class Anonymous(SessionHandler):
    def get(self):
        self.write(f"count: {self.session.count.int}")

PAGES = {"attr3": Attr3, "counter": Counter, "anonymous": Anonymous}

async def request(reader, writer, path, cookie):
    writer.write(f"GET {path} HTTP/1.1\\r\\nHost: bench\\r\\n".encode()
                 + (f"Cookie: {cookie}\\r\\n".encode() if cookie else b"") + b"\\r\\n")
    await writer.drain()
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    lines = head.split(b"\\r\\n")
    length = int(next(line for line in lines if line.lower().startswith(b"content-length")).split(b":")[1])
    await reader.readexactly(length)
    cookies = [line.split(b":", 1)[1].split(b";")[0].strip().decode() for line in lines if line.lower().startswith(b"set-cookie")]
    return cookies[0] if cookies else None

async def main(page, redis_url, count):
    app = tornado.web.Application([("/", PAGES[page]), ("/setup", Setup)], cookie_secret="bench" * 8,
                                  redis_session={"redis": redis_url, "cookie_secure": False, "redis_prefix": "tricks"})
    server = tornado.httpserver.HTTPServer(app)
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cookie = None if page == "anonymous" else await request(reader, writer, "/setup", None)
    for _ in range(count):
        await request(reader, writer, "/", cookie)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def instructions(workdir: str, page: str, redis_url: str, count: int, patch: str) -> int:
    """Instructions of one run of ``page`` served ``count`` times, with ``patch`` applied first."""
    script = os.path.join(workdir, "page.py")
    with open(script, "w") as handle:
        handle.write(patch + "\n" + PAGES)
    output = os.path.join(workdir, "callgrind.out")
    environment = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}", sys.executable, script, page,
                    redis_url, str(count)], check=True, capture_output=True, env=environment)
    with open(output) as handle:
        totals = re.search(r"^(?:summary|totals): (\d+)", handle.read(), re.MULTILINE)
    if totals is None:
        raise RuntimeError("callgrind wrote no totals")
    return int(totals.group(1))


def per_request(workdir: str, page: str, redis_url: str, requests: int, patch: str = "") -> float:
    return (instructions(workdir, page, redis_url, requests + 100, patch)
            - instructions(workdir, page, redis_url, 100, patch)) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="measured requests per run (default 500)")
    parser.add_argument("--write", action="store_true", help="put the table into bench/results.md")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install -y valgrind)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        redis_server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            redis_url = f"redis://127.0.0.1:{port}/0"
            rows = ["| trick | page | with it | without it | saves |", "|---|---|---|---|---|"]
            for name, (page, description, patch) in TRICKS.items():
                kept = per_request(workdir, page, redis_url, options.requests)
                undone = per_request(workdir, page, redis_url, options.requests, patch)
                saving = (undone - kept) / undone * 100
                rows.append(f"| {name}: {description} | {page} | {kept / 1e6:.3f} M | {undone / 1e6:.3f} M | {saving:.1f}% |")
                print(rows[-1], flush=True)
        finally:
            redis_server.terminate()
            redis_server.wait()
    section = "\n".join([
        START,
        "## Speed tricks, each measured alone",
        "",
        f"Command: `python bench/tricks.py --requests {options.requests} --write` "
        f"({time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}). Instructions per request "
        "of the whole process (app and client) under callgrind; a trick stays only if it saves 1% or more.",
        "",
        *rows,
        END,
    ])
    if options.write:
        text = open(RESULTS).read() if os.path.exists(RESULTS) else ""
        if START in text:
            text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        with open(RESULTS, "w") as handle:
            handle.write(text)
        print(f"written to {os.path.relpath(RESULTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
