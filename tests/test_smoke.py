"""A first end-to-end check that the counter works through Tornado on both stores."""

from redis_session.tornado_session import SessionHandler
from tests.conftest import app_settings


class Counter(SessionHandler):
    def get(self) -> None:
        count = self.session.count.int
        self.session.count = count + 1
        self.write(str(self.session.count.int))


def test_counter_counts_per_browser(serve, store_url, prefix):
    """Each browser gets its own counter that survives between requests."""
    server = serve([("/", Counter)], redis_session=app_settings(store_url, prefix))
    alice, bob = server.browser(), server.browser()
    assert [alice.get().text for _ in range(3)] == ["1", "2", "3"]
    assert bob.get().text == "1"
