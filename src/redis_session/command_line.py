"""The admin command's command line: its arguments, and the application settings it reads
(``--session-*`` flags anywhere on the line, and the application's tornado config file).
"""

from __future__ import annotations

import argparse
import difflib
import os
import traceback
from collections.abc import Sequence
from typing import Any

from .errors import ConfigurationError
from .settings import SETTINGS_BY_NAME, SessionSettings, normalise_name

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIGURATION, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
#: ``doctor --strict`` found a setting that can lose sessions (its report is printed all the same).
EXIT_RISK = 6
EXIT_INTERRUPTED = 130
COMMANDS = ("stats", "list", "show", "delete", "revoke-user", "purge", "doctor")
#: Commands whose one argument may start with "-" (a user id can).
ID_COMMANDS = ("show", "delete", "revoke-user")
BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")
EPILOG = """exit codes: 0 done, 1 no such session, 2 usage error, 3 store unavailable,
4 configuration error, 5 unexpected error (a bug), 6 a risk found (doctor --strict; unknowns
do not count), 130 interrupted"""


class CommandError(Exception):
    """A failure the command reports in one line and the exit code it ends with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser: its commands and their own options (the ``--session-*``
    flags are taken out of the line before it runs, by :func:`split_arguments`). The docs render
    their admin command page from it, so what ``--help`` says and what they say cannot differ."""
    # --json on the main parser and on every command: accepted before or after the command.
    # SUPPRESS keeps a command's parser from resetting a --json given before the command (so no
    # set_defaults: the parsers share this one action, and it would change the default of all).
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print JSON instead of text (before or after the command)")
    parser = argparse.ArgumentParser(
        prog="redis-session", parents=[json_option], epilog=EPILOG,
        description="Inspect and end redis_session sessions, and check what the server will do to them. Any --session-* "
                    "flag of the application (e.g. --session-redis=redis://host:6379/0 --session-redis-prefix=app) applies.",
    )
    parser.add_argument("--config", metavar="FILE", help="a tornado config file (as the app's parse_config_file)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, parents=[json_option], epilog=EPILOG)

    command("stats", "sessions, memory, TTL spread, per-user counts")
    command("list", "list sessions (all, or one user's) by handle").add_argument(
        "--user", metavar="ID", help="only the sessions bound to this user")
    command("show", "print one session's fields").add_argument("handle", metavar="HANDLE", help="as list shows it")
    command("delete", "end one session, as a logout would").add_argument("handle", metavar="HANDLE", help="as list shows it")
    command("revoke-user", "end every session of a user").add_argument(
        "user_id", metavar="USER_ID", help="the id the sessions were bound to (bind_user)")
    command("purge", "delete every session and user index under the prefix").add_argument(
        "--yes", action="store_true", help="really delete them")
    command("doctor", "what the server will do to sessions: settings that can lose them, and what to set instead").add_argument(
        "--strict", action="store_true", help="exit 6 when a finding is a risk (unknowns do not count), for deployment checks")
    return parser


def split_arguments(arguments: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Take the application's ``--session-*`` flags (anywhere, ``--name=value`` or ``--name
    value``) out of ``arguments``: ``({setting name: value}, the command's own arguments)``.

    :raises CommandError: for an unknown ``--session-*`` flag or one without its value (usage).
    """
    flags: dict[str, str] = {}
    rest: list[str] = []
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


def ids_as_positionals(rest: list[str]) -> list[str]:
    """Put ``--`` before the argument of ``show``/``delete``/``revoke-user`` (after their own
    options), so argparse does not read a user id such as ``-7`` as an option."""
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


def load_settings(flags: dict[str, str], config_file: str | None) -> SessionSettings:
    """The application's settings: defaults, then the config file, then the command line.

    :raises CommandError: naming every flag or config file value that is wrong, or the config
        file line that failed.
    """
    values: dict[str, Any] = read_config_file(config_file) if config_file else {}
    values.update(flags)

    def describe(name: str) -> str:
        if name in flags or not config_file:
            return f"--session-{name}"
        return f"session_{name.replace('-', '_')} in {config_file}"

    try:
        return SessionSettings.from_mapping(values, describe)
    except ConfigurationError as error:
        raise CommandError(EXIT_CONFIGURATION, str(error)) from None


def read_config_file(path: str) -> dict[str, Any]:
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
    namespace: dict[str, Any] = {"__file__": os.path.abspath(path)}
    try:
        exec(compile(source, path, "exec"), namespace, namespace)
    except SyntaxError as error:
        raise CommandError(EXIT_CONFIGURATION, f"{path}, line {error.lineno}: syntax error: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 - the file is the user's code: it may raise anything
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == path]
        where = f", line {lines[-1]}" if lines else ""
        raise CommandError(EXIT_CONFIGURATION, f"{path}{where}: {type(error).__name__}: {error}") from None
    values: dict[str, Any] = {}
    known = [f"session-{setting}" for setting in SETTINGS_BY_NAME]
    misspelt: list[str] = []
    for name, value in namespace.items():
        flag = normalise_name(name)
        if flag.startswith("session-") and flag[len("session-"):] in SETTINGS_BY_NAME:
            values[flag[len("session-"):]] = value
        elif not name.startswith("__"):
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.8)
            if close:
                misspelt.append(f"{name} is no redis_session setting (the application ignores it too); "
                                f"did you mean {close[0].replace('-', '_')}?")
    if misspelt:
        # a typo would otherwise point the command at the wrong prefix or store without a word
        raise CommandError(EXIT_CONFIGURATION, f"{path}: " + "; ".join(misspelt))
    return values
