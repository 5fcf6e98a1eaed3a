"""Configuration: ``SessionSettings.from_mapping``, the ``--session-*`` Tornado flags, and how an
Application's ``redis_session={...}`` setting combines with them in ``resolve_settings``.

Every test uses its own ``OptionParser`` (never the global ``tornado.options.options``, which other
tests share), and nothing here opens a connection: settings are only read and validated.
"""

from __future__ import annotations

import dataclasses

import pytest
import tornado.options
from tornado.options import OptionParser

from redis_session import ConfigurationError, SessionSettings
from redis_session.settings import SETTINGS
from redis_session.tornado_session import define_flags, resolve_settings

SECRET = {"cookie_secret": "x"}

# The flags of redis-session 0.2.1, with their defaults: upgrading must not change any of them.
FLAGS_OF_0_2_1 = {
    "session-redis": "redis://localhost:6379",
    "session-redis-prefix": "redis",
    "session-expire": 86400,
    "session-cookie-id": "session-id",
    "session-cookie-secure": True,
    "session-cookie-domain": "",
    "session-cookie-path": "/",
    "session-cookie-http-only": True,
}


@pytest.fixture
def parser() -> OptionParser:
    """A private flag parser with every ``--session-*`` flag defined."""
    fresh = OptionParser()
    define_flags(fresh)
    return fresh


def resolve(parser: OptionParser, **redis_session) -> SessionSettings:
    """What an Application with ``cookie_secret`` and ``redis_session=...`` would resolve."""
    return resolve_settings({**SECRET, "redis_session": redis_session}, parser)


def problems_of(parser: OptionParser, **redis_session) -> list:
    """The problems an Application with these ``redis_session`` overrides is refused for."""
    with pytest.raises(ConfigurationError) as caught:
        resolve(parser, **redis_session)
    return caught.value.problems


# --- defaults --------------------------------------------------------------------------------


def test_flag_defaults_are_those_of_redis_session_0_2_1(parser):
    """Every flag redis-session 0.2.1 had keeps its name and its default."""
    assert {flag: parser[flag] for flag in FLAGS_OF_0_2_1} == FLAGS_OF_0_2_1


def test_new_flags_default_to_lax_samesite_and_a_bounded_redis_timeout(parser):
    """The flags added since 0.2.1 default to ``SameSite=Lax`` and a short positive Redis timeout."""
    assert parser["session-cookie-samesite"] == "Lax"
    timeout = parser["session-redis-timeout"]
    assert isinstance(timeout, float)
    assert 0 < timeout <= 10


def test_settings_defaults_are_those_of_redis_session_0_2_1():
    """``SessionSettings()`` holds the same defaults as the 0.2.1 flags."""
    settings = SessionSettings()
    assert settings.redis_url == "redis://localhost:6379"
    assert settings.prefix == "redis"
    assert settings.expire == 86400
    assert settings.cookie_name == "session-id"
    assert settings.cookie_secure is True
    assert settings.cookie_domain == ""
    assert settings.cookie_path == "/"
    assert settings.cookie_http_only is True
    assert settings.cookie_samesite == "Lax"
    assert settings.redis_timeout > 0


def test_flag_defaults_and_settings_defaults_never_drift_apart():
    """Each flag's default equals the matching ``SessionSettings`` default."""
    defaults = SessionSettings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.attribute) == setting.default, setting.name


def test_untouched_flags_resolve_to_the_defaults(parser):
    """An Application with only ``cookie_secret`` gets the default settings."""
    assert resolve_settings(SECRET, parser) == SessionSettings()


# --- the Tornado flags -----------------------------------------------------------------------


def test_define_flags_defines_every_session_flag():
    """``define_flags(parser)`` adds a ``--session-<name>`` flag for every setting."""
    fresh = OptionParser()
    define_flags(fresh)
    for setting in SETTINGS:
        assert f"session-{setting.name}" in fresh
    assert set(fresh.group_dict("redis_session")) == {f"session-{setting.name}" for setting in SETTINGS}


