"""The admin command (``python -m redis_session``, ``redis-session``) run as a user runs it, against
a spawned standalone redis-server and a spawned 3-master cluster: output for humans and
``--json`` (errors too), sessions named by handle (never by id), progress and exit codes
(0 done, 1 no such session, 2 usage, 3 store unavailable, 4 configuration, 5 bug)."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import redis_session.__main__ as command_module
import redis_session.inventory as inventory_module
from redis_session.__main__ import run
from redis_session.command_line import split_arguments
from redis_session.inventory import Inventory, nearest_rank
from redis_session.protocol import session_handle, session_key, user_index_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests.redis_servers import RedisServer, free_port
from tests.support import RecordingCookie

REPOSITORY = Path(__file__).resolve().parent.parent


class Terminal(io.StringIO):
    """A stderr that says it is a terminal (the command shows progress only on one)."""

    def isatty(self) -> bool:
        return True


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def admin_command(url: str, prefix: str, *arguments: str, err: io.StringIO | None = None) -> Result:
    """``redis-session --session-redis=URL --session-redis-prefix=PREFIX ARGUMENTS`` in process."""
    out, err = io.StringIO(), err if err is not None else io.StringIO()
    code = run([f"--session-redis={url}", f"--session-redis-prefix={prefix}", *arguments], out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


def subprocess_command(*arguments: str, executable: list[str] | None = None) -> Result:
    """The command as a separate process: ``python -m redis_session ARGUMENTS``."""
    finished = subprocess.run(
        [*(executable or [sys.executable, "-m", "redis_session"]), *arguments],
        capture_output=True, text=True, timeout=60, cwd=REPOSITORY, check=False,
    )
    return Result(finished.returncode, finished.stdout, finished.stderr)


def assert_one_line_failure(result: Result, code: int, *phrases: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.err and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("redis-session: "), result.err
    for phrase in phrases:
        assert phrase in result.err, result.err


class Sessions:
    """Writes sessions under one prefix of one store, as the library does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"t{uuid.uuid4().hex[:12]}"
        self.settings = SessionSettings(redis_url=url, prefix=self.prefix, cookie_secure=False).replace()
        self.store: Store = Store.connect(self.settings)

    def run(self, *arguments: str, err: io.StringIO | None = None) -> Result:
        return admin_command(self.url, self.prefix, *arguments, err=err)

    def new(self, user: str | None = None, **fields: Any) -> str:
        session = Session(self.store, self.settings, None, RecordingCookie())
        session.update(fields or {"name": "alice"})
        if user is not None:
            session.bind_user(user)
        assert session.session_id is not None
        return session.session_id

    def bulk(self, count: int, ttl: int = 3600) -> list[str]:
        """``count`` session hashes written directly (fast), each with ``ttl``."""
        ids = [secrets.token_urlsafe(32) for _ in range(count)]
        pipeline = self.store.client.pipeline(transaction=False)
        for session_id in ids:
            pipeline.hset(session_key(self.prefix, session_id), "name", "bulk")
            pipeline.expire(session_key(self.prefix, session_id), ttl)
        pipeline.execute()
        return ids

    def key(self, session_id: str) -> str:
        return session_key(self.prefix, session_id)

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def admin_store_url(request: pytest.FixtureRequest) -> str:
    """A spawned standalone redis-server, or a spawned 3-master cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("shared_redis_cluster").url())
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def sessions(admin_store_url: str) -> Iterator[Sessions]:
    writer = Sessions(admin_store_url)
    yield writer
    writer.close()


@pytest.fixture
def standalone(redis_server: RedisServer) -> Iterator[Sessions]:
    writer = Sessions(redis_server.url)
    yield writer
    writer.close()


# -- stats ---------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_stats_counts_every_session_on_every_master(shared_redis_cluster: Any) -> None:
    """stats --json on 1000 sessions spread over 3 masters reports 1000 sessions on 3 primaries."""
    writer = Sessions(shared_redis_cluster.url())
    try:
        writer.bulk(1000, ttl=600)
        report = writer.run("stats", "--json").json()
    finally:
        writer.close()
    assert report["sessions"] == 1000 and report["primaries"] == 3
    assert report["ttl_seconds"]["min"] > 500 and report["ttl_seconds"]["max"] <= 600
    assert report["memory_bytes"] > 0 and report["memory_per_session"] > 0


def test_stats_reports_sessions_memory_and_ttl_spread(sessions: Sessions) -> None:
    """stats names the store (no password), counts the sessions and gives a nearest-rank p90."""
    sessions.bulk(1, ttl=100)
    sessions.bulk(1, ttl=200)
    report = sessions.run("stats", "--json").json()
    assert report["sessions"] == 2 and report["sessions_without_ttl"] == 0
    assert report["prefix"] == sessions.prefix and report["store"].startswith(sessions.url.split("://")[0])
    spread = report["ttl_seconds"]
    assert 95 <= spread["min"] <= 100 and 195 <= spread["p90"] <= 200 and spread["max"] == spread["p90"]


def test_stats_for_humans_aligns_its_lines_and_shows_ttls_as_durations(sessions: Sessions) -> None:
    """stats without --json prints one aligned "name  value" line each, TTLs as durations."""
    sessions.bulk(2, ttl=3700)
    lines = [re.match(r"(\S.*?)\s{2,}(\S.*)", line) for line in sessions.run("stats").out.splitlines()]
    values = {match[1]: match[2] for match in lines if match}
    assert values["sessions"] == "2" and values["TTL"].startswith("min 1h 1m")
    assert len({match.start(2) for match in lines if match}) == 1


@pytest.mark.parametrize(("values", "p90"), [([7], 7), ([1, 2], 2), ([1, 2, 3, 4, 5], 5), (list(range(1, 11)), 9),
                                              (list(range(1, 21)), 18), (list(range(1, 101)), 90)])
def test_p90_is_the_nearest_rank(values: list[int], p90: int) -> None:
    """The p90 TTL is the smallest value with 90% of the sessions at or below it, for small counts too."""
    assert nearest_rank(values, 0.9) == p90


def test_stats_counts_live_sessions_per_user(sessions: Sessions) -> None:
    """Per-user counts are the user's sessions that still exist; dead index entries and sign-ins in
    flight are reported apart."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    sessions.new(user=user)
    sessions.new(user=user)
    index = user_index_key(sessions.prefix, user)
    sessions.store.client.zadd(index, {"gone-session-id": 1.0, "pending:abc": 2.0})
    report = sessions.run("stats", "--json").json()
    assert report["sessions_per_user"] == {user: 2} and report["users"] == 1
    assert report["signins_in_flight"] == 1 and report["stale_index_entries"] == 1


