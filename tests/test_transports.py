"""The counter over every transport a plain Redis offers: a Unix socket and TLS (``rediss://``).

Each test starts its own redis-server listening only on that transport, so a passing test means
the session really travelled over it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.tornado_session import AsyncSessionHandler
from tests.conftest import RecordingCookie, app_settings
from tests.redis_servers import RedisServer, free_port, unavailable
from tests.support import TestStores
from tests.test_smoke import Counter

pytestmark = pytest.mark.redis_server


class UnixSocketRedis(RedisServer):
    """A redis-server on a Unix socket only (TCP port 0: no TCP listener at all)."""

    def __init__(self, directory: Path) -> None:
        self.socket_path = directory / "redis.sock"
        super().__init__(["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"])

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def client(self) -> redis.Redis:
        # RESP2: redis-py 8.0.0 fails every RESP3 (its default) connection over a Unix socket,
        # trying to turn on maintenance notifications for a connection that has no host
        # (ValueError "Cannot enable maintenance notifications for connection object that doesn't
        # have a host attribute"). This client only checks what the session wrote.
        return redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5, protocol=2)


class TlsRedis(RedisServer):
    """A redis-server that speaks TLS only, with a throwaway CA and server certificate."""

    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.crt"
        make_certificates(directory)
        self.tls_port = free_port()
        super().__init__([
            "--port", "0", "--tls-port", str(self.tls_port),
            "--tls-cert-file", str(directory / "server.crt"), "--tls-key-file", str(directory / "server.key"),
            "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
        ])

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0?ssl_ca_certs={self.ca}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.tls_port, ssl=True, ssl_ca_certs=str(self.ca), socket_timeout=5)


#: The openssl config for the throwaway CA and server certificate, with the extensions a strict
#: verifier demands (Python 3.13's default context sets ``VERIFY_X509_STRICT``): a CA needs
#: ``basicConstraints`` critical CA:TRUE and ``keyUsage`` keyCertSign; a leaf it issues needs an
#: ``authorityKeyIdentifier``. Nothing is read from the machine's own openssl.cnf.
CERTIFICATE_CONFIG = """\
[req]
distinguished_name = subject
prompt = no

[subject]
CN = test-ca

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 it signed (openssl on the command line), both
    accepted by a strict verifier (see :data:`CERTIFICATE_CONFIG`)."""
    def openssl(*arguments: str) -> None:
        try:
            subprocess.run(["openssl", *arguments], cwd=directory, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as error:
            output = getattr(error, "stderr", b"") or b""
            unavailable(f"openssl could not make test certificates: {error} {output.decode(errors='replace')}")

    (directory / "openssl.cnf").write_text(CERTIFICATE_CONFIG)
    openssl("req", "-config", "openssl.cnf", "-x509", "-extensions", "ca", "-newkey", "rsa:2048", "-nodes",
            "-days", "1", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-config", "openssl.cnf", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.crt")


@pytest.fixture(params=["unix", "tls"])
def transport_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = (UnixSocketRedis if request.param == "unix" else TlsRedis)(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def test_sessions_work_over_the_transport(transport_server, registry: TestStores, prefix):
    """A session written and read through unix:// or rediss:// lands in that server, with its TTL."""
    settings = SessionSettings.from_mapping({"redis": transport_server.url, "redis-prefix": prefix})
    session = Session(registry.store_for(settings), settings, None, RecordingCookie())
    session.count = 1
    assert session.incr("count") == 2
    client = transport_server.client()
    try:
        key = session_key(prefix, session.session_id)
        assert client.hget(key, "count") == b"2"
        assert 0 < client.ttl(key) <= settings.expire
    finally:
        client.close()


class AsyncCounter(AsyncSessionHandler):
    async def get(self) -> None:
        count = (await self.session.count).int
        await self.session.set("count", count + 1)
        self.write(str((await self.session.count).int))


def test_the_counter_runs_over_the_transport(serve, transport_server, prefix):
    """The README counter counts per browser over unix:// and rediss://, with the blocking
    handler and with the coroutine one (redis.asyncio) on the same sessions."""
    server = serve([("/", Counter), ("/async", AsyncCounter)], redis_session=app_settings(transport_server.url, prefix))
    browser = server.browser()
    assert [browser.get("/").text for _ in range(3)] == ["1", "2", "3"]
    assert [browser.get("/async").text for _ in range(2)] == ["4", "5"]
    assert browser.get("/").text == "6"