def test_define_flags_twice_does_not_raise(parser):
    """Calling ``define_flags`` again on the same parser is harmless and keeps parsed values."""
    parser.parse_command_line(["app.py", "--session-expire=60"])
    define_flags(parser)
    assert parser["session-expire"] == 60


def test_importing_the_tornado_module_defines_the_global_flags():
    """``import redis_session.tornado_session`` is enough for ``parse_command_line()`` to know the flags."""
    import redis_session.tornado_session  # noqa: F401

    for setting in SETTINGS:
        assert f"session-{setting.name}" in tornado.options.options
    assert "session-expire" in tornado.options.options


def test_command_line_flags_change_the_settings(parser):
    """``--session-*`` flags on the command line decide the settings."""
    parser.parse_command_line([
        "app.py",
        "--session-expire=60",
        "--session-redis=memory://flags",
        "--session-redis-prefix=myapp",
        "--session-cookie-id=sid",
        "--session-cookie-secure=false",
        "--session-cookie-samesite=strict",
        "--session-redis-timeout=0.5",
    ])
    settings = resolve_settings(SECRET, parser)
    assert settings.expire == 60
    assert settings.redis_url == "memory://flags"
    assert settings.prefix == "myapp"
    assert settings.cookie_name == "sid"
    assert settings.cookie_secure is False
    assert settings.cookie_samesite == "Strict"
    assert settings.redis_timeout == 0.5


@pytest.mark.parametrize(("argument", "expected"), [
    ("--session-cookie-secure=no", False), ("--session-cookie-secure=off", False), ("--session-cookie-secure=0", False),
    ("--session-cookie-secure=FALSE", False), ("--session-cookie-secure=yes", True), ("--session-cookie-secure=On", True),
    ("--session-cookie-secure=1", True), ("--session-cookie-secure", True),
    ("--session-cookie-http-only=off", False), ("--session-cookie-http-only", True),
])
def test_boolean_flags_read_the_words_every_other_spelling_reads(parser, argument, expected):
    """A boolean flag reads no/off/0/false as False and yes/on/1/true (or the bare flag) as True,
    exactly as the redis_session dict and the Flask keys do (tornado's own bool flags read
    "no" and "off" as True)."""
    parser.parse_command_line(["app.py", argument])
    flag = argument[2:].partition("=")[0]
    assert parser[flag] is expected
    assert resolve(parser, **{flag[len("session-"):]: argument.partition("=")[2] or "true"}) == resolve_settings(SECRET, parser)


@pytest.mark.parametrize("word", ["maybe", "2", "", "nein"])
def test_a_boolean_flag_refuses_any_other_word_naming_the_flag(parser, word):
    """``--session-cookie-secure=maybe`` stops parse_command_line with an error naming the flag
    and the words it takes, before the app starts."""
    with pytest.raises(tornado.options.Error, match=r"--session-cookie-secure: expected true or false"):
        parser.parse_command_line(["app.py", f"--session-cookie-secure={word}"])


@pytest.mark.parametrize(("argument", "message"), [
    ("--session-expire=abc", r"--session-expire: expected a whole number, got 'abc'"),
    ("--session-max-fields=1.5", r"--session-max-fields: expected a whole number"),
    ("--session-redis-timeout=fast", r"--session-redis-timeout: expected a number, got 'fast'"),
])
def test_a_number_flag_refuses_text_naming_the_flag(parser, argument, message):
    """``--session-expire=abc`` stops parse_command_line with an error naming the flag and what
    it takes, not a bare ``ValueError`` from ``int()``."""
    with pytest.raises(tornado.options.Error, match=message):
        parser.parse_command_line(["app.py", argument])


def test_a_config_file_number_is_checked_the_same_way(parser, tmp_path):
    """In a config file a quoted number that is no number is the same error naming the flag; a
    whole number for a float flag (``session_redis_timeout = 1``) is a number."""
    bad = tmp_path / "bad.conf"
    bad.write_text('session_expire = "a day"\n')
    with pytest.raises(tornado.options.Error, match=r"--session-expire: expected a whole number, got 'a day'"):
        parser.parse_config_file(str(bad))
    good = tmp_path / "good.conf"
    good.write_text("session_expire = 120\nsession_redis_timeout = 1\n")
    parser.parse_config_file(str(good))
    settings = resolve_settings(SECRET, parser)
    assert (settings.expire, settings.redis_timeout) == (120, 1.0)


