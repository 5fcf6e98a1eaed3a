"""Reading the Flask config: the ``SESSION_*`` key of each setting, the settings an app's config
gives, a warning for a key that looks like a misspelt setting, and what is wrong with a
``SECRET_KEY`` that cannot sign the session cookie.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import flask

from .errors import ConfigurationWarning
from .settings import SETTINGS, SessionSettings


def config_key(name: str) -> str:
    """Flask config key of a setting: ``expire`` -> ``SESSION_EXPIRE``."""
    return "SESSION_" + name.upper().replace("-", "_")


def settings_from_config(config: Any) -> SessionSettings:
    """Settings from a Flask config; ``None`` values (Flask's own defaults) mean "not set"."""
    values = {setting.name: config.get(config_key(setting.name)) for setting in SETTINGS}
    return SessionSettings.from_mapping(values, describe=config_key)

def warn_about_misspelt_keys(config: Mapping[str, Any]) -> None:
    """Warn (ConfigurationWarning) about a ``SESSION_*`` key that is neither a setting of this
    library nor one of Flask's own but looks like one of ours (``SESSION_EXPIRES``): a typo
    would otherwise leave the default silently in force. Keys of other extensions that look
    like none of ours pass without a word."""
    ours = [config_key(setting.name) for setting in SETTINGS]
    for key in config:
        if key.startswith("SESSION_") and key not in ours and key not in flask.Flask.default_config:
            close = difflib.get_close_matches(key, ours, n=1, cutoff=0.8)
            if close:
                warnings.warn(f"{key} is not a redis_session setting (so it changes nothing); did you mean {close[0]}?",
                              ConfigurationWarning, stacklevel=stack_level_of_caller())


def stack_level_of_caller() -> int:
    """The ``stacklevel`` that makes a warning point at the application's line that called into
    the library (``setup_session(app)``, ``RedisSession(app)``, ``init_app(app)``), however many
    of the library's own frames lie between."""
    package = os.path.dirname(__file__) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def secret_problems(secret: Any, fallbacks: Any) -> list[str]:
    """Why ``SECRET_KEY`` / ``SECRET_KEY_FALLBACKS`` cannot sign and check the session cookie."""
    problems: list[str] = []
    if not secret:
        problems.append("SECRET_KEY is not set; the session-id cookie is signed with it, so set "
                        "app.config['SECRET_KEY'] to a long random value")
    elif not isinstance(secret, (str, bytes)):
        problems.append(f"SECRET_KEY must be a str or bytes, got {type(secret).__name__}")
    if fallbacks is not None and not _is_key_list(fallbacks):
        # A plain string would be taken as a list of one-character keys, each of which anyone can
        # sign with: refuse it rather than guess. The message names types only, never a secret.
        if isinstance(fallbacks, (str, bytes)):
            got = f"a single {type(fallbacks).__name__}; wrap it in a list"
        elif isinstance(fallbacks, (list, tuple)):
            got = "a list with an empty or non-text entry"
        else:
            got = f"a {type(fallbacks).__name__}"
        problems.append(
            "SECRET_KEY_FALLBACKS must be a list of old secret keys, each a non-empty str or bytes "
            f"(such as ['old-secret']), got {got}"
        )
    return problems


def _is_key_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(key, (str, bytes)) and key for key in value)
