"""What a connection that dies after a command was sent does to each kind of session operation.

Through a proxy that lets the command reach a real redis-server but loses its reply: an
operation that is not idempotent (``incr``, ``flash``, ``flashes``) is never sent again (it may
have run, and a second run would count twice or pop twice) and the request gets a 503; reads and
plain writes are sent once more on a fresh connection, and only once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_session.errors import SessionUnavailableError
from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from tests.conftest import RecordingCookie
from tests.redis_servers import RedisServer, ReplyDroppingProxy
from tests.support import TestStores

pytestmark = pytest.mark.redis_server


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ReplyDroppingProxy]:
    proxy = ReplyDroppingProxy(redis_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def session(proxy: ReplyDroppingProxy, registry: TestStores, prefix: str) -> Session:
    """A session through the proxy, already created, its connection open and every script it
    uses loaded (so the next command sent is the operation itself, not SCRIPT LOAD)."""
    settings = SessionSettings(redis_url=proxy.url, prefix=prefix)
    created = Session(registry.store_for(settings), settings, None, RecordingCookie())
    created.incr("warm-up")
    created.flash("warm-up")
    created.flashes()
    created.count = 10
    return created


def stored(redis_server: RedisServer, session: Session, name: str) -> bytes:
    return redis_server.client().hget(session_key(session._core.settings.prefix, session.session_id), name)


def test_an_incr_whose_reply_is_lost_is_not_sent_again(session, proxy, redis_server):
    """incr() whose reply is lost raises SessionUnavailableError (a 503) and the counter went up exactly once."""
    proxy.drop_next_replies(1)
    with pytest.raises(SessionUnavailableError):
        session.incr("count")
    assert stored(redis_server, session, "count") == b"11"
    assert session.incr("count") == 12


def test_a_flash_whose_reply_is_lost_is_not_queued_twice(session, proxy, redis_server):
    """A flash() whose reply is lost is not queued twice."""
    proxy.drop_next_replies(1)
    with pytest.raises(SessionUnavailableError):
        session.flash("Saved")
    assert session.flashes() == [("message", "Saved")]


def test_a_flashes_whose_reply_is_lost_is_not_sent_again(session, proxy):
    """flashes() whose reply is lost raises SessionUnavailableError (a 503): the messages were
    taken on the server, and a silent retry would have answered [] as if there were none."""
    session.flash("Saved")
    proxy.drop_next_replies(1)
    with pytest.raises(SessionUnavailableError):
        session.flashes()
    assert session.flashes() == []


def test_a_read_whose_reply_is_lost_is_sent_once_more(session, proxy):
    """A read whose reply is lost is retried once on a new connection and succeeds."""
    proxy.drop_next_replies(1)
    assert session.count.int == 10


def test_a_write_whose_reply_is_lost_is_sent_once_more(session, proxy, redis_server):
    """A plain write is idempotent: after a lost reply it is sent once more and lands once."""
    proxy.drop_next_replies(1)
    session.name = "alice"
    assert stored(redis_server, session, "name") == b"alice"


def test_a_read_is_retried_only_once(session, proxy):
    """A read that loses its reply twice in a row gives up with SessionUnavailableError (a 503)."""
    proxy.drop_next_replies(2)
    with pytest.raises(SessionUnavailableError):
        session.get("count")
    assert session.count.int == 10


def test_scripts_dropped_by_redis_are_loaded_again_and_run_once(session, redis_server):
    """After SCRIPT FLUSH (as after a restart or failover) incr reloads its script and counts exactly once."""
    client = redis_server.client()
    client.script_flush()
    client.close()
    assert session.incr("count") == 11
    assert stored(redis_server, session, "count") == b"11"