def test_stats_sees_only_its_own_prefix_even_with_glob_characters(standalone: Sessions, redis_server: RedisServer) -> None:
    """A prefix holding '?' counts neither the sessions nor the users of a prefix it would match as a glob."""
    base = f"g{uuid.uuid4().hex[:8]}"
    mine, other = Sessions(redis_server.url), Sessions(redis_server.url)
    try:
        for writer, prefix in ((mine, base + "?"), (other, base + "x")):
            writer.prefix = prefix
            writer.settings = writer.settings.replace(prefix=prefix)
        mine.new(user="me")
        other.new(user="someone-else")
        other.bulk(3)
        report = mine.run("stats", "--json").json()
    finally:
        mine.close()
        other.close()
    assert report["sessions"] == 1 and report["sessions_per_user"] == {"me": 1}


# -- list, show, delete, revoke-user ---------------------------------------------------------------


def test_list_names_every_session_by_handle_and_list_user_only_theirs(sessions: Sessions) -> None:
    """list shows every session by handle (never its id) with its user, ISO 8601 creation time and
    TTL, in aligned columns or as JSON; list --user only that user's."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    bound = sessions.new(user=user)
    loose = sessions.bulk(5)
    rows = sessions.run("list", "--json").json()
    assert sorted(row["handle"] for row in rows) == sorted(session_handle(session_id) for session_id in [bound, *loose])
    assert {row["user"] for row in rows if row["handle"] == session_handle(bound)} == {user}
    assert all(row["ttl_seconds"] > 0 for row in rows)
    assert [row["created"] for row in rows if row["handle"] == session_handle(bound)][0].endswith("Z")
    text = sessions.run("list")
    assert text.code == 0 and text.out.endswith("(6 sessions)\n")
    header, *lines = text.out.splitlines()[:-1]
    assert header.split() == ["HANDLE", "USER", "CREATED", "TTL"]
    assert {line.index(user) for line in lines if user in line} == {header.index("USER")}  # aligned columns
    assert all(session_id not in text.out for session_id in [bound, *loose])
    mine = sessions.run("--json", "list", "--user", user).json()
    assert [row["handle"] for row in mine] == [session_handle(bound)] and mine[0]["user"] == user
    sessions.store.client.expire(sessions.key(bound), 90)  # as if the session had been idle
    assert 85 <= sessions.run("--json", "list", "--user", user).json()[0]["ttl_seconds"] <= 90  # what is left


def test_show_prints_every_field_and_a_missing_session_exits_1(sessions: Sessions) -> None:
    """show HANDLE prints a session's fields (bookkeeping included) and its TTL as a duration; an
    unknown handle exits 1 with one line."""
    session_id = sessions.new(name="alice", count=3)
    details = sessions.run("show", session_handle(session_id), "--json").json()
    assert details["fields"]["name"] == "alice" and details["fields"]["count"] == "3" and details["ttl_seconds"] > 0
    text = sessions.run("show", session_handle(session_id)).out
    assert "alice" in text and re.search(r"^ttl +(1d|23h 59m)", text, re.MULTILINE) and session_id not in text
    assert_one_line_failure(sessions.run("show", "f" * 64), 1, f"no session {'f' * 64!r}")
    for verb in ("show", "delete"):  # not a handle at all: a usage error, not "no such session"
        assert_one_line_failure(sessions.run(verb, "nothex"), 2, "is not a session handle")


def test_control_characters_in_user_ids_and_values_are_printed_escaped(standalone: Sessions) -> None:
    """User ids and field values come from an application's users: list and show print a
    terminal escape sequence, a newline or a right-to-left override escaped as repr() would, so
    they can neither rewrite the operator's screen nor forge a row; --json keeps the exact text."""
    user = "\x1b[31mevil\x1b[0m\nforged"
    handle = session_handle(standalone.new(user=user, note="\x1b[2Jhi\u202e"))
    assert [row["user"] for row in standalone.run("list", "--json").json()] == [user]
    listing = standalone.run("list").out
    shown = standalone.run("show", handle).out
    for text in (listing, shown, standalone.run("revoke-user", user).out):
        assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31mevil\\x1b[0m\\nforged" in listing and len(listing.splitlines()) == 3  # header, row, count
    assert "\\x1b[2Jhi\\u202e" in shown
    assert standalone.run("list", "--json").json() == []  # revoked above


def test_a_user_id_that_starts_with_a_dash_is_still_a_user_id(sessions: Sessions) -> None:
    """revoke-user takes a user id starting with '-' as the user id, not as an option."""
    sessions.new(user="-7")
    result = sessions.run("revoke-user", "-7", "--json")
    assert result.code == 0 and result.json() == {"user": "-7", "ended": 1}


def test_show_and_delete_say_what_a_key_that_is_not_a_session_holds(sessions: Sessions) -> None:
    """show and delete of a handle whose key is not a hash both exit 1, name its type and leave it alone."""
    key = sessions.key("not-a-hash")
    sessions.store.client.set(key, "x")
    for verb in ("show", "delete"):
        assert_one_line_failure(sessions.run(verb, session_handle("not-a-hash")), 1, "holds a string, not a session hash")
    assert sessions.store.client.get(key) == b"x"


def test_delete_ends_one_session_and_its_index_entry(sessions: Sessions) -> None:
    """delete HANDLE removes the session and its user-index entry; deleting it again exits 1."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    doomed, kept = sessions.new(user=user), sessions.new(user=user)
    result = sessions.run("delete", session_handle(doomed), "--json")
    assert result.code == 0 and result.json() == {"deleted": session_handle(doomed)}
    client = sessions.store.client
    assert client.exists(sessions.key(doomed)) == 0 and client.exists(sessions.key(kept)) == 1
    assert [member.decode() for member in client.zrange(user_index_key(sessions.prefix, user), 0, -1)] == [session_handle(kept)]
    assert_one_line_failure(sessions.run("delete", session_handle(doomed)), 1, "no session")


def test_revoke_user_ends_every_session_of_the_user(sessions: Sessions) -> None:
    """revoke-user ends all of a user's sessions and no one else's."""
    user = f"user-{uuid.uuid4().hex[:6]}"
    own = [sessions.new(user=user) for _ in range(3)]
    other = sessions.new(user=user + "-other")
    result = sessions.run("--json", "revoke-user", user)
    assert result.code == 0 and result.json() == {"user": user, "ended": 3}
    client = sessions.store.client
    assert not any(client.exists(sessions.key(session_id)) for session_id in own)
    assert client.exists(sessions.key(other)) == 1
    assert sessions.run("revoke-user", user).out == f"ended 0 session(s) of user {user}\n"


# -- purge -------------------------------------------------------------------------------------------


def test_purge_without_yes_refuses_and_deletes_nothing(sessions: Sessions) -> None:
    """purge without --yes exits 2 and leaves every session in place."""
    ids = sessions.bulk(3)
    assert_one_line_failure(sessions.run("purge"), 2, "--yes")
    assert sessions.run("stats", "--json").json()["sessions"] == len(ids)


def test_purge_deletes_only_keys_under_the_prefix(sessions: Sessions) -> None:
    """purge --yes deletes the prefix's sessions and user indexes, not another prefix's keys nor
    other keys of the same prefix."""
    sessions.bulk(20)
    sessions.new(user="u1")
    neighbour = Sessions(sessions.url)
    neighbour.prefix = sessions.prefix + "x"
    try:
        survivor = neighbour.bulk(1)[0]
        client = sessions.store.client
        client.set(f"{sessions.prefix}:other", "kept")
        result = sessions.run("purge", "--yes", "--json")
        assert result.code == 0 and result.json() == {"deleted_keys": 22}
        assert sessions.run("stats", "--json").json()["sessions"] == 0
        assert client.exists(neighbour.key(survivor)) == 1 and client.get(f"{sessions.prefix}:other") == b"kept"
    finally:
        neighbour.close()


# -- command line --------------------------------------------------------------------------------------


def test_json_goes_before_or_after_the_command(standalone: Sessions) -> None:
    """--json before the command and --json after it print the same JSON."""
    standalone.bulk(2)
    before, after = standalone.run("--json", "stats"), standalone.run("stats", "--json")
    assert before.code == after.code == 0
    assert before.json()["sessions"] == after.json()["sessions"] == 2
    assert not standalone.run("stats").out.startswith("{")


def test_session_flags_take_their_value_after_a_space(standalone: Sessions) -> None:
    """--session-redis URL (with a space) works like --session-redis=URL, anywhere on the line."""
    standalone.bulk(2)
    out, err = io.StringIO(), io.StringIO()
    code = run(["stats", "--session-redis", standalone.url, "--json", "--session-redis-prefix", standalone.prefix],
               out=out, err=err)
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["sessions"] == 2


@pytest.mark.parametrize(("arguments", "flags", "rest"), [
    (["--session-redis", "redis://h/1", "stats"], {"redis": "redis://h/1"}, ["stats"]),
    (["stats", "--session_redis_prefix=app"], {"redis-prefix": "app"}, ["stats"]),
    (["--session-cookie-secure", "list"], {"cookie-secure": "true"}, ["list"]),
    (["--session-cookie-secure", "false", "list"], {"cookie-secure": "false"}, ["list"]),
    (["show", "--json", "-abc"], {}, ["show", "--json", "--", "-abc"]),
    (["--config", "show", "delete", "-x"], {}, ["--config", "show", "delete", "--", "-x"]),
    (["list", "--", "--session-redis=x"], {}, ["list", "--", "--session-redis=x"]),
])
def test_session_flags_are_taken_out_wherever_they_are(arguments: list[str], flags: dict[str, str], rest: list[str]) -> None:
    """--session-* flags (dashes or underscores, value after '=' or a space) are the app's; ids
    that start with '-' stay ids."""
    assert split_arguments(arguments) == (flags, rest)


@pytest.mark.parametrize(("arguments", "phrase"), [
    ([], "COMMAND"),
    (["frobnicate"], "invalid choice"),
    (["--session-nonsense=1", "stats"], "unknown flag --session-nonsense"),
    (["stats", "--session-redis"], "--session-redis needs a value"),
    (["show"], "HANDLE"),
])
def test_usage_errors_exit_2(arguments: list[str], phrase: str) -> None:
    """A malformed command line exits 2 and says what is wrong (nothing is connected)."""
    err = io.StringIO()
    assert run(["--session-redis=redis://127.0.0.1:1/0", *arguments], out=io.StringIO(), err=err) == 2
    assert phrase in err.getvalue() and "Traceback" not in err.getvalue()


def test_help_exits_0() -> None:
    """--help prints the usage and the exit codes on stdout and exits 0."""
    out = io.StringIO()
    assert run(["--help"], out=out, err=io.StringIO()) == 0
    assert "exit codes" in out.getvalue() and "stats" in out.getvalue()


# -- exit codes for configuration and store problems -----------------------------------------------


@pytest.mark.parametrize(("flags", "phrases"), [
    (["--session-expire=abc"], ["--session-expire", "whole number"]),
    (["--session-redis=redis+cluster://:hunter2@127.0.0.1:7000/3"], ["database 0 only"]),
    (["--session-redis=redis+sentinel://127.0.0.1:26379"], ["service name"]),
    (["--session-redis=redis://127.0.0.1:0/0"], ["out of range"]),
])
def test_configuration_errors_exit_4(flags: list[str], phrases: list[str]) -> None:
    """A bad flag value or store URL exits 4 with one message (password hidden), no traceback."""
    out, err = io.StringIO(), io.StringIO()
    result = Result(run([*flags, "stats"], out=out, err=err), out.getvalue(), err.getvalue())
    assert_one_line_failure(result, 4, *phrases)
    assert "hunter2" not in result.err


def syntax_error_in(source: str, path: Path) -> SyntaxError:
    """The SyntaxError this interpreter raises for ``source``: its wording (``msg``) differs
    between Python versions, so tests compare with it instead of spelling it out."""
    try:
        compile(source, str(path), "exec")
    except SyntaxError as error:
        return error
    raise AssertionError(f"{source!r} compiles")


@pytest.mark.parametrize(("content", "phrase"), [
    ("session_expire = (\n", None),  # a syntax error: the phrase is the interpreter's own
    ("session_expire = 60\nraise RuntimeError('config exploded')\n", "line 2: RuntimeError: config exploded"),
    ("session_expire = 'soon'\n", "session_expire"),
    # a typo would point the command at another prefix (purge!) without a word
    ("sesion_redis_prefix = 'shop'\nport = 8000\n", "sesion_redis_prefix is no redis_session setting (the application "
                                                      "ignores it too); did you mean session_redis_prefix?"),
])
def test_a_broken_config_file_exits_4(tmp_path: Path, content: str, phrase: str | None) -> None:
    """A config file with a syntax error, one that raises, or one with a bad value exits 4 naming
    the file (and line), without a traceback."""
    config = tmp_path / "app.conf"
    config.write_text(content)
    if phrase is None:
        error = syntax_error_in(content, config)
        assert error.lineno == 1 and error.msg
        phrase = f"line 1: syntax error: {error.msg}"
    out, err = io.StringIO(), io.StringIO()
    result = Result(run([f"--config={config}", "stats"], out=out, err=err), out.getvalue(), err.getvalue())
    assert_one_line_failure(result, 4, str(config), phrase)


def test_a_missing_config_file_exits_4(tmp_path: Path) -> None:
    """--config naming a file that does not exist exits 4."""
    out, err = io.StringIO(), io.StringIO()
    result = Result(run([f"--config={tmp_path / 'nope.conf'}", "stats"], out=out, err=err), out.getvalue(), err.getvalue())
    assert_one_line_failure(result, 4, "nope.conf")


def test_the_config_file_is_read_like_the_app_reads_it(standalone: Sessions, tmp_path: Path) -> None:
    """--config FILE supplies the store and prefix, as tornado's parse_config_file does for the app."""
    standalone.bulk(4)
    config = tmp_path / "app.conf"
    config.write_text(f"session_redis = {standalone.url!r}\nsession_redis_prefix = {standalone.prefix!r}\nother_option = 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(["--config", str(config), "stats", "--json"], out=out, err=err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["sessions"] == 4


def test_a_database_that_does_not_exist_exits_4(redis_server: RedisServer) -> None:
    """redis://host:port/99 (beyond the server's databases) exits 4 saying the database does not exist."""
    result = admin_command(f"redis://127.0.0.1:{redis_server.port}/99", "p", "stats")
    assert_one_line_failure(result, 4, "database number")


def test_a_wrong_password_exits_4(own_redis_server: RedisServer) -> None:
    """A store that refuses the password exits 4 (configuration), not 3, and never prints the password."""
    own_redis_server.client().config_set("requirepass", "right-one")
    result = admin_command(f"redis://:wrong-one@127.0.0.1:{own_redis_server.port}/0", "p", "stats")
    assert_one_line_failure(result, 4, "password")
    assert "wrong-one" not in result.err


def test_an_unreachable_store_exits_3() -> None:
    """A standalone server or a cluster that refuses connections exits 3 with one line."""
    port = free_port()  # a free port nothing listens on
    for url in (f"redis://127.0.0.1:{port}/0", f"redis+cluster://127.0.0.1:{port}"):
        assert_one_line_failure(admin_command(url, "p", "stats"), 3, "unavailable")


def test_a_connection_lost_in_the_middle_of_stats_exits_3(own_redis_server: RedisServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """If Redis goes away while stats is scanning, stats exits 3 with one line, no traceback."""
    writer = Sessions(own_redis_server.url)
    try:
        writer.bulk(60)
    finally:
        writer.close()
    monkeypatch.setattr(inventory_module, "SCAN_COUNT", 5)
    read = Inventory._pipelined

    def read_then_crash(self: Inventory, primary: Any, commands: Any) -> Any:
        result = read(self, primary, commands)
        own_redis_server.stop()
        return result

    monkeypatch.setattr(Inventory, "_pipelined", read_then_crash)
    assert_one_line_failure(writer.run("stats"), 3, "unavailable")


def test_a_bug_exits_5_with_its_traceback(standalone: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception (a bug) exits 5, not 1 ('no such session'), and shows its traceback."""
    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Inventory, "stats", broken)
    result = standalone.run("stats")
    assert result.code == 5 and "Traceback" in result.err and "RuntimeError: a bug" in result.err


@pytest.mark.parametrize(("arguments", "code", "phrase"), [
    (["show", "f" * 64], 1, "no session"),
    (["purge"], 2, "--yes"),
])
def test_json_errors_are_json_with_the_same_exit_codes(standalone: Sessions, arguments: list[str], code: int, phrase: str) -> None:
    """With --json a failure is a JSON object on stdout ({"error", "exit_code"}) and the exit code
    is the same as without it; nothing goes to stderr."""
    result = standalone.run(*arguments, "--json")
    assert result.code == code and result.err == ""
    assert result.json()["exit_code"] == code and phrase in result.json()["error"]
    unreachable = admin_command(f"redis://127.0.0.1:{free_port()}/0", "p", "--json", "stats")
    assert unreachable.code == 3 and unreachable.json()["exit_code"] == 3


# -- progress -------------------------------------------------------------------------------------------


def shown_counts(text: str, label: str) -> list[int]:
    """The counts a progress line showed, frame by frame ("sessions: 40, done [00:00]")."""
    counts = []
    for frame in text.replace("\n", "\r").split("\r"):
        match = re.match(rf"{label}: (\d+)", frame)
        if match:
            counts.append(int(match[1]))
    return counts


def test_progress_is_shown_page_by_page_on_a_terminal(standalone: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, stats shows a growing session count while it scans and reads, page by page,
    and ends the line with the total."""
    standalone.bulk(300)
    monkeypatch.setattr(inventory_module, "SCAN_COUNT", 20)
    monkeypatch.setattr(command_module, "PROGRESS_INTERVAL", 0.0)
    terminal = Terminal()
    shown_while_reading: list[int] = []
    read = Inventory._pipelined

    def watched(self: Inventory, primary: Any, commands: Any) -> Any:
        shown_while_reading.append(len(shown_counts(terminal.getvalue(), "sessions")))
        return read(self, primary, commands)

    monkeypatch.setattr(Inventory, "_pipelined", watched)
    result = standalone.run("stats", "--json", err=terminal)
    assert result.code == 0 and result.json()["sessions"] == 300
    counts = shown_counts(terminal.getvalue(), "sessions")
    assert len(counts) > 5 and counts == sorted(counts) and counts[-1] == 300
    assert "sessions: 300, done" in terminal.getvalue()
    assert max(shown_while_reading) > 0  # progress was on screen before the per-session reads ended
    assert result.out.startswith("{")  # progress never reaches stdout


def test_no_progress_when_stderr_is_not_a_terminal(standalone: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pipe or a log (stderr not a terminal) stats, list and purge write nothing on stderr."""
    standalone.bulk(50)
    monkeypatch.setattr(inventory_module, "SCAN_COUNT", 10)
    monkeypatch.setattr(command_module, "PROGRESS_INTERVAL", 0.0)
    for arguments in (["stats"], ["list"], ["purge", "--yes"]):
        result = standalone.run(*arguments)
        assert result.code == 0 and result.err == "", (arguments, result.err)


def test_list_and_purge_show_progress_on_a_terminal(standalone: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """list and purge also count on a terminal, ending with their totals."""
    standalone.bulk(40)
    monkeypatch.setattr(inventory_module, "SCAN_COUNT", 10)
    listing, purging = Terminal(), Terminal()
    assert standalone.run("list", err=listing).code == 0
    assert "sessions: 40, done" in listing.getvalue()
    assert standalone.run("purge", "--yes", err=purging).code == 0
    assert "deleted keys: 40, done" in purging.getvalue()


def test_the_scan_reports_each_page_as_it_arrives(own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing asks Redis for one SCAN page at a time, and reports the first page before it asks
    for the rest of the keyspace."""
    monkeypatch.setattr(inventory_module, "SCAN_COUNT", 10)
    writer = Sessions(own_redis_server.url)
    client = own_redis_server.client()
    try:
        writer.bulk(200)
        before = scan_calls(client)
        scans_at_each_page: list[int] = []
        rows = Inventory(writer.settings, writer.store).rows(lambda count, detail: scans_at_each_page.append(scan_calls(client)))
        assert len(rows) == 200
        assert scans_at_each_page[0] - before <= 2 and len(scans_at_each_page) > 5
    finally:
        client.close()
        writer.close()


def scan_calls(client: Any) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


# -- as a process ------------------------------------------------------------------------------------------


def test_python_dash_m_runs_the_command(standalone: Sessions) -> None:
    """python -m redis_session stats --json prints JSON and exits 0; a bad URL exits 4 with one line."""
    standalone.bulk(3)
    result = subprocess_command(f"--session-redis={standalone.url}", "--session-redis-prefix", standalone.prefix,
                                "stats", "--json")
    assert result.code == 0, result.err
    assert result.json()["sessions"] == 3 and result.err == ""
    failed = subprocess_command("--session-redis=redis+cluster://:hunter2@127.0.0.1:1,", "stats")
    assert_one_line_failure(failed, 4, "empty")
    assert "hunter2" not in failed.err


def test_the_installed_redis_session_script_runs_the_command(standalone: Sessions) -> None:
    """The redis-session console script is the same command (exit 1 for an unknown session)."""
    script = Path(sys.executable).parent / "redis-session"
    if not os.access(script, os.X_OK):
        pytest.skip("redis-session is not installed next to this Python")
    result = subprocess_command(f"--session-redis={standalone.url}", f"--session-redis-prefix={standalone.prefix}",
                                "show", "0" * 64, executable=[str(script)])
    assert_one_line_failure(result, 1, f"no session {'0' * 64!r}")
