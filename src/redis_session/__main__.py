"""``python -m redis_session`` (also ``redis-session``): look after the sessions of a store.

A thin shell: it parses the command line, calls :mod:`redis_session.inventory`,
:mod:`redis_session.admin` and :mod:`redis_session.doctor`, and prints for humans (aligned
columns, ISO 8601 times, TTLs as durations) or, with ``--json``, for programs (errors too).
Sessions are named by their public handle, never by id.

It reads the same ``--session-*`` flags (``--session-redis=URL`` or ``--session-redis URL``,
anywhere on the line) and tornado config file as the application, so it sees the same store and
prefix. ``--json`` goes before or after the command.

Exit codes, for scripts: 0 done; 1 no such session; 2 usage error (including ``purge`` without
``--yes``); 3 store unavailable (refused, timed out, failing over); 4 configuration error (a bad
flag, config file or store URL, or a store that refuses the configuration: wrong password, no
such database, not a cluster); 5 unexpected error (a bug: the traceback is printed); 6 ``doctor
--strict`` found a risk (after printing its report; unknowns do not count); 130 interrupted.
Failures other than 5 print one message, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from .addresses import describe_url
from .admin import SessionAdmin
from .command_line import (
    EXIT_CONFIGURATION,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_RISK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    build_parser,
    load_settings,
    split_arguments,
)
from .doctor import diagnose_store
from .doctor_checks import OK, REPLICA, RISK, UNKNOWN
from .errors import ConfigurationError, SessionUnavailableError
from .inventory import Inventory, OnPage, SessionRow
from .protocol import is_handle
from .settings import SessionSettings
from .store import Store
from .store_errors import STORE_ERRORS

#: What using a store can raise; connecting can also raise a ConfigurationError (a URL redis-py refuses).
STORE_FAILURES: tuple[type[Exception], ...] = (SessionUnavailableError, ConfigurationError, *STORE_ERRORS)
CONNECT_FAILURES: tuple[type[Exception], ...] = (ConfigurationError, *STORE_FAILURES)
#: Seconds between two redraws of a progress line.
PROGRESS_INTERVAL = 0.1


@contextlib.contextmanager
def progress(stream: TextIO, label: str) -> Iterator[OnPage]:
    """An ``on_page`` callback that counts on ``stream`` with tqdm, when tqdm is installed (the
    ``cli`` extra) and ``stream`` is a terminal; otherwise one that shows nothing."""
    isatty = getattr(stream, "isatty", None)
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not (callable(isatty) and isatty()):
        yield lambda count, detail: None
        return
    bar = tqdm(desc=label, file=stream, mininterval=PROGRESS_INTERVAL, miniters=1, bar_format="{desc}: {n}{postfix} [{elapsed}]")

    def on_page(count: int, detail: str) -> None:
        bar.set_postfix_str(detail.strip(), refresh=False)
        bar.update(count)

    try:
        yield on_page
    finally:
        bar.set_postfix_str("done", refresh=False)
        bar.close()


def iso_time(timestamp: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, to the second."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def duration(seconds: int) -> str:
    """``90061`` -> ``1d 1h 1m 1s``; a TTL of -1 (no expiry) -> ``never``."""
    if seconds < 0:
        return "never"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)


def terminal_safe(text: str) -> str:
    """``text`` with every character a terminal would act on or hide escaped as ``repr`` does
    (``\\x1b``, ``\\n``, ``\\u202e``): user ids and field values come from the application's
    users, and printed raw an escape sequence could rewrite the operator's screen or a newline
    forge a row."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def table(rows: list[list[str]]) -> str:
    """Rows as columns aligned on their widest cell, each cell made safe for a terminal."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in rows)


def stats_text(stats: dict[str, Any]) -> str:
    spread = stats["ttl_seconds"]
    text = table([
        ["store", stats["store"]], ["prefix", stats["prefix"]], ["primaries", str(stats["primaries"])],
        ["sessions", str(stats["sessions"])], ["sessions without TTL", str(stats["sessions_without_ttl"])],
        ["memory", f"{stats['memory_bytes']} bytes ({stats['memory_per_session']} per session)"],
        ["TTL", ", ".join(f"{name} {duration(value)}" for name, value in spread.items()) if spread else "-"],
        ["users", str(stats["users"])], ["sign-ins in flight", str(stats["signins_in_flight"])],
        ["stale index entries", str(stats["stale_index_entries"])],
    ])
    busiest = sorted(stats["sessions_per_user"].items(), key=lambda item: (-item[1], item[0]))[:10]
    if busiest:
        text += "\nmost sessions per user:\n" + table([["USER", "SESSIONS"], *([user, str(count)] for user, count in busiest)])
    return text


def row_json(row: SessionRow) -> dict[str, Any]:
    return {"handle": row.handle, "user": row.user, "created": iso_time(row.created), "ttl_seconds": row.ttl}


def rows_text(rows: list[dict[str, Any]]) -> str:
    cells = [["HANDLE", "USER", "CREATED", "TTL"]]
    cells += [[row["handle"], row["user"] or "-", row["created"] or "-", duration(row["ttl_seconds"])] for row in rows]
    return table(cells) + f"({len(rows)} session{'s' if len(rows) != 1 else ''})\n"


def details_text(details: dict[str, Any]) -> str:
    text = table([["handle", details["handle"]], ["ttl", duration(details["ttl_seconds"])]])
    fields = sorted([name, value] for name, value in details["fields"].items())
    return text + "fields:\n" + "".join("  " + line for line in table(fields).splitlines(True)) if fields else text


def findings_text(findings: list[dict[str, Any]]) -> str:
    """One aligned line per finding (a replica marked as such), the fix after the message, and
    a count of each level."""
    cells = [["LEVEL", "SERVER", "CHECK", "FINDING"]]
    for finding in findings:
        server = finding["server"] + (" (replica)" if finding["role"] == REPLICA else "")
        message = finding["message"] + (f"; fix: {finding['fix']}" if finding["fix"] else "")
        cells.append([finding["level"], server, finding["check"], message])
    levels = [finding["level"] for finding in findings]
    counts = ", ".join(f"{levels.count(level)} {level}{'s' if level == RISK and levels.count(level) != 1 else ''}"
                       for level in (RISK, UNKNOWN, OK) if level in levels)
    servers = len({finding["server"] for finding in findings})
    return table(cells) + f"({counts} on {servers} server{'s' if servers != 1 else ''})\n"


def run(arguments: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command line; returns the exit code. ``out``/``err`` default to the streams
    ``sys.stdout``/``sys.stderr`` are *now* (not when this module was imported)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    as_json = "--json" in arguments
    try:
        return execute(arguments, out, err)
    except CommandError as error:
        return report(error.code, str(error), as_json, out, err)
    except KeyboardInterrupt:
        return report(EXIT_INTERRUPTED, "interrupted", as_json, out, err)
    except Exception:  # noqa: BLE001 - a bug: say so, with the traceback, under a code of its own
        err.write(traceback.format_exc())
        return report(EXIT_INTERNAL, "unexpected error (a bug in redis_session; please report the traceback above)",
                      as_json, out, err)


def report(code: int, message: str, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Say why the command failed: one line on stderr, or with ``--json`` a JSON object on stdout."""
    if as_json:
        out.write(json.dumps({"error": message, "exit_code": code}) + "\n")
    else:
        err.write(f"redis-session: {message}\n")
    return code


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
        store = Store.connect(settings)
    except CONNECT_FAILURES as error:
        raise store_failure(settings, error) from None
    try:
        result, text = COMMAND_ACTIONS[options.command](Inventory(settings, store), options, err)
    except STORE_FAILURES as error:
        raise store_failure(settings, error) from None
    finally:
        store.close()
    if result is None:
        return report(EXIT_NOT_FOUND, text, options.json, out, err)
    out.write(json.dumps(result, indent=2, sort_keys=True) + "\n" if options.json else text)
    return COMMAND_EXIT_CODES.get(options.command, succeeded)(result, options)


