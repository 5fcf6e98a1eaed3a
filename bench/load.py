"""A small HTTP/1.1 keep-alive load generator (used by bench/run.py when wrk is not installed).

    python bench/load.py http://127.0.0.1:8001/ --connections 16 --duration 5 [--cookies keep|none]
                         [--cookie-file FILE]

Each connection is one client with its own cookie jar (``keep``: it stores every Set-Cookie and
sends the cookies back; ``none``: it never sends a cookie). With ``--cookie-file`` connection i
starts with line i of the file as its Cookie header. Each connection sends its next request as
soon as the previous response is complete (closed loop, like wrk). It prints one JSON line:
``requests`` completed within the duration, ``duration_s``, ``errors`` and ``quantiles`` (the
latency in microseconds at 0.1%, 0.2%, ... 99.9%, then the maximum), the same shape bench/run.py
reads from wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

QUANTILE_STEPS = 999  # 0.1% .. 99.9%


class Generator:
    def __init__(self, host: str, port: int, path: str, cookies: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.cookies = cookies
        self.latencies: list[float] = []
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.stopping = False
        self.end = 0.0

    def request_bytes(self, jar: dict[str, str]) -> bytes:
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if jar and self.cookies != "none":
            lines.append("Cookie: " + "; ".join(f"{name}={value}" for name, value in jar.items()))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Client(asyncio.Protocol):
    """One keep-alive connection: send, wait for the whole response, record, send again."""

    def __init__(self, generator: Generator, jar: dict[str, str], closed: asyncio.Future) -> None:
        self.generator = generator
        self.jar = jar
        self.closed = closed
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started = 0.0
        self.request = generator.request_bytes(jar)
        self.waiting = False  # a request is out and its response not complete yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.waiting = True
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        # A server may close after a complete response (Connection: close, HTTP/1.0): the client
        # reconnects and that is no error. Only a response cut short counts.
        if self.waiting and not self.generator.stopping:
            self.generator.errors["read"] += 1
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            response = self.parse()
            if response is None:
                return
            status, set_cookies, close = response
            self.waiting = False
            now = time.perf_counter()
            generator = self.generator
            if now <= generator.end:
                generator.latencies.append(now - self.started)
                if not 200 <= status < 400:
                    generator.errors["status"] += 1
            if set_cookies and generator.cookies != "none":
                for header in set_cookies:
                    name, _, rest = header.partition("=")
                    value = rest.split(";", 1)[0]
                    if "max-age=0" in rest.lower():
                        self.jar.pop(name.strip(), None)
                    else:
                        self.jar[name.strip()] = value
                self.request = generator.request_bytes(self.jar)
            if generator.stopping or now > generator.end or close:
                assert self.transport is not None
                self.transport.close()
                return
            self.send()

    def parse(self) -> tuple | None:
        """One complete response off the buffer: (status, [Set-Cookie values], close?), or None."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        version, status_text = head[0].split(" ", 2)[:2]
        status = int(status_text)
        length = 0
        chunked = False
        close = version == "HTTP/1.0"  # HTTP/1.0 closes unless it says keep-alive
        set_cookies = []
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "set-cookie":
                set_cookies.append(value)
            elif name == "connection":
                close = value.lower() != "keep-alive" if version == "HTTP/1.0" else value.lower() == "close"
        body_start = head_end + 4
        if chunked:
            position = body_start
            while True:
                line_end = self.buffer.find(b"\r\n", position)
                if line_end < 0:
                    return None
                size = int(bytes(self.buffer[position:line_end]).split(b";")[0], 16)
                position = line_end + 2 + size + 2
                if len(self.buffer) < position:
                    return None
                if size == 0:
                    break
            del self.buffer[:position]
        else:
            if len(self.buffer) < body_start + length:
                return None
            del self.buffer[:body_start + length]
        return status, set_cookies, close


async def run(url: str, connections: int, duration: float, cookies: str, cookie_lines: list[str]) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    generator = Generator(host, port, path, cookies)
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    generator.end = begin + duration

    async def client(index: int) -> None:
        jar: dict[str, str] = {}
        if cookie_lines:
            name, _, value = cookie_lines[index % len(cookie_lines)].partition("=")
            jar[name] = value
        while not generator.stopping and time.perf_counter() < generator.end:
            closed: asyncio.Future = loop.create_future()
            try:
                await loop.create_connection(lambda closed=closed: Client(generator, jar, closed), host, port)
            except OSError:
                generator.errors["connect"] += 1
                await asyncio.sleep(0.05)
                continue
            remaining = generator.end - time.perf_counter() + 0.5
            try:
                await asyncio.wait_for(asyncio.shield(closed), max(remaining, 0.01))
            except asyncio.TimeoutError:
                return

    tasks = [asyncio.ensure_future(client(index)) for index in range(connections)]
    await asyncio.sleep(duration)
    generator.stopping = True
    await asyncio.wait(tasks, timeout=1.0)
    for task in tasks:
        task.cancel()
    elapsed = min(time.perf_counter(), generator.end) - begin
    return summarise(generator.latencies, elapsed, generator.errors)


def summarise(latencies: list[float], elapsed: float, errors: dict[str, int]) -> dict:
    ordered = sorted(latencies)
    quantiles: list[float] = []
    if ordered:
        for step in range(1, QUANTILE_STEPS + 1):
            index = min(len(ordered) - 1, int(len(ordered) * step / (QUANTILE_STEPS + 1)))
            quantiles.append(ordered[index] * 1e6)
        quantiles.append(ordered[-1] * 1e6)
    return {"requests": len(ordered), "duration_s": elapsed, "errors": errors, "quantiles": quantiles}


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP/1.1 keep-alive load generator with per-connection cookies")
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--cookies", choices=("keep", "none"), default="keep")
    parser.add_argument("--cookie-file", help="one 'name=value' per line; connection i starts with line i")
    arguments = parser.parse_args()
    lines: list[str] = []
    if arguments.cookie_file:
        with open(arguments.cookie_file, encoding="ascii") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    result = asyncio.run(run(arguments.url, arguments.connections, arguments.duration, arguments.cookies, lines))
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
