"""``python -m redis_session`` (also ``redis-session``): look after the sessions of a store.

Reads the same ``--session-*`` flags and tornado config file as the application, so it sees the
same store and prefix. Exit codes for scripts: 0 done, 1 no such session, 2 usage error,
3 store unavailable, 4 configuration error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO

from tornado.options import Error as OptionsError
from tornado.options import OptionParser

from .admin import SessionAdmin, session_handle
from .errors import ConfigurationError, SessionUnavailableError
from .settings import SessionSettings
from .store import session_key, user_index_key
from .tornado_session import define_flags, flag_values

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIGURATION = 0, 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redis-session",
        description="Inspect and end redis_session sessions. Any --session-* flag of the application "
                    "(e.g. --session-redis=redis://host:6379/0 --session-redis-prefix=app) applies.",
    )
    parser.add_argument("--config", metavar="FILE", help="a tornado config file (as the app's parse_config_file)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("stats", help="sessions, memory, TTL spread, per-user counts")
    listing = commands.add_parser("list", help="list sessions (all, or one user's)")
    listing.add_argument("--user", metavar="ID", help="only the sessions bound to this user")
    for name, text in (("show", "print one session's fields"), ("delete", "end one session")):
        commands.add_parser(name, help=text).add_argument("session_id", metavar="ID")
    commands.add_parser("revoke-user", help="end every session of a user").add_argument("user_id", metavar="ID")
    purge = commands.add_parser("purge", help="delete every session under the prefix")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    return parser


def load_settings(session_flags: Sequence[str], config_file: Optional[str]) -> SessionSettings:
    flags = OptionParser()
    define_flags(flags)
    if config_file:
        flags.parse_config_file(config_file, final=False)
    flags.parse_command_line(["redis-session", *session_flags], final=False)
    return SessionSettings.from_mapping(flag_values(flags))


class Progress:
    """A one-line counter on stderr, only when stderr is a terminal (never in pipes or logs)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.count = 0
        self.shown_at = 0.0

    def wrap(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.count += 1
            if self.enabled and time.monotonic() - self.shown_at > 0.1:
                self.stream.write(f"\r{self.label}: {self.count}")
                self.stream.flush()
                self.shown_at = time.monotonic()
            yield item
        if self.enabled:
            self.stream.write(f"\r{self.label}: {self.count} done\n")


def stats(admin: SessionAdmin) -> Dict[str, Any]:
    ttls: List[int] = []
    memory = 0
    prefix = admin.settings.prefix
    for primary in admin.primaries():
        ids = list(Progress("scanning").wrap(admin.scan_session_ids()))
        for start in range(0, len(ids), 500):
            pipeline = primary.pipeline(transaction=False)
            for session_id in ids[start:start + 500]:
                pipeline.ttl(session_key(prefix, session_id))
                pipeline.memory_usage(session_key(prefix, session_id))
            replies = pipeline.execute(raise_on_error=False)
            ttls.extend(int(ttl) for ttl in replies[0::2] if isinstance(ttl, int) and ttl >= 0)
            memory += sum(int(used) for used in replies[1::2] if isinstance(used, int))
        break  # scan_session_ids already walked every primary
    users = {}
    for primary in admin.primaries():
        for key in primary.scan_iter(match=f"{prefix}:users:*", count=1000):
            users[key.decode("utf-8", "replace")[len(prefix) + 7:]] = int(primary.zcard(key))
    spread = {}
    if ttls:
        ordered = sorted(ttls)
        spread = {"min": ordered[0], "median": int(statistics.median(ordered)),
                  "p90": ordered[int(len(ordered) * 0.9) - 1 if len(ordered) > 1 else 0], "max": ordered[-1]}
    return {
        "store": admin.store.name, "prefix": prefix, "sessions": len(ttls), "memory_bytes": memory,
        "memory_per_session": round(memory / len(ttls)) if ttls else 0, "ttl_seconds": spread,
        "users": len(users), "sessions_per_user": users,
    }


def list_sessions(admin: SessionAdmin, user: Optional[str]) -> List[Dict[str, Any]]:
    if user is not None:
        return [{"session_id": info.session_id, "handle": info.handle, "user": info.user_id,
                 "created": info.created, "last_seen": info.last_seen, "expires": info.expires}
                for info in admin.sessions_for_user(user)]
    rows = []
    for session_id in Progress("scanning").wrap(admin.scan_session_ids()):
        details = admin.show(session_id)
        if details is None:
            continue  # expired between the scan and the read
        fields = details["fields"]
        rows.append({"session_id": session_id, "handle": session_handle(session_id), "user": fields.get("__rs:user"),
                     "created": float(fields["__rs:created"]) if fields.get("__rs:created", "").isdigit() else None,
                     "ttl": details["ttl"]})
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


def run(arguments: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    session_flags = [argument for argument in arguments if argument.startswith("--session")]
    parser = build_parser()
    try:
        options = parser.parse_args([argument for argument in arguments if not argument.startswith("--session")])
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    try:
        admin = SessionAdmin(load_settings(session_flags, options.config))
    except (ConfigurationError, OptionsError, OSError) as error:
        err.write(f"redis-session: {error}\n")
        return EXIT_CONFIGURATION
    try:
        return dispatch(admin, options, out, err)
    except SessionUnavailableError as error:
        err.write(f"redis-session: {error}\n")
        return EXIT_UNAVAILABLE


def dispatch(admin: SessionAdmin, options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = options.command
    if command == "stats":
        emit(stats(admin), options.json, out)
    elif command == "list":
        emit(list_sessions(admin, options.user), options.json, out)
    elif command == "show":
        details = admin.show(options.session_id)
        if details is None:
            err.write(f"redis-session: no session {options.session_id!r} under prefix {admin.settings.prefix!r}\n")
            return EXIT_NOT_FOUND
        emit(details, options.json, out)
    elif command == "delete":
        if not admin.delete(options.session_id):
            err.write(f"redis-session: no session {options.session_id!r} under prefix {admin.settings.prefix!r}\n")
            return EXIT_NOT_FOUND
        emit({"deleted": options.session_id}, options.json, out)
    elif command == "revoke-user":
        ended = admin.revoke_user(options.user_id)
        emit({"user": options.user_id, "ended": ended, "index": user_index_key(admin.settings.prefix, options.user_id)},
             options.json, out)
    elif command == "purge":
        if not options.yes:
            err.write("redis-session: purge deletes every session under the prefix; add --yes to do it\n")
            return EXIT_USAGE
        emit({"deleted_keys": admin.purge()}, options.json, out)
    return EXIT_OK


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
