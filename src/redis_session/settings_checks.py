"""What makes settings unusable: every check, run at once so one message lists every problem.

:meth:`SessionSettings.from_mapping` and :meth:`SessionSettings.replace` call
:func:`problems_of`; nothing here coerces or stores anything.
"""

from __future__ import annotations

import datetime
import importlib.util
import re
from collections.abc import Callable
from typing import Any

from .addresses import describe_url, store_url_problems
from .settings import MAX_SECONDS, SAMESITE_VALUES, SessionSettings

SUPPORTED_SCHEMES = (
    "redis", "rediss", "unix", "memory",
    "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel",
)
# Both are used with fullmatch(): a "$" anchor would also accept a trailing newline ("sid\n").
# RFC 6265 cookie-name token: visible ASCII except separators.
COOKIE_NAME_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
PREFIX_PATTERN = re.compile(r"[^\s{}]+")
# A cookie Domain: host name labels (an IP address fits too), optionally with a leading dot.
COOKIE_DOMAIN_PATTERN = re.compile(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
# A cookie Path: visible ASCII without ';' or ',' (they would end or split the attribute).
COOKIE_PATH_PATTERN = re.compile(r"/[\x21-\x2b\x2d-\x3a\x3c-\x7e]*")
#: Longest Redis timeout accepted: an hour is already far past any useful wait for one reply.
MAX_TIMEOUT_SECONDS = 3600.0


def problems_of(settings: SessionSettings, describe: Callable[[str], str]) -> list[str]:
    """Every reason ``settings`` cannot work, in flag order."""
    found: list[str] = []
    scheme = settings.redis_url.split("://", 1)[0].lower() if "://" in settings.redis_url else ""
    if scheme not in SUPPORTED_SCHEMES:
        found.append(
            f"{describe('redis')}: {describe_url(settings.redis_url)!r} is not a store URL; use one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    else:  # a bad cluster or sentinel URL fails here, at startup, not on the first request
        found.extend(f"{describe('redis')}: {problem}" for problem in store_url_problems(settings.redis_url))
    if scheme == "memory" and importlib.util.find_spec("fakeredis") is None:
        found.append(f"{describe('redis')}: memory:// needs fakeredis; install it with pip install 'redis_session[memory]'")
    if not PREFIX_PATTERN.fullmatch(settings.prefix):
        found.append(f"{describe('redis-prefix')}: {settings.prefix!r} must be non-empty, without spaces or braces")
    if not 0 < settings.expire <= MAX_SECONDS:
        found.append(f"{describe('expire')}: must be a positive number of seconds up to {MAX_SECONDS}, got {settings.expire}")
    if not 0 <= settings.max_lifetime <= MAX_SECONDS:
        found.append(
            f"{describe('max-lifetime')}: must be 0 (off) or a positive number of seconds up to {MAX_SECONDS}, "
            f"got {settings.max_lifetime}"
        )
    if not COOKIE_NAME_PATTERN.fullmatch(settings.cookie_name):
        found.append(f"{describe('cookie-id')}: {settings.cookie_name!r} is not a valid cookie name")
    if settings.cookie_domain and not COOKIE_DOMAIN_PATTERN.fullmatch(settings.cookie_domain):
        found.append(
            f"{describe('cookie-domain')}: {settings.cookie_domain!r} is not a valid cookie domain "
            "(ASCII host name labels such as example.com or .example.com; '' for host-only)"
        )
    if not COOKIE_PATH_PATTERN.fullmatch(settings.cookie_path):
        found.append(
            f"{describe('cookie-path')}: {settings.cookie_path!r} must start with '/' and hold only visible "
            "ASCII characters other than ';' and ','"
        )
    samesite = SAMESITE_VALUES.get(settings.cookie_samesite.lower())
    if samesite is None:
        found.append(f"{describe('cookie-samesite')}: {settings.cookie_samesite!r} must be Lax, Strict, None or ''")
    elif samesite == "None" and not settings.cookie_secure:
        found.append(
            f"{describe('cookie-samesite')}: SameSite=None is only accepted by browsers together "
            f"with Secure; enable {describe('cookie-secure')}"
        )
    if not 0 <= settings.cookie_max_age <= MAX_SECONDS:
        found.append(
            f"{describe('cookie-max-age')}: must be 0 (browser session) or positive seconds up to {MAX_SECONDS}, "
            f"got {settings.cookie_max_age}"
        )
    if not 0 <= settings.cookie_renew_after <= MAX_SECONDS:
        found.append(
            f"{describe('cookie-renew-after')}: must be 0 (half of cookie-max-age) or positive seconds, "
            f"got {settings.cookie_renew_after}"
        )
    elif settings.cookie_max_age > 0 and settings.cookie_renew_after >= settings.cookie_max_age:
        found.append(
            f"{describe('cookie-renew-after')}: {settings.cookie_renew_after} s must be shorter than "
            f"{describe('cookie-max-age')} ({settings.cookie_max_age} s), or cookies would expire before they are renewed"
        )
    if settings.legacy_cookies_until:
        try:
            datetime.date.fromisoformat(settings.legacy_cookies_until)
        except ValueError:
            found.append(
                f"{describe('legacy-cookies-until')}: {settings.legacy_cookies_until!r} is not a date; write it as "
                "YYYY-MM-DD (the last day a redis-session 0.2.1 cookie is accepted), or '' for never"
            )
    if not 0 < settings.redis_timeout <= MAX_TIMEOUT_SECONDS:  # also refuses nan
        found.append(
            f"{describe('redis-timeout')}: must be a positive number of seconds up to {MAX_TIMEOUT_SECONDS:g}, "
            f"got {settings.redis_timeout}"
        )
    if settings.max_value_bytes <= 0:
        found.append(f"{describe('max-value-bytes')}: must be positive, got {settings.max_value_bytes}")
    if settings.max_fields <= 0:
        found.append(f"{describe('max-fields')}: must be positive, got {settings.max_fields}")
    for key, value in (("max-name-bytes", settings.max_name_bytes), ("max-session-bytes", settings.max_session_bytes)):
        if value <= 0:
            found.append(f"{describe(key)}: must be positive, got {value}")
    if settings.max_per_user < 0:
        found.append(f"{describe('max-per-user')}: must be 0 (no limit) or positive, got {settings.max_per_user}")
    if settings.max_cookie_length < 64:
        found.append(f"{describe('max-cookie-length')}: must be at least 64 (a signed id needs that), got {settings.max_cookie_length}")
    found.extend(_wait_problems(settings, scheme, describe))
    return found

def _wait_problems(settings: SessionSettings, scheme: str, describe: Callable[[str], str]) -> list[str]:
    """WAIT must be able to finish before the socket timeout, and needs replicas to ask."""
    found: list[str] = []
    replicas = settings.redis_wait_replicas
    if replicas < 0:
        found.append(f"{describe('redis-wait-replicas')}: must be 0 (do not wait) or a number of replicas, got {replicas}")
    if not 0 < settings.redis_wait_timeout <= MAX_TIMEOUT_SECONDS:  # also refuses nan
        found.append(
            f"{describe('redis-wait-timeout')}: must be a positive number of seconds up to {MAX_TIMEOUT_SECONDS:g}, "
            f"got {settings.redis_wait_timeout}"
        )
    elif replicas > 0 and settings.redis_wait_timeout >= settings.redis_timeout:
        found.append(
            f"{describe('redis-wait-timeout')}: {settings.redis_wait_timeout} s must be shorter than "
            f"{describe('redis-timeout')} ({settings.redis_timeout} s), or the reply to WAIT would time out first"
        )
    if replicas > 0 and scheme == "memory":
        found.append(f"{describe('redis-wait-replicas')}: a memory:// store has no replicas to wait for; use 0")
    if settings.redis_durable_writes and replicas <= 0:
        found.append(
            f"{describe('redis-durable-writes')}: waits for {describe('redis-wait-replicas')} replicas, which is 0; "
            "set it to the number of replicas (all of them, so whichever is promoted holds every acknowledged write)"
        )
    return found


def client_cautions(clients: tuple[Any, ...]) -> list[str]:
    """What could go wrong with the application's own clients (they work, so these are
    warnings): no socket timeout, where a stalled Redis holds a request for ever; retries, where
    an ``incr()`` whose reply was lost is applied twice."""
    cautions: list[str] = []
    for client in clients:
        name = type(client).__name__
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if "socket_timeout" in options and options["socket_timeout"] is None:
            cautions.append(
                f"the {name} given as the session store has no socket_timeout: a stalled Redis would hold "
                "requests without end (session-redis-timeout applies only to clients the library builds)"
            )
        get_retry = getattr(client, "get_retry", None)
        retries = getattr(get_retry(), "_retries", 0) if callable(get_retry) else 0
        if retries:
            cautions.append(
                f"the {name} given as the session store retries failed commands ({retries} times): an incr() or "
                "flash() whose reply was lost can then be applied twice; build it with retry=Retry(NoBackoff(), 0)"
            )
    return cautions