def test_boolean_flags_still_take_python_bools_and_refuse_text(parser):
    """In code and config files a boolean flag takes True/False, as tornado's own bool flags do,
    and refuses a string."""
    parser.session_cookie_secure = False
    assert resolve_settings(SECRET, parser).cookie_secure is False
    with pytest.raises(tornado.options.Error):
        parser.session_cookie_secure = "no"


def test_config_file_changes_the_settings(parser, tmp_path):
    """``parse_config_file`` with ``session_expire = 60`` lines decides the settings."""
    config = tmp_path / "app.conf"
    config.write_text(
        "session_expire = 60\n"
        "session_redis = 'memory://config'\n"
        "session_cookie_secure = False\n"
        "session_max_lifetime = 3600\n",
        encoding="utf-8",
    )
    parser.parse_config_file(str(config))
    settings = resolve_settings(SECRET, parser)
    assert settings.expire == 60
    assert settings.redis_url == "memory://config"
    assert settings.cookie_secure is False
    assert settings.max_lifetime == 3600


def test_config_file_may_give_numbers_as_strings(parser, tmp_path):
    """A config file line ``session_expire = '60'`` is read as the number 60."""
    config = tmp_path / "app.conf"
    config.write_text("session_expire = '60'\nsession_redis_timeout = '1.5'\n", encoding="utf-8")
    parser.parse_config_file(str(config))
    settings = resolve_settings(SECRET, parser)
    assert settings.expire == 60
    assert settings.redis_timeout == 1.5


# --- the Application's redis_session setting -------------------------------------------------


def test_application_setting_overrides_the_flags(parser):
    """``redis_session={...}`` wins over the flags; flags it does not mention still apply."""
    parser.parse_command_line(["app.py", "--session-expire=60", "--session-redis-prefix=fromflags"])
    settings = resolve(parser, expire=120, redis="memory://app")
    assert settings.expire == 120
    assert settings.redis_url == "memory://app"
    assert settings.prefix == "fromflags"


@pytest.mark.parametrize("spelling", ["cookie-id", "cookie_id", "COOKIE_ID", "Cookie-Id"])
def test_application_setting_accepts_dashes_or_underscores(parser, spelling):
    """``redis_session`` keys may be written with dashes or underscores, in any case."""
    assert resolve(parser, **{spelling: "sid"}).cookie_name == "sid"


def test_application_setting_with_underscores_everywhere(parser):
    """The underscore spelling that reads naturally as Python keywords works for every key."""
    settings = resolve(
        parser, redis_prefix="app", max_lifetime=3600, cookie_http_only=False, cookie_samesite="Strict",
        redis_timeout=1.0,
    )
    assert (settings.prefix, settings.max_lifetime, settings.cookie_http_only) == ("app", 3600, False)
    assert (settings.cookie_samesite, settings.redis_timeout) == ("Strict", 1.0)


def test_unknown_application_setting_is_reported(parser):
    """A misspelt ``redis_session`` key is refused with its name and the list of known names."""
    problems = problems_of(parser, expir=60)
    assert len(problems) == 1
    assert "'expir'" in problems[0]
    assert "expire" in problems[0].split("known", 1)[1]


@pytest.mark.parametrize("not_a_dict", [["expire", 60], "memory://", 3600])
def test_application_setting_that_is_not_a_dict_is_reported(parser, not_a_dict):
    """``redis_session`` must be a dict; anything else is refused, saying what it got."""
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings({**SECRET, "redis_session": not_a_dict}, parser)
    message = str(caught.value)
    assert "redis_session must be a dict" in message
    assert type(not_a_dict).__name__ in message