def store_failure(settings: SessionSettings, error: BaseException) -> CommandError:
    """Exit 3 for an outage; 4 for a store that refuses this configuration (or a bad URL)."""
    if isinstance(error, ConfigurationError):  # StoreRefusedError included
        return CommandError(EXIT_CONFIGURATION, str(error))
    if isinstance(error, SessionUnavailableError):
        return CommandError(EXIT_UNAVAILABLE, str(error))
    return CommandError(EXIT_CONFIGURATION, f"store {describe_url(settings.redis_url)} refused a command: {type(error).__name__}: {error}")


#: Each command: ``(inventory, options, stderr) -> (JSON result, text)``; a result of ``None``
#: means "no such session" and the text says why (exit 1).
Action = Callable[[Inventory, argparse.Namespace, TextIO], tuple[Any, str]]


def stats_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    with progress(err, "sessions") as on_page:
        stats = inventory.stats(on_page)
    return stats, stats_text(stats)


def list_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    if options.user is not None:  # through the user's index: no scan
        infos = SessionAdmin(inventory.settings, inventory.store).sessions_for_user(options.user)
        rows = [{"handle": info.handle, "user": info.user_id, "created": iso_time(info.created),
                 "ttl_seconds": max(0, round(info.expires - time.time()))} for info in infos]
    else:
        with progress(err, "sessions") as on_page:
            rows = [row_json(row) for row in inventory.rows(on_page)]
    return rows, rows_text(rows)


