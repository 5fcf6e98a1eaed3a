"""Tornado's side of the settings: the ``--session-*`` flags and an Application's
``redis_session={...}`` setting, resolved into one :class:`~redis_session.settings.SessionSettings`.

The flags are defined on :data:`tornado.options.options` when
:mod:`redis_session.tornado_session` is imported, so ``parse_command_line()`` and
``parse_config_file()`` see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tornado.options import Error, OptionParser, options

from .errors import ConfigurationError
from .settings import SETTINGS, SessionSettings, coerce, normalise_name


class _BooleanFlagType(type):
    """Makes a :class:`BooleanFlag` type pass where tornado.options asks for its bool type, and
    only there: ``option.type == bool`` (a bare ``--session-cookie-secure`` means true) and
    ``isinstance(value, option.type)`` (``options.session_cookie_secure = False`` and a config file
    that sets a Python bool). Its hash stays its own, so tornado's table of parsers does not hand
    it tornado's lenient bool parser, which reads "no" and "off" as true."""

    def __eq__(cls, other: object) -> bool:
        return other is bool or other is cls

    def __hash__(cls) -> int:
        return id(cls)

    def __instancecheck__(cls, value: object) -> bool:
        return isinstance(value, bool)


class BooleanFlag(metaclass=_BooleanFlagType):
    """The type of a boolean ``--session-*`` flag: it parses the words every other spelling of a
    setting accepts (true/false, yes/no, on/off, 1/0, any case) and refuses anything else."""

    flag = ""

    def __new__(cls, text: str) -> bool:  # type: ignore[misc]
        try:
            return bool(coerce(text, bool))
        except ValueError as error:
            raise Error(f"--{cls.flag}: {error}") from None

    @classmethod
    def named(cls, flag: str) -> type:
        """The type of the flag ``flag``, so a bad value names it."""
        return _BooleanFlagType("bool", (cls,), {"flag": flag})


class _NumberFlagType(type):
    """As :class:`_BooleanFlagType`, for an int or float flag: it stands for ``int`` (``float``)
    where tornado.options compares or checks types, but parses with the library's own reader,
    so ``--session-expire=abc`` (on the command line or in a config file) is an error naming
    the flag and what it wants, not a bare ``ValueError`` from ``int()``."""

    base: type

    def __eq__(cls, other: object) -> bool:
        return other is cls.base or other is cls

    def __hash__(cls) -> int:
        return id(cls)

    def __instancecheck__(cls, value: object) -> bool:
        # a float flag takes a whole number too (``session_redis_timeout = 1`` in a config file)
        accepted: tuple[type, ...] = (int, float) if cls.base is float else (cls.base,)
        return isinstance(value, accepted) and not isinstance(value, bool)


class NumberFlag(metaclass=_NumberFlagType):
    """The type of an int or float ``--session-*`` flag (see :class:`_NumberFlagType`)."""

    flag = ""
    base: type = int

    def __new__(cls, text: str) -> Any:
        try:
            return coerce(text, cls.base)
        except ValueError as error:
            raise Error(f"--{cls.flag}: {error}") from None

    @classmethod
    def named(cls, flag: str, base: type) -> type:
        """The type of the flag ``flag`` holding a ``base`` (int or float)."""
        return _NumberFlagType(base.__name__, (cls,), {"flag": flag, "base": base})


def define_flags(parser: OptionParser = options) -> None:
    """Define every ``--session-*`` flag on ``parser`` (skipping any already defined)."""
    for setting in SETTINGS:
        flag = f"session-{setting.name}"
        if flag not in parser:
            if setting.type is bool:
                kind = BooleanFlag.named(flag)
            elif setting.type in (int, float):
                kind = NumberFlag.named(flag, setting.type)
            else:
                kind = setting.type
            parser.define(flag, default=setting.default, type=kind, help=setting.help, group="redis_session")



def flag_values(parser: OptionParser = options) -> dict[str, Any]:
    """The current value of every ``--session-*`` flag, by setting name."""
    return {setting.name: parser[f"session-{setting.name}"] for setting in SETTINGS}


def resolve_settings(application_settings: Mapping[str, Any], parser: OptionParser = options) -> SessionSettings:
    """Settings for one Application: the flags, overridden by its ``redis_session`` setting.

    :raises ConfigurationError: listing every invalid value, or naming a missing ``cookie_secret``.
    """
    problems = _cookie_secret_problems(application_settings)
    values = flag_values(parser)
    overrides = application_settings.get("redis_session") or {}
    if not isinstance(overrides, Mapping):
        problems.append(f"the Application setting redis_session must be a dict, got {type(overrides).__name__}")
        overrides = {}
    for name in overrides:
        if not isinstance(name, str):
            problems.append(f"the Application setting redis_session has a key {name!r}; keys are setting names (str)")
    # None means "not overridden": the flag's value stands, as if the key were not there
    overrides = {name: value for name, value in overrides.items() if isinstance(name, str) and value is not None}
    values.update({normalise_name(name): value for name, value in overrides.items()})

    def describe(name: str) -> str:
        if name in {normalise_name(key) for key in overrides}:
            return f"redis_session[{name!r}]"
        return f"--session-{name}"

    try:
        settings = SessionSettings.from_mapping(values, describe)
    except ConfigurationError as error:
        problems.extend(error.problems)
    if problems:
        raise ConfigurationError(problems)
    return settings


def _cookie_secret_problems(application_settings: Mapping[str, Any]) -> list[str]:
    """Why Tornado could not sign the session cookie with this Application's settings.

    Checked here, before the first session write: Tornado only finds a bad secret when it signs
    the cookie, after the session key already exists in Redis.
    """
    secret = application_settings.get("cookie_secret")
    if not secret:
        return [
            "the Application has no 'cookie_secret' setting; the session-id cookie is signed with it, "
            "so pass cookie_secret=... (a long random string, or a dict of them with key_version) "
            "to tornado.web.Application"
        ]
    if not isinstance(secret, dict):  # Tornado treats only a dict as a set of rotating keys
        return []
    key_version = application_settings.get("key_version")
    if key_version is None:
        return [
            "the Application's 'cookie_secret' is a dict of keys but it has no 'key_version' setting; "
            f"pass key_version=... naming the key new cookies are signed with (one of {sorted(secret, key=repr)})"
        ]
    if key_version not in secret:
        return [
            f"the Application's 'key_version' {key_version!r} is not a key of its 'cookie_secret' dict "
            f"(keys: {sorted(secret, key=repr)}); new cookies could not be signed"
        ]
    return []