@pytest.mark.parametrize("empty", [None, {}])
def test_empty_application_setting_means_flags_only(parser, empty):
    """``redis_session=None`` or ``{}`` simply leaves the flags in charge."""
    parser.parse_command_line(["app.py", "--session-expire=60"])
    assert resolve_settings({**SECRET, "redis_session": empty}, parser).expire == 60


def test_application_setting_strings_are_coerced(parser):
    """String values in ``redis_session`` (e.g. read from the environment) are parsed."""
    settings = resolve(parser, expire="60", cookie_secure="false", redis_timeout="2.5")
    assert settings.expire == 60
    assert settings.cookie_secure is False
    assert settings.redis_timeout == 2.5


def test_missing_cookie_secret_is_reported(parser):
    """An Application without ``cookie_secret`` is refused with a message naming it."""
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        resolve_settings({}, parser)
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        resolve_settings({"cookie_secret": ""}, parser)


def test_missing_cookie_secret_is_reported_with_the_other_problems(parser):
    """A missing ``cookie_secret`` and a bad value are reported together in one error."""
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings({"redis_session": {"expire": 0}}, parser)
    assert len(caught.value.problems) == 2
    assert "cookie_secret" in str(caught.value)
    assert "redis_session['expire']" in str(caught.value)


# --- coercion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "given", "attribute", "expected"),
    [
        ("expire", "60", "expire", 60),
        ("expire", " 60 ", "expire", 60),
        ("expire", 60.0, "expire", 60),
        ("cookie-secure", "false", "cookie_secure", False),
        ("cookie-secure", "False", "cookie_secure", False),
        ("cookie-secure", "0", "cookie_secure", False),
        ("cookie-secure", "off", "cookie_secure", False),
        ("cookie-secure", "no", "cookie_secure", False),
        ("cookie-secure", "true", "cookie_secure", True),
        ("cookie-secure", "YES", "cookie_secure", True),
        ("cookie-secure", 1, "cookie_secure", True),
        ("cookie-http-only", 0, "cookie_http_only", False),
        ("redis-timeout", "2.5", "redis_timeout", 2.5),
        ("redis-timeout", 3, "redis_timeout", 3.0),
        ("max-lifetime", "0", "max_lifetime", 0),
    ],
)
def test_values_given_as_text_are_coerced(name, given, attribute, expected):
    """Text from config files or the environment is parsed into the setting's type."""
    value = getattr(SessionSettings.from_mapping({name: given}), attribute)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("expire", "abc"),
        ("expire", "60s"),
        ("expire", "1.5"),
        ("expire", 1.5),
        ("expire", True),
        ("cookie-secure", "maybe"),
        ("cookie-secure", 2),
        ("cookie-secure", "2"),
        ("redis-timeout", "fast"),
        ("redis-timeout", True),
        ("cookie-id", 5),
        ("redis", b"redis://localhost"),
    ],
)
def test_values_of_the_wrong_type_are_refused(name, given):
    """A value that cannot be read as the setting's type is refused, naming the setting."""
    with pytest.raises(ConfigurationError) as caught:
        SessionSettings.from_mapping({name: given})
    assert caught.value.problems[0].startswith(f"session-{name}:")
    assert repr(given) in str(caught.value)


def test_configuration_error_is_also_a_value_error():
    """Code that already catches ``ValueError`` catches configuration errors too."""
    with pytest.raises(ValueError):
        SessionSettings.from_mapping({"expire": 0})


def test_from_mapping_names_settings_the_way_the_caller_spells_them():
    """``describe`` lets Flask say ``SESSION_EXPIRE`` where Tornado says ``--session-expire``."""
    with pytest.raises(ConfigurationError, match="SESSION_EXPIRE: must be a positive"):
        SessionSettings.from_mapping({"expire": 0}, lambda name: "SESSION_" + name.upper().replace("-", "_"))


# --- SameSite --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("lax", "Lax"), ("LAX", "Lax"), ("Lax", "Lax"), ("strict", "Strict"), ("none", "None"), ("", "")],
)
def test_samesite_is_stored_in_its_canonical_spelling(given, stored):
    """``SameSite`` may be written in any case; the cookie gets ``Lax``, ``Strict`` or ``None``."""
    assert SessionSettings.from_mapping({"cookie-samesite": given}).cookie_samesite == stored


