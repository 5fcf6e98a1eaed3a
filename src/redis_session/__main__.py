"""``python -m redis_session`` (also ``redis-session``): look after the sessions of a store.

Reads the same ``--session-*`` flags (``--session-redis=URL`` or ``--session-redis URL``,
anywhere on the line) and tornado config file as the application, so it sees the same store and
prefix. ``--json`` goes before or after the command.

Exit codes, for scripts (the README has the table): 0 done; 1 no such session (nothing, or not a
session hash, at the id's key); 2 usage error (including ``purge`` without ``--yes``); 3 store
unavailable (refused, timed out, failing over); 4 configuration error (a bad flag, config file or
store URL, or a store that refuses the configuration: wrong password, no such database, not a
cluster); 5 unexpected error (a bug: the traceback is printed); 130 interrupted. Failures other
than 5 print one message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence, Set, TextIO, Tuple, Type

import redis

from .admin import SessionAdmin
from .errors import ConfigurationError, SessionUnavailableError
from .settings import SETTINGS_BY_NAME, SessionSettings, normalise_name
from .store import STORE_ERRORS, Store, connect, describe_url, user_index_key
from .user_index import PENDING_PREFIX

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIGURATION, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
#: Keys asked for per SCAN call; each page of sessions is then read in one pipelined round trip.
SCAN_COUNT = 1000
COMMANDS = ("stats", "list", "show", "delete", "revoke-user", "purge")
#: Commands whose one argument is an id, which may start with "-" (token_urlsafe ids do, 1 in 64).
ID_COMMANDS = ("show", "delete", "revoke-user")
#: What using a store can raise; connecting can also raise a ConfigurationError (a URL redis-py refuses).
STORE_FAILURES: Tuple[Type[Exception], ...] = (SessionUnavailableError, *STORE_ERRORS)
CONNECT_FAILURES: Tuple[Type[Exception], ...] = (ConfigurationError, *STORE_FAILURES)
BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")
EPILOG = """exit codes: 0 done, 1 no such session, 2 usage error, 3 store unavailable,
4 configuration error, 5 unexpected error (a bug), 130 interrupted"""


class CommandError(Exception):
    """A failure the command reports in one line and the exit code it ends with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    # --json on the main parser and on every command: accepted before or after the command.
    # SUPPRESS keeps a command's parser from resetting a --json given before the command (so no
    # set_defaults: the parsers share this one action, and it would change the default of all).
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print JSON instead of text (before or after the command)")
    parser = argparse.ArgumentParser(
        prog="redis-session", parents=[json_option], epilog=EPILOG,
        description="Inspect and end redis_session sessions. Any --session-* flag of the application "
                    "(e.g. --session-redis=redis://host:6379/0 --session-redis-prefix=app) applies.",
    )
    parser.add_argument("--config", metavar="FILE", help="a tornado config file (as the app's parse_config_file)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, parents=[json_option], epilog=EPILOG)

    command("stats", "sessions, memory, TTL spread, per-user counts")
    command("list", "list sessions (all, or one user's)").add_argument(
        "--user", metavar="ID", help="only the sessions bound to this user")
    command("show", "print one session's fields").add_argument("session_id", metavar="ID")
    command("delete", "end one session").add_argument("session_id", metavar="ID")
    command("revoke-user", "end every session of a user").add_argument("user_id", metavar="ID")
    command("purge", "delete every session and user index under the prefix").add_argument(
        "--yes", action="store_true", help="really delete them")
    return parser


def split_arguments(arguments: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """Take the application's ``--session-*`` flags (anywhere, ``--name=value`` or ``--name
    value``) out of ``arguments``: ``({setting name: value}, the command's own arguments)``.

    :raises CommandError: for an unknown ``--session-*`` flag or one without its value (usage).
    """
    flags: Dict[str, str] = {}
    rest: List[str] = []
    position = 0
    while position < len(arguments):
        argument = arguments[position]
        position += 1
        if argument == "--":
            rest.extend(arguments[position - 1:])
            break
        if not argument.startswith(("--session-", "--session_")):  # tornado takes either spelling
            rest.append(argument)
            continue
        flag, has_value, value = argument.partition("=")
        setting = SETTINGS_BY_NAME.get(normalise_name(flag[len("--session-"):]))
        if setting is None:
            known = ", ".join(f"--session-{name}" for name in SETTINGS_BY_NAME)
            raise CommandError(EXIT_USAGE, f"unknown flag {flag} (known: {known})")
        if not has_value:
            if setting.type is bool:
                value = "true"  # a bare boolean flag, as tornado reads it, unless a value follows
                if position < len(arguments) and arguments[position].lower() in BOOLEAN_WORDS:
                    value = arguments[position]
                    position += 1
            elif position < len(arguments):
                value = arguments[position]
                position += 1
            else:
                raise CommandError(EXIT_USAGE, f"{flag} needs a value: {flag}=VALUE")
        flags[setting.name] = value
    return flags, ids_as_positionals(rest)


def ids_as_positionals(rest: List[str]) -> List[str]:
    """Put ``--`` before the id of ``show``/``delete``/``revoke-user`` (after their own options),
    so argparse does not read an id such as ``-x3F...`` as an option."""
    position = 0
    while position < len(rest):
        if rest[position] == "--config":
            position += 2
            continue
        if rest[position] in COMMANDS:
            break
        position += 1
    if position >= len(rest) or rest[position] not in ID_COMMANDS or "--" in rest:
        return rest
    tail = rest[position + 1:]
    options = [argument for argument in tail if argument in ("--json", "-h", "--help")]
    others = [argument for argument in tail if argument not in options]
    return [*rest[:position + 1], *options, "--", *others]


def load_settings(flags: Dict[str, str], config_file: Optional[str]) -> SessionSettings:
    """The application's settings: defaults, then the config file, then the command line.

    :raises CommandError: naming every flag or config file value that is wrong, or the config
        file line that failed.
    """
    values: Dict[str, Any] = read_config_file(config_file) if config_file else {}
    values.update(flags)

    def describe(name: str) -> str:
        if name in flags or not config_file:
            return f"--session-{name}"
        return f"session_{name.replace('-', '_')} in {config_file}"

    try:
        return SessionSettings.from_mapping(values, describe)
    except ConfigurationError as error:
        raise CommandError(EXIT_CONFIGURATION, str(error)) from None


def read_config_file(path: str) -> Dict[str, Any]:
    """The ``session_*`` values a tornado config file sets, read as tornado's
    ``parse_config_file`` reads it: the file is Python, run with ``__file__`` set; names it sets
    that are not session settings belong to the application and are ignored. The values then go
    through the same checks as flags, so a bad one is reported by name (tornado's own parser
    would say only "invalid literal for int()").
    """
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as error:
        raise CommandError(EXIT_CONFIGURATION, f"--config {path}: {error.strerror or error}") from None
    namespace: Dict[str, Any] = {"__file__": os.path.abspath(path)}
    try:
        exec(compile(source, path, "exec"), namespace, namespace)
    except SyntaxError as error:
        raise CommandError(EXIT_CONFIGURATION, f"{path}, line {error.lineno}: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 - the file is the user's code: it may raise anything
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == path]
        where = f", line {lines[-1]}" if lines else ""
        raise CommandError(EXIT_CONFIGURATION, f"{path}{where}: {type(error).__name__}: {error}") from None
    values: Dict[str, Any] = {}
    for name, value in namespace.items():
        flag = normalise_name(name)
        if flag.startswith("session-") and flag[len("session-"):] in SETTINGS_BY_NAME:
            values[flag[len("session-"):]] = value
    return values


class Progress:
    """A one-line counter on ``stream``, only when it is a terminal (never in pipes or logs),
    redrawn at most every :attr:`interval` seconds."""

    interval = 0.1

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty()) if callable(isatty) else False
        self.count = 0
        self.shown_at = -float("inf")
        self.width = 0

    def add(self, count: int, detail: str = "") -> None:
        self.count += count
        if self.enabled and time.monotonic() - self.shown_at >= self.interval:
            self._show(f"{self.label}: {self.count}{detail}")
            self.shown_at = time.monotonic()

    def finish(self, detail: str = "") -> None:
        if self.enabled and self.count:
            self._show(f"{self.label}: {self.count} done{detail}")
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)