def checked_handle(handle: str) -> str:
    """A handle as ``list`` prints it (64 hexadecimal characters); anything else is a usage error,
    not "no such session"."""
    if not is_handle(handle):
        raise CommandError(EXIT_USAGE, f"{handle!r} is not a session handle: 64 hexadecimal characters, as list shows them")
    return handle


def show_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    details = inventory.show(checked_handle(options.handle))
    if details is None:
        return None, not_found(inventory, options.handle)
    result = {"handle": details.handle, "ttl_seconds": details.ttl, "fields": details.fields}
    return result, details_text(result)


def delete_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    if not inventory.delete(checked_handle(options.handle)):
        return None, not_found(inventory, options.handle)
    return {"deleted": options.handle}, f"deleted session {options.handle}\n"


def revoke_user_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    ended = SessionAdmin(inventory.settings, inventory.store).revoke_user(options.user_id)
    return {"user": options.user_id, "ended": ended}, f"ended {ended} session(s) of user {terminal_safe(options.user_id)}\n"


def purge_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    with progress(err, "deleted keys") as on_page:
        deleted = inventory.purge(on_page)
    return {"deleted_keys": deleted}, f"deleted {deleted} keys\n"


def doctor_command(inventory: Inventory, options: argparse.Namespace, err: TextIO) -> tuple[Any, str]:
    findings = [finding.as_json() for finding in diagnose_store(inventory.store, inventory.settings)]
    return findings, findings_text(findings)


COMMAND_ACTIONS: dict[str, Action] = {
    "stats": stats_command, "list": list_command, "show": show_command, "delete": delete_command,
    "revoke-user": revoke_user_command, "purge": purge_command, "doctor": doctor_command,
}


def succeeded(result: Any, options: argparse.Namespace) -> int:
    return EXIT_OK


def doctor_exit_code(findings: list[dict[str, Any]], options: argparse.Namespace) -> int:
    """6 for a risk under ``--strict``, so a deployment check can stop on it; unknowns (a server
    that would not say) never fail it: what cannot be read is reported, not guessed at."""
    return EXIT_RISK if options.strict and any(finding["level"] == RISK for finding in findings) else EXIT_OK


#: The exit code of a command that printed its result (a report may still fail a check): by
#: default 0.
COMMAND_EXIT_CODES: dict[str, Callable[[Any, argparse.Namespace], int]] = {"doctor": doctor_exit_code}


def not_found(inventory: Inventory, handle: str) -> str:
    """Why there is no session to show or delete: no key, or a key that holds something else."""
    message = f"no session {handle!r} under prefix {inventory.settings.prefix!r}"
    kind = inventory.key_type(handle)
    if kind != "none":
        message += f": its key holds a {kind}, not a session hash (left alone)"
    return message


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