def test_samesite_from_flags_is_normalised(parser):
    """``--session-cookie-samesite=lax`` yields ``Lax`` too."""
    parser.parse_command_line(["app.py", "--session-cookie-samesite=lax"])
    assert resolve_settings(SECRET, parser).cookie_samesite == "Lax"


def test_unknown_samesite_is_refused():
    """A SameSite value browsers do not know is refused."""
    with pytest.raises(ConfigurationError, match="session-cookie-samesite: 'sometimes' must be Lax, Strict, None"):
        SessionSettings.from_mapping({"cookie-samesite": "sometimes"})


def test_samesite_none_needs_secure(parser):
    """``SameSite=None`` without Secure is refused, pointing at both settings."""
    with pytest.raises(ConfigurationError) as caught:
        resolve(parser, cookie_samesite="None", cookie_secure=False)
    message = str(caught.value)
    assert "redis_session['cookie-samesite']" in message
    assert "Secure" in message
    assert "cookie-secure" in message


def test_samesite_none_with_secure_is_accepted():
    """``SameSite=None`` is fine when the cookie is Secure (the default)."""
    assert SessionSettings.from_mapping({"cookie-samesite": "none"}).cookie_samesite == "None"


# --- validation ------------------------------------------------------------------------------

# (setting, a value it refuses, a phrase the message contains)
BAD_VALUES = [
    ("expire", "0", "positive"),
    ("expire", "-5", "positive"),
    ("redis", "http://x", "not a store URL"),
    ("redis", "localhost:6379", "not a store URL"),
    ("redis-prefix", "", "non-empty"),
    ("redis-prefix", "my app", "without spaces"),
    ("redis-prefix", "{app}", "braces"),
    ("max-lifetime", "-1", "0 (off)"),
    ("cookie-id", "a b", "not a valid cookie name"),
    ("cookie-id", "a;b", "not a valid cookie name"),
    ("cookie-id", "a=b", "not a valid cookie name"),
    ("cookie-id", "", "not a valid cookie name"),
    ("cookie-domain", "a b.example", "not a valid cookie domain"),
    ("cookie-domain", "example.com;x", "not a valid cookie domain"),
    ("cookie-path", "app", "must start with '/'"),
    ("cookie-path", "/a;b", "must start with '/'"),
    ("cookie-max-age", "-1", "0 (browser session)"),
    ("redis-timeout", "0", "positive"),
    ("redis-timeout", "-1", "positive"),
    ("redis-timeout", "nan", "positive"),
    ("redis-timeout", "inf", "up to 3600"),
    ("redis-timeout", "1e300", "up to 3600"),
    ("redis-wait-timeout", "1e300", "up to 3600"),
    ("expire", str(10**18), "up to"),
    ("max-lifetime", str(10**18), "up to"),
    ("cookie-max-age", str(10**18), "up to"),
    ("cookie-domain", "\u20ac.example", "not a valid cookie domain"),  # non-Latin-1: could not be sent
    ("cookie-domain", "ex\x01.com", "not a valid cookie domain"),
    ("cookie-domain", "example..com", "not a valid cookie domain"),
    ("cookie-path", "/caf\u00e9", "visible ASCII"),
    ("cookie-path", "/\x0b", "visible ASCII"),
    ("cookie-path", "/a b", "visible ASCII"),
    ("max-value-bytes", "0", "positive"),
    ("max-fields", "0", "positive"),
    ("max-per-user", "-1", "0 (no limit)"),
    ("max-cookie-length", "63", "at least 64"),
]


@pytest.mark.parametrize(("name", "bad", "phrase"), BAD_VALUES)
def test_bad_flag_value_is_refused_naming_the_flag(parser, name, bad, phrase):
    """A bad ``--session-*`` flag is refused with a message that starts with the flag."""
    parser.parse_command_line(["app.py", f"--session-{name}={bad}"])
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(SECRET, parser)
    (problem,) = caught.value.problems
    assert problem.startswith(f"--session-{name}:")
    assert phrase in problem