def primary_detail(number: int, count: int) -> str:
    return f" (primary {number}/{count})" if count > 1 else ""


def nearest_rank(ordered: List[int], fraction: float) -> int:
    """The nearest-rank percentile of sorted values: the smallest value with at least
    ``fraction`` of all values at or below it (p90 of [100, 200] is 200)."""
    rank = -(-len(ordered) * round(fraction * 100) // 100)  # ceil without float error
    return ordered[max(rank, 1) - 1]


def stats(admin: SessionAdmin, err: TextIO) -> Dict[str, Any]:
    """Scan every primary once; each page of ids is read (TTL, MEMORY USAGE) on its own primary."""
    primaries = admin.primaries()
    live: Set[str] = set()
    ttls: List[int] = []
    memory = persistent = 0
    progress = Progress(err, "sessions")
    for number, primary in enumerate(primaries, 1):
        for page in admin.session_id_pages(primary, SCAN_COUNT):
            fresh = [session_id for session_id in dict.fromkeys(page) if session_id not in live]  # SCAN repeats keys
            for session_id, (ttl, used) in zip(fresh, admin.session_stats(primary, fresh)):
                if ttl == -2:
                    continue  # expired or deleted since the scan
                live.add(session_id)
                memory += used
                if ttl >= 0:
                    ttls.append(ttl)
                else:
                    persistent += 1
            progress.add(len(fresh), primary_detail(number, len(primaries)))
    progress.finish(f" on {len(primaries)} primaries" if len(primaries) > 1 else "")
    per_user, in_flight, stale = user_counts(admin, primaries, live, err)
    spread: Dict[str, int] = {}
    if ttls:
        ordered = sorted(ttls)
        spread = {"min": ordered[0], "median": int(statistics.median(ordered)),
                  "p90": nearest_rank(ordered, 0.9), "max": ordered[-1]}
    return {
        "store": admin.store.name, "prefix": admin.settings.prefix, "primaries": len(primaries),
        "sessions": len(live), "sessions_without_ttl": persistent, "memory_bytes": memory,
        "memory_per_session": round(memory / len(live)) if live else 0, "ttl_seconds": spread,
        "users": len(per_user), "sessions_per_user": per_user,
        "signins_in_flight": in_flight, "stale_index_entries": stale,
    }


def user_counts(admin: SessionAdmin, primaries: List[Any], live: Set[str], err: TextIO) -> Tuple[Dict[str, int], int, int]:
    """Live sessions per user (index entries whose session the scan found), sign-ins in flight
    (``pending:`` entries) and index entries of sessions that are gone (pruned lazily)."""
    per_user: Dict[str, int] = {}
    in_flight = stale = 0
    progress = Progress(err, "user indexes")
    for number, primary in enumerate(primaries, 1):
        for page in admin.user_index_pages(primary, SCAN_COUNT):
            for user, members in page:
                alive = sum(1 for member in members if member in live)
                pending = sum(1 for member in members if member.startswith(PENDING_PREFIX))
                in_flight += pending
                stale += len(members) - alive - pending
                if alive:
                    per_user[user] = per_user.get(user, 0) + alive
            progress.add(len(page), primary_detail(number, len(primaries)))
    progress.finish()
    return per_user, in_flight, stale


def list_sessions(admin: SessionAdmin, user: Optional[str], err: TextIO) -> List[Dict[str, Any]]:
    if user is not None:
        return [{"session_id": info.session_id, "handle": info.handle, "user": info.user_id,
                 "created": info.created, "last_seen": info.last_seen, "expires": info.expires}
                for info in admin.sessions_for_user(user)]
    primaries = admin.primaries()
    rows: List[Dict[str, Any]] = []
    seen: Set[str] = set()
    progress = Progress(err, "sessions")
    for number, primary in enumerate(primaries, 1):
        for page in admin.session_id_pages(primary, SCAN_COUNT):
            fresh = [session_id for session_id in dict.fromkeys(page) if session_id not in seen]
            seen.update(fresh)
            rows.extend(admin.session_rows(primary, fresh))
            progress.add(len(fresh), primary_detail(number, len(primaries)))
    progress.finish()
    return rows


def emit(result: Any, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    elif isinstance(result, list):
        for row in result:
            out.write("  ".join(f"{key}={value}" for key, value in row.items()) + "\n")
        out.write(f"({len(result)} sessions)\n")
    elif isinstance(result, dict):
        for key, value in result.items():
            out.write(f"{key}: {value}\n")
    else:
        out.write(f"{result}\n")


def run(arguments: Sequence[str], out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run one command line; returns the exit code. ``out``/``err`` default to the streams
    ``sys.stdout``/``sys.stderr`` are *now* (not when this module was imported)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        return execute(arguments, out, err)
    except CommandError as error:
        err.write(f"redis-session: {error}\n")
        return error.code
    except KeyboardInterrupt:
        err.write("\nredis-session: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - a bug: say so, with the traceback, under a code of its own
        err.write(traceback.format_exc())
        err.write("redis-session: unexpected error (a bug in redis_session; please report the traceback above)\n")
        return EXIT_INTERNAL


def execute(arguments: Sequence[str], out: TextIO, err: TextIO) -> int:
    flags, rest = split_arguments(arguments)
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            options = parser.parse_args(rest)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    options.json = getattr(options, "json", False)
    if options.command == "purge" and not options.yes:
        # refused before anything connects: a usage error whatever the store's state
        raise CommandError(EXIT_USAGE, "purge deletes every session under the prefix; add --yes to do it")
    settings = load_settings(flags, options.config)
    try:
        store = connect(settings)
    except CONNECT_FAILURES as error:
        raise store_failure(settings, error) from None
    try:
        return dispatch(SessionAdmin(settings, store), options, out, err)
    except STORE_FAILURES as error:
        raise store_failure(settings, error) from None
    finally:
        close_store(store)


#: Replies of a store that answers but will not work with this configuration, and what to fix.
REFUSALS = (
    ("DB index is out of range", "the database number in the store URL does not exist on this server"),
    ("MOVED", "this server is a cluster node: use a redis+cluster:// URL"),
    ("Cluster mode is not enabled", "this server is not a cluster node: use a redis:// URL"),
    ("NOAUTH", "the server needs a password: put it in the store URL"),
    ("WRONGPASS", "wrong user name or password in the store URL"),
    ("NOPERM", "the user in the store URL lacks a permission these commands need"),
)


def store_failure(settings: SessionSettings, error: BaseException) -> CommandError:
    """Exit 3 for an outage; 4 for a store that refuses this configuration (or a bad URL)."""
    if isinstance(error, ConfigurationError):
        return CommandError(EXIT_CONFIGURATION, str(error))
    cause = error.cause if isinstance(error, SessionUnavailableError) else error
    text = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, redis.exceptions.AuthenticationError):
        return CommandError(EXIT_CONFIGURATION, f"store {describe_url(settings.redis_url)} refused to log in: {text}")
    for marker, advice in REFUSALS:
        if marker in str(cause):
            return CommandError(EXIT_CONFIGURATION, f"store {describe_url(settings.redis_url)}: {advice} ({text})")
    if isinstance(error, SessionUnavailableError):
        return CommandError(EXIT_UNAVAILABLE, str(error))
    return CommandError(EXIT_CONFIGURATION, f"store {describe_url(settings.redis_url)} refused a command: {text}")


def close_store(store: Store) -> None:
    """Close the client (and, behind sentinels, the sentinel clients): a command ends cleanly."""
    manager = getattr(getattr(store.client, "connection_pool", None), "sentinel_manager", None)
    with contextlib.suppress(*STORE_ERRORS):
        store.client.close()
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


def dispatch(admin: SessionAdmin, options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = options.command
    if command == "stats":
        emit(stats(admin, err), options.json, out)
    elif command == "list":
        emit(list_sessions(admin, options.user, err), options.json, out)
    elif command == "show":
        details = admin.show(options.session_id)
        if details is None:
            return not_found(admin, options.session_id, err)
        emit(details, options.json, out)
    elif command == "delete":
        if not admin.delete(options.session_id):
            return not_found(admin, options.session_id, err)
        emit({"deleted": options.session_id}, options.json, out)
    elif command == "revoke-user":
        ended = admin.revoke_user(options.user_id)
        emit({"user": options.user_id, "ended": ended, "index": user_index_key(admin.settings.prefix, options.user_id)},
             options.json, out)
    elif command == "purge":
        progress = Progress(err, "deleted keys")
        deleted = admin.purge(on_page=progress.add)
        progress.finish()
        emit({"deleted_keys": deleted}, options.json, out)
    return EXIT_OK


def not_found(admin: SessionAdmin, session_id: str, err: TextIO) -> int:
    """Exit 1, saying whether the key is missing or holds something that is not a session."""
    where = f"no session {session_id!r} under prefix {admin.settings.prefix!r}"
    kind = admin.key_type(session_id)
    if kind != "none":
        where += f": its key holds a {kind}, not a session hash (left alone)"
    err.write(f"redis-session: {where}\n")
    return EXIT_NOT_FOUND


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
