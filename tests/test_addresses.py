"""Store URLs: one splitting rule for parsing cluster/sentinel URLs and for naming any store URL in
messages (never with its password), and every malformed URL refused at startup by name."""

from __future__ import annotations

import pytest

from redis_session.addresses import NodesAddress, describe_url, parse_nodes_url, split_url, store_url_problems
from redis_session.errors import ConfigurationError
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests.support import memory_client

SECRET = "hunter2"


# -- what a good URL means ----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "nodes"), [
    ("redis+cluster://10.0.0.1:7000", (("10.0.0.1", 7000),)),
    ("redis+cluster://a:7000,b:7001,c", (("a", 7000), ("b", 7001), ("c", 6379))),
    ("redis+cluster://[::1]:7000,[fe80::2]", (("::1", 7000), ("fe80::2", 6379))),
    ("redis+cluster://a:7000/", (("a", 7000),)),
    ("redis+cluster://a:7000/0", (("a", 7000),)),
    ("REDIS+CLUSTER://A:7000", (("A", 7000),)),
    ("redis+sentinel://s1,s2:26380,[::1]/mymaster", (("s1", 26379), ("s2", 26380), ("::1", 26379))),
])
def test_hosts_are_read_with_their_ports(url: str, nodes: tuple[tuple[str, int], ...]) -> None:
    """Several hosts, IPv6 addresses in brackets, and the default port (6379, 26379 for sentinels)."""
    assert parse_nodes_url(url).nodes == nodes


@pytest.mark.parametrize(("url", "username", "password"), [
    ("redis+cluster://:secret@h:7000", None, "secret"),
    ("redis+cluster://app:secret@h:7000", "app", "secret"),
    ("redis+cluster://app@h:7000", "app", None),
    ("redis+cluster://:p@ss:w@rd@h:7000", None, "p@ss:w@rd"),  # "@" and ":" need no encoding
    ("redis+cluster://:a%2Fb%3Fc%23d%25@h:7000", None, "a/b?c#d%"),
    ("redis+cluster://us%40er:pa%20ss@h:7000", "us@er", "pa ss"),
    ("redis+cluster://:a+b@h:7000", None, "a+b"),  # "+" is a plus, not a space
])
def test_data_node_credentials_are_percent_decoded(url: str, username: str | None, password: str | None) -> None:
    """The user and password before '@' are the data nodes', percent-decoded."""
    address = parse_nodes_url(url)
    assert (address.username, address.password) == (username, password)
    assert address.connection_options().get("password") == password


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://s1:26379/mymaster", ("mymaster", 0, None, None, None)),
    ("redis+sentinel://s1:26379/mymaster/", ("mymaster", 0, None, None, None)),
    ("redis+sentinel://s1:26379/mymaster/3", ("mymaster", 3, None, None, None)),
    ("redis+sentinel://s1:26379/my%20master/3/", ("my master", 3, None, None, None)),
    ("redis+sentinel://:data@s1:26379/mymaster?sentinel_password=p@ss%26x",
     ("mymaster", 0, "data", None, "p@ss&x")),
    ("redis+sentinel://s1/mymaster?sentinel_username=watcher&sentinel_password=s%2F1",
     ("mymaster", 0, None, "watcher", "s/1")),
])
def test_sentinel_service_database_and_sentinel_credentials(
        url: str, expected: tuple[str, int, str | None, str | None, str | None]) -> None:
    """The service name and database come from the path; sentinel_username/sentinel_password are the
    sentinels' own credentials, kept apart from the data nodes' password."""
    address = parse_nodes_url(url)
    assert (address.service_name, address.db, address.password, address.sentinel_username,
            address.sentinel_password) == expected
    assert address.sentinel_options().get("password") == expected[4]
    assert address.connection_options().get("password") == expected[2]


def test_tls_schemes_ask_for_tls() -> None:
    """rediss+cluster:// and rediss+sentinel:// turn TLS on for the nodes and the sentinels."""
    assert parse_nodes_url("rediss+cluster://h:7000").connection_options() == {"ssl": True}
    sentinel = parse_nodes_url("rediss+sentinel://h/m")
    assert sentinel.tls and sentinel.sentinel_options() == {"ssl": True}
    assert parse_nodes_url("redis+cluster://h:7000") == NodesAddress("cluster", (("h", 7000),), None, None, False)