@pytest.mark.parametrize(("name", "bad", "phrase"), BAD_VALUES)
def test_bad_application_setting_is_refused_naming_the_key(parser, name, bad, phrase):
    """A bad ``redis_session`` value is refused with a message that starts with its key."""
    (problem,) = problems_of(parser, **{name: bad})
    assert problem.startswith(f"redis_session[{name!r}]:")
    assert phrase in problem


def test_a_non_str_key_in_the_application_setting_is_a_configuration_error(parser):
    """``redis_session={1: 2}`` is refused with a ConfigurationError naming the key, not an AttributeError."""
    with pytest.raises(ConfigurationError, match="has a key 1"):
        resolve_settings({**SECRET, "redis_session": {1: 2}}, parser)


def test_none_in_the_application_setting_keeps_the_flag_value(parser):
    """``redis_session={"expire": None}`` overrides nothing: the --session-expire flag still applies."""
    parser.parse_command_line(["app.py", "--session-expire=60"])
    assert resolve_settings({**SECRET, "redis_session": {"expire": None}}, parser).expire == 60


@pytest.mark.parametrize("domain", ["example.com", ".example.com", "localhost", "127.0.0.1", "my-app.example.co.uk"])
def test_ordinary_cookie_domains_are_accepted(domain):
    """Host names, a leading dot and IP addresses are valid cookie domains."""
    assert SessionSettings.from_mapping({"cookie-domain": domain}).cookie_domain == domain


def test_a_key_written_with_underscores_is_named_in_the_message(parser):
    """A bad ``redis_session['cookie_path']`` is reported as that Application setting."""
    (problem,) = problems_of(parser, cookie_path="app")
    assert problem.startswith("redis_session['cookie-path']:")


@pytest.mark.parametrize(
    ("scheme_url"),
    [
        "redis://localhost:6379/0",
        "rediss://cache.example:6380",
        "unix:///tmp/redis.sock",
        "memory://",
        "memory://name",
        "redis+cluster://a:7000,b:7001",
        "redis+sentinel://s1:26379/mymaster",
        "REDIS://LOCALHOST",
    ],
)
def test_supported_store_urls_are_accepted(scheme_url):
    """Every documented store URL scheme passes validation (nothing is connected)."""
    assert SessionSettings.from_mapping({"redis": scheme_url}).redis_url == scheme_url


def test_every_problem_is_reported_in_one_error(parser):
    """Three bad values give one ConfigurationError listing all three, each by its own name."""
    parser.parse_command_line(["app.py", "--session-expire=0"])
    with pytest.raises(ConfigurationError) as caught:
        resolve(parser, redis="http://x", cookie_path="app")
    error = caught.value
    assert len(error.problems) == 3
    message = str(error)
    assert "3 problems" in message
    assert "--session-expire" in message
    assert "redis_session['redis']" in message
    assert "redis_session['cookie-path']" in message


def test_every_problem_is_reported_from_the_flags_alone(parser):
    """Bad flags alone are also listed together, one line each."""
    parser.parse_command_line([
        "app.py", "--session-expire=0", "--session-redis=http://x", "--session-cookie-id=a b",
    ])
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(SECRET, parser)
    message = str(caught.value)
    for flag in ("--session-expire", "--session-redis", "--session-cookie-id"):
        assert f"  - {flag}:" in message


def test_a_misspelt_key_does_not_hide_other_problems(parser):
    """An unknown key and an invalid value are reported together, not one per restart."""
    problems = problems_of(parser, expir=60, cookie_path="app")
    assert len(problems) == 2
    assert "'expir'" in problems[0]
    assert problems[1].startswith("redis_session['cookie-path']:")


def test_an_unreadable_value_does_not_hide_other_problems(parser):
    """A value of the wrong type and out-of-range values are reported together in one error."""
    problems = problems_of(parser, expire="abc", redis="http://x", cookie_path="app")
    message = "\n".join(problems)
    assert len(problems) == 3
    assert "redis_session['expire']" in message
    assert "redis_session['redis']" in message
    assert "redis_session['cookie-path']" in message


