"""A loopback TCP proxy that adds a fixed delay to every chunk, in both directions.

    python bench/latency_proxy.py --target 127.0.0.1:6390 --delay-ms 2 [--port 0]

It prints ``listening <port>`` once it accepts connections. Each direction of each connection
is a FIFO: a chunk read at time t is written at t + delay, after every chunk read before it, so
byte order is preserved and pipelined traffic is delayed, not serialised (the proxy adds
latency, not a throughput cap). With ``--delay-ms 2`` a Redis round trip costs >= 4 ms more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal


async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            item = await queue.get()
            if item is None:
                break
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    delivering = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait(None)
    with contextlib.suppress(ConnectionError, OSError):
        await delivering


async def serve(listen_host: str, listen_port: int, target: tuple[str, int], delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                forward(client_reader, server_writer, delay),
                forward(server_reader, client_writer, delay),
            )
        finally:
            for writer in (client_writer, server_writer):
                writer.close()

    server = await asyncio.start_server(handle, listen_host, listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="delay added to each chunk, each way")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: pick a free port (printed)")
    arguments = parser.parse_args()
    host, _, port = arguments.target.rpartition(":")
    asyncio.run(serve(arguments.host, arguments.port, (host or "127.0.0.1", int(port)), arguments.delay_ms / 1000))


if __name__ == "__main__":
    main()