# -- what is refused --------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "phrase"), [
    ("redis+cluster://", "no host"),
    ("redis+cluster://?x=1", "no host"),
    ("redis+cluster://a:7000,,b:7001", "host entry 2 of 3 is empty"),
    ("redis+cluster://a:7000,", "is empty"),
    ("redis+cluster://a:0", "port 0 of 'a:0' is out of range"),
    ("redis+cluster://a:65536", "port 65536 of 'a:65536' is out of range"),
    ("redis+cluster://a:", "is not a number"),
    ("redis+cluster://a:70x", "is not a number"),
    ("redis+cluster://::1:7000", "IPv6 address in brackets"),
    ("redis+cluster://[::1:7000", "[IPv6 address]:port"),
    ("redis+cluster://[nothost]:7000", "no IPv6 address"),
    ("redis+cluster://a:7000/1", "database 0 only"),
    ("redis+cluster://a:7000/0/x", "database 0 only"),
    ("redis+cluster://a:7000?readonly=1", "unknown option 'readonly' (a redis+cluster:// URL takes none)"),
    ("redis+cluster://a:7000#frag", "fragment"),
    ("redis+sentinel://s1:26379", "no service name"),
    ("redis+sentinel://s1:26379/", "no service name"),
    ("redis+sentinel://s1:26379//0", "no service name"),
    ("redis+sentinel://s1:26379/mymaster/-1", "database '-1' must be a whole number >= 0"),
    ("redis+sentinel://s1:26379/mymaster/one", "database 'one' must be a whole number"),
    ("redis+sentinel://s1:26379/mymaster/0/extra", "unexpected path after the database: '/extra'"),
    ("redis+sentinel://s1/mymaster?sentinel_pasword=x", "unknown option 'sentinel_pasword' (known: sentinel_password"),
    ("redis+sentinel://s1/mymaster?sentinel_password", "has no value"),
    ("redis+sentinel://s1/mymaster?sentinel_password=a&sentinel_password=b", "given twice"),
    ("redis+cluster://:a/b@h:7000", "must be percent-encoded"),
    ("redis+cluster://:a?b@h:7000", "must be percent-encoded"),
    ("redis+cluster://:a#b@h:7000", "must be percent-encoded"),
    ("redis://h:6379", "not a cluster or sentinel URL"),
])
def test_malformed_urls_are_refused_saying_what_is_wrong(url: str, phrase: str) -> None:
    """Every part that used to be ignored or misread is refused with a message naming it."""
    with pytest.raises(ConfigurationError) as caught:
        parse_nodes_url(url)
    assert phrase in str(caught.value)
    assert str(caught.value).count("session-redis: '") == len(caught.value.problems)


@pytest.mark.parametrize("url", [
    f"redis+cluster://:{SECRET}@a:0",
    f"redis+cluster://app:{SECRET}@a:7000/5",
    f"redis+cluster://:{SECRET}/x@a:7000",
    f"redis+cluster://:{SECRET}#x@a:7000",
    f"redis+cluster://:{SECRET}?x@a:7000",
    f"redis+cluster://app:{SECRET}",  # "@host" forgotten: the password looks like a port
    f"redis+sentinel://:{SECRET}@s1/mymaster/x?sentinel_password={SECRET}",
    f"redis+sentinel://s1/mymaster?sentinel_password={SECRET}&bogus=1",
])
def test_a_refused_url_is_named_without_its_password(url: str) -> None:
    """The message about a bad URL names it, but never shows a password."""
    with pytest.raises(ConfigurationError) as caught:
        parse_nodes_url(url)
    assert SECRET not in str(caught.value)
    assert "session-redis: 'redis+" in str(caught.value)


@pytest.mark.parametrize(("url", "phrase"), [
    ("redis+cluster://a:7000/3", "database 0 only"),
    ("redis+sentinel://s1:26379", "no service name"),
    ("redis://h:0/0", "out of range"),
    ("redis://h:6379/abc", "database '/abc' must be a whole number"),
    ("redis://h:6379/-1", "whole number"),
    ("redis://a:1,b:2/0", "names one server"),
    ("redis://:a/b@h:6379/0", "percent-encoded"),
    ("unix://:a#b@/tmp/redis.sock", "percent-encoded"),
])
def test_settings_refuse_a_bad_store_url_at_startup(url: str, phrase: str) -> None:
    """Building settings with a malformed store URL raises ConfigurationError at once (startup),
    naming the setting, instead of failing on the first request."""
    with pytest.raises(ConfigurationError) as caught:
        SessionSettings.from_mapping({"redis": url}, lambda name: f"SESSION_{name.upper()}")
    (problem, *_) = caught.value.problems
    assert problem.startswith("SESSION_REDIS: '") and phrase in problem