@pytest.mark.parametrize(("name", "bad"), [("cookie-id", "sid\n"), ("redis-prefix", "app\n")])
def test_a_trailing_newline_is_refused(name, bad):
    """A cookie name or key prefix ending in a newline (a stray line end in a config value) is refused."""
    with pytest.raises(ConfigurationError, match=f"session-{name}"):
        SessionSettings.from_mapping({name: bad})


# --- the settings object ---------------------------------------------------------------------


def test_settings_are_frozen():
    """Resolved settings cannot be changed by accident; assigning raises FrozenInstanceError."""
    settings = SessionSettings.from_mapping({"expire": 60})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.expire = 1  # type: ignore[misc]
    assert settings.expire == 60


def test_resolved_settings_are_frozen_too(parser):
    """The settings an Application resolves are the same frozen kind."""
    settings = resolve_settings(SECRET, parser)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.cookie_secure = False  # type: ignore[misc]


def test_replace_returns_a_validated_copy():
    """``settings.replace(...)`` gives a changed copy and leaves the original alone."""
    settings = SessionSettings()
    shorter = settings.replace(expire=60, cookie_samesite="strict")
    assert (shorter.expire, shorter.cookie_samesite) == (60, "Strict")
    assert settings.expire == 86400
    with pytest.raises(ConfigurationError, match="session-expire"):
        settings.replace(expire=0)


@pytest.mark.parametrize(
    ("cookie_max_age", "max_lifetime", "days"),
    [
        (30 * 86400, 0, 30 + 1 / 24),
        (0, 7 * 86400, 7 + 1 / 24),
        (30 * 86400, 3600, 3600 / 86400 + 1 / 24),
        (3600, 30 * 86400, 3600 / 86400 + 1 / 24),
    ],
)
def test_cookie_max_age_days_follows_the_shorter_lifetime(cookie_max_age, max_lifetime, days):
    """Signed cookies are honoured as long as the cookie or the session may live, whichever is shorter."""
    settings = SessionSettings(cookie_max_age=cookie_max_age, max_lifetime=max_lifetime)
    assert settings.cookie_max_age_days == pytest.approx(days)


def test_cookie_max_age_days_is_long_without_any_lifetime():
    """With neither a cookie max-age nor a max-lifetime, the signature never ends a session early."""
    settings = SessionSettings(cookie_max_age=0, max_lifetime=0)
    assert settings.cookie_max_age_days >= 100 * 365


def test_a_memory_store_without_fakeredis_is_refused_at_startup(monkeypatch):
    """Without fakeredis installed, memory:// is a ConfigurationError that says what to install, raised when settings are built."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "fakeredis" else real_find_spec(name, *args))
    with pytest.raises(ConfigurationError, match=r"pip install 'redis_session\[memory\]'"):
        SessionSettings.from_mapping({"redis": "memory://"})


@pytest.mark.parametrize(("changes", "message"), [
    ({"cookie_renew_after": -1}, "['cookie-renew-after']: must be 0 (half of cookie-max-age) or positive seconds"),
    ({"cookie_renew_after": 3600, "cookie_max_age": 3600}, "must be shorter than redis_session['cookie-max-age'] (3600 s)"),
])
def test_a_renewal_age_that_could_not_work_is_refused(parser, changes, message):
    """A negative renewal age, or one at or past the cookie's Max-Age (the cookie would die
    before it is renewed), is refused at start-up, naming the flag."""
    assert any(message in problem for problem in problems_of(parser, **changes))


def test_the_renewal_age_defaults_to_half_the_cookie_max_age(parser):
    """Without --session-cookie-renew-after a cookie is renewed once it is half its Max-Age old;
    a browser-session cookie (max age 0) has no Max-Age to renew."""
    assert resolve(parser).cookie_renewal_age == 15 * 86400
    assert resolve(parser, cookie_renew_after=60).cookie_renewal_age == 60
    assert resolve(parser, cookie_max_age=0).cookie_renewal_age == float("inf")