@pytest.mark.parametrize("url", [
    "redis://localhost:6379/0", "redis://localhost", "redis://", "redis://:p@ss@host:1/2", "rediss://[::1]:6380",
    "redis://h:6379?db=2&ssl_cert_reqs=none", "unix:///tmp/redis.sock?db=1&password=p@ss", "memory://", "memory://x",
    "redis+cluster://:a%2Fb@h:7000", "redis+sentinel://:p@ss@s1,s2/mymaster/2?sentinel_password=p@ss",
    "unix:///run/redis/redis-server@6379.sock", "unix://app:p@ss@/run/redis@1.sock?db=2",
])
def test_good_store_urls_have_no_problems(url: str) -> None:
    """Well-formed URLs of every scheme pass (nothing is connected)."""
    assert store_url_problems(url) == []
    assert SessionSettings.from_mapping({"redis": url}).redis_url == url


def test_a_bad_scheme_is_named_without_its_password() -> None:
    """An unknown scheme is reported with the URL's password hidden."""
    with pytest.raises(ConfigurationError) as caught:
        SessionSettings.from_mapping({"redis": f"http://:{SECRET}@host:6379"})
    assert "not a store URL" in str(caught.value) and SECRET not in str(caught.value)


# -- how a URL is shown ---------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://:{SECRET}@host:1234/0", "redis://host:1234/0"),
    (f"rediss://user:{SECRET}@host/2?ssl_cert_reqs=none", "rediss://host/2"),
    (f"redis://host:1234/0?password={SECRET}", "redis://host:1234/0"),
    (f"unix://:{SECRET}@/tmp/redis.sock?db=0&password={SECRET}", "unix:///tmp/redis.sock"),
    (f"redis+cluster://:{SECRET}@10.0.0.1:7000,[::1]:7001", "redis+cluster://10.0.0.1:7000,[::1]:7001"),
    (f"redis+sentinel://u:{SECRET}@s1,s2:26380/mymaster/1?sentinel_password={SECRET}",
     "redis+sentinel://s1,s2:26380/mymaster/1"),
    (f"redis+sentinel://s1/mymaster?sentinel_password=a@{SECRET}", "redis+sentinel://s1/mymaster"),
    (f"redis+cluster://:{SECRET}@@h:7000", "redis+cluster://h:7000"),
    (f"redis+cluster://:a/{SECRET}@h:7000", "redis+cluster://***@h:7000"),
    (f"redis+cluster://:a#{SECRET}@h:7000", "redis+cluster://***@h:7000"),
    (f"redis+sentinel://:a?{SECRET}@h:26379/mymaster?sentinel_password={SECRET}", "redis+sentinel://***@h:26379/mymaster"),
    (f"redis://:a?b={SECRET}@h:6379/0", "redis://***@h:6379/0"),
    (f"redis+cluster://app:{SECRET}", "redis+cluster://***"),
    ("unix:///run/redis/redis-server@6379.sock?db=1", "unix:///run/redis/redis-server@6379.sock"),
    (f"unix://:a/{SECRET}@/tmp/redis.sock", "unix://***@/tmp/redis.sock"),
    ("memory://name", "memory://name"),
    (f"localhost:6379?password={SECRET}", "localhost:6379"),
])
def test_describe_url_never_shows_a_password(url: str, shown: str) -> None:
    """Every URL form (well-formed or not) is named without its password, as the parser splits it."""
    assert describe_url(url) == shown
    assert SECRET not in describe_url(url)


def test_a_store_whose_password_holds_a_slash_is_named_without_it() -> None:
    """The store name used in 503 log lines hides a password even when it broke the URL's split."""
    client = memory_client("memory://addresses-test")
    try:
        assert Store(f"redis+cluster://:a/{SECRET}@h:7000", client).name == "redis+cluster://***@h:7000"
    finally:
        client.close()


@pytest.mark.parametrize(("url", "parts"), [
    ("redis+cluster://:a@b@h:1,h:2/0?x=1#f", ("redis+cluster", ":a@b", "h:1,h:2", "/0", "x=1", "f")),
    ("redis://h?db=1", ("redis", None, "h", "", "db=1", None)),
    ("unix:///tmp/s.sock", ("unix", None, "", "/tmp/s.sock", "", None)),
    ("redis+sentinel://s/m?sentinel_password=p@ss", ("redis+sentinel", None, "s", "/m", "sentinel_password=p@ss", None)),
])
def test_the_host_part_ends_at_the_first_slash_question_mark_or_hash(url: str, parts: list[str | None]) -> None:
    """The one rule: hosts run to the first '/', '?' or '#'; the user part to the hosts' last '@'."""
    split = split_url(url)
    assert (split.scheme, split.userinfo, split.hosts, split.path, split.query, split.fragment) == tuple(parts)
