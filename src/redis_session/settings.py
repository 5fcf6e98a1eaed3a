"""The one place where configuration is read, coerced and validated.

Tornado flags, a Tornado Application's ``redis_session={...}`` setting and Flask's ``SESSION_*``
config keys all describe the same :class:`SessionSettings`. :data:`SETTINGS` is the single table
of names, types, defaults and help texts: the Tornado module defines its flags from it and the
Flask module reads its config keys from it, so the three spellings cannot drift apart.

Settings are resolved once per application into a frozen object; nothing here is process-wide.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, ConfigurationWarning

#: Longest duration accepted for any lifetime setting (about 68 years); Redis refuses TTLs whose
#: expiry time in milliseconds does not fit 64 bits, which a typo like 10**18 would make.
MAX_SECONDS = 2**31 - 1
SAMESITE_VALUES = {"lax": "Lax", "strict": "Strict", "none": "None", "": ""}


@dataclass(frozen=True)
class Setting:
    """One configurable value: its public name (``session-<name>`` as a flag), type and default."""

    name: str
    attribute: str
    type: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("redis", "redis_url", str, "redis://localhost:6379",
            "session store URL: redis://, rediss://, unix://, redis+cluster://, redis+sentinel://, "
            "or memory:// (in-process, development only)"),
    Setting("redis-prefix", "prefix", str, "redis",
            "Redis key prefix: sessions live at {prefix}:sessions:{SHA-256 of the id} (see hash-ids), each user's index "
            "at {prefix}:users:{user id}"),
    Setting("expire", "expire", int, 86400,
            "idle timeout in seconds: a session unused this long is deleted (every read or write restarts it)"),
    Setting("max-lifetime", "max_lifetime", int, 0,
            "absolute timeout in seconds from creation, however active the session is (0: none)"),
    Setting("hash-ids", "hash_ids", bool, True,
            "store new sessions under the SHA-256 of their id, so no id sits in Redis (keys, indexes, MONITOR, "
            "backups); false: under the id itself, as before 1.1 (sessions of either kind are found either way)"),
    Setting("cookie-id", "cookie_name", str, "session-id", "name of the session-id cookie"),
    Setting("cookie-secure", "cookie_secure", bool, True,
            "send the cookie with the Secure attribute (browsers then return it over HTTPS only)"),
    Setting("cookie-domain", "cookie_domain", str, "", "cookie Domain attribute ('': host-only cookie)"),
    Setting("cookie-path", "cookie_path", str, "/", "cookie Path attribute"),
    Setting("cookie-http-only", "cookie_http_only", bool, True,
            "send the cookie with the HttpOnly attribute (hidden from JavaScript)"),
    Setting("cookie-samesite", "cookie_samesite", str, "Lax",
            "cookie SameSite attribute: Lax, Strict, None (needs Secure) or '' to omit it"),
    Setting("cookie-max-age", "cookie_max_age", int, 30 * 86400,
            "seconds the browser keeps the cookie after the session is created (0: until the browser closes)"),
    Setting("cookie-renew-after", "cookie_renew_after", int, 0,
            "seconds after its signing when a request that uses the session sends the cookie again, with a "
            "fresh signature and Max-Age, so active users stay signed in (0: half of cookie-max-age)"),
    Setting("legacy-cookies-until", "legacy_cookies_until", str, "",
            "until this date (YYYY-MM-DD, UTC) also accept the cookies of redis-session 0.2.1 (unsigned, or its "
            "Flask signing) for sessions that exist, and send them back signed; '' (default): never"),
    Setting("redis-timeout", "redis_timeout", float, 2.0,
            "seconds to wait for Redis (connect and each reply) before answering 503"),
    Setting("max-value-bytes", "max_value_bytes", int, 128 * 1024,
            "largest value one field may hold, in bytes; a larger write raises SessionLimitError"),
    Setting("max-fields", "max_fields", int, 1000,
            "most fields one session may hold; a write past it raises SessionLimitError"),
    Setting("max-name-bytes", "max_name_bytes", int, 256,
            "longest field name or bind_user() user id, in UTF-8 bytes; a longer one raises SessionLimitError "
            "before Redis is asked"),
    Setting("max-session-bytes", "max_session_bytes", int, 1024 * 1024,
            "most bytes (field names and values together) one session may hold; a write past it raises "
            "SessionLimitError and writes nothing (checked on the server, atomically with max-fields)"),
    Setting("max-per-user", "max_per_user", int, 0,
            "most sessions one user (bind_user) may hold; the oldest is ended past it (0: no limit)"),
    Setting("max-cookie-length", "max_cookie_length", int, 512,
            "longest session cookie accepted; longer ones are ignored before any signature check"),
    Setting("redis-wait-replicas", "redis_wait_replicas", int, 0,
            "replicas that must confirm a logout, regenerate or admin delete (Redis WAIT) before it "
            "returns, so a failover cannot bring the session back (0: do not wait)"),
    Setting("redis-wait-timeout", "redis_wait_timeout", float, 1.0,
            "seconds WAIT may block for those replicas (shorter than redis-timeout); past it a warning "
            "is logged and the logout still succeeds"),
    Setting("redis-durable-writes", "redis_durable_writes", bool, False,
            "follow every write (not only logouts) with WAIT for session-redis-wait-replicas replicas: an "
            "acknowledged write survives a failover; one the replicas do not confirm answers 503"),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class SessionSettings:
    """Everything a session needs to know, validated. Build it with :meth:`from_mapping`."""

    redis_url: str = "redis://localhost:6379"
    prefix: str = "redis"
    expire: int = 86400
    max_lifetime: int = 0
    hash_ids: bool = True
    cookie_name: str = "session-id"
    cookie_secure: bool = True
    cookie_domain: str = ""
    cookie_path: str = "/"
    cookie_http_only: bool = True
    cookie_samesite: str = "Lax"
    cookie_max_age: int = 30 * 86400
    cookie_renew_after: int = 0
    legacy_cookies_until: str = ""
    redis_timeout: float = 2.0
    max_value_bytes: int = 128 * 1024
    max_fields: int = 1000
    max_name_bytes: int = 256
    max_session_bytes: int = 1024 * 1024
    max_per_user: int = 0
    max_cookie_length: int = 512
    redis_wait_replicas: int = 0
    redis_wait_timeout: float = 1.0
    redis_durable_writes: bool = False
    #: Clients the application handed over instead of a URL (at most one per I/O model); they
    #: stay the application's: the library never closes them. Not part of equality: a client
    #: is not a value.
    redis_clients: tuple[Any, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        describe: Callable[[str], str] = lambda name: f"session-{name}",
    ) -> SessionSettings:
        """Build settings from ``{name: value}`` where names are the flag names without
        ``session-`` (``expire``, ``cookie-secure``; underscores work too).

        Values may be strings (config files, environment) and are coerced. ``describe`` turns a
        name into the spelling the user wrote (``--session-expire``, ``SESSION_EXPIRE``) so the
        error message points at the right line.

        :raises ConfigurationError: listing every unknown name and invalid value.
        """
        problems: list[str] = []
        resolved: dict[str, Any] = {}
        for raw_name, raw_value in values.items():
            name = normalise_name(raw_name)
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None:
                known = ", ".join(s.name for s in SETTINGS)
                problems.append(f"unknown setting {raw_name!r} (known: {known})")
                continue
            if raw_value is None:
                continue  # unset: keep the default
            if name == "redis" and not isinstance(raw_value, str):
                # the application's own client(s): its TLS, ACL user, instrumentation, pool
                try:
                    resolved["redis_clients"] = own_clients(raw_value)
                except ValueError as error:
                    problems.append(f"{describe(name)}: {error}")
                continue
            try:
                resolved[setting.attribute] = coerce(raw_value, setting.type)
            except ValueError as error:
                problems.append(f"{describe(name)}: {error}")
        # An unknown or unreadable value keeps its default here, so the range checks still run on
        # everything else: one typo must not hide the other problems until the next restart.
        settings = cls(**resolved)
        problems.extend(settings.problems(describe))
        if problems:
            raise ConfigurationError(problems)
        from .settings_checks import client_cautions

        for caution in client_cautions(settings.redis_clients):
            warnings.warn(f"{describe('redis')}: {caution}", ConfigurationWarning, stacklevel=3)
        return settings

    def problems(self, describe: Callable[[str], str]) -> list[str]:
        """Every reason these values cannot work, in flag order (see :mod:`.settings_checks`)."""
        from .settings_checks import problems_of

        return problems_of(self, describe)

    def __post_init__(self) -> None:
        # Store SameSite in its canonical spelling so the glue never re-normalises it.
        canonical = SAMESITE_VALUES.get(self.cookie_samesite.lower())
        if canonical is not None and canonical != self.cookie_samesite:
            object.__setattr__(self, "cookie_samesite", canonical)

    def replace(self, **changes: Any) -> SessionSettings:
        """A copy with some attributes changed (validated like the original)."""
        settings = dataclasses.replace(self, **changes)
        problems = settings.problems(lambda name: f"session-{name}")
        if problems:
            raise ConfigurationError(problems)
        return settings

    @functools.cached_property  # read on every request that carries a cookie
    def cookie_max_age_days(self) -> float:
        """How old a signed cookie may be before its signature is refused.

        Tornado refuses signed values older than ``max_age_days`` (31 by default), which would end
        a long-lived active session early. The bound follows the cookie lifetime instead, and the
        absolute session lifetime when that is shorter; without either, Redis's TTL decides.
        """
        bounds = [seconds for seconds in (self.cookie_max_age, self.max_lifetime) if seconds > 0]
        return (min(bounds) / 86400 + 1 / 24) if bounds else 36500.0

    @property
    def user_index_ttl(self) -> int:
        """Seconds a user's session index must outlive the latest ``bind_user`` (0: forever).

        A session bound now is usable until its cookie signature or its absolute lifetime runs
        out, and its key then lives at most one idle timeout longer; past that every entry the
        index holds is dead, so the index may expire with it. Without either bound only pruning
        (on every bind) keeps it small.
        """
        bounds = [seconds for seconds in (self.cookie_max_age, self.max_lifetime) if seconds > 0]
        return min(bounds) + 3600 + self.expire if bounds else 0

    @property
    def cookie_renewal_age(self) -> float:
        """How old a session cookie's signature may get before a request that uses the session
        signs it anew (``inf``: never, for a browser-session cookie, which has no Max-Age to renew).

        Without renewal the cookie of an active user would still die at its Max-Age (and its
        signature be refused), logging the user out while the idle timeout kept sliding."""
        if not self.cookie_max_age:
            return float("inf")
        return float(self.cookie_renew_after or self.cookie_max_age // 2)

    @property
    def legacy_cookies_accepted(self) -> bool:
        """Whether the upgrade window for redis-session 0.2.1's cookies is open now (see
        ``legacy-cookies-until``): until the end of that day, UTC."""
        if not self.legacy_cookies_until:
            return False
        until = datetime.date.fromisoformat(self.legacy_cookies_until)
        return datetime.datetime.now(datetime.timezone.utc).date() <= until

    @property
    def cookie_max_age_for_new_sessions(self) -> int | None:
        """``Max-Age`` of the cookie set when a session is created or regenerated (``None``: a
        browser-session cookie): the cookie lifetime, capped by the absolute session lifetime,
        since a cookie that outlives its session only sends a dead id."""
        if not self.cookie_max_age:
            return None
        if self.max_lifetime:
            return min(self.cookie_max_age, self.max_lifetime)
        return self.cookie_max_age

    def cookie_attributes(self) -> dict[str, Any]:
        """The session cookie's attributes as keyword arguments of both Tornado's and Werkzeug's
        ``set_cookie``: ``domain``, ``path``, ``secure``, ``httponly``, ``samesite`` (``None``
        omits an attribute). The same values must also expire the cookie, or browsers keep it."""
        return {
            "domain": self.cookie_domain or None,
            "path": self.cookie_path,
            "secure": self.cookie_secure,
            "httponly": self.cookie_http_only,
            "samesite": self.cookie_samesite or None,
        }


def own_clients(value: Any) -> tuple[Any, ...]:
    """The redis-py client, or the pair of a blocking and an asyncio client, given as the store.

    :raises ValueError: for anything that is not one or two clients, one of each I/O model.
    """
    clients = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not clients or not all(callable(getattr(client, "execute_command", None)) for client in clients):
        raise ValueError(
            f"expected a store URL, a redis-py client, or a (blocking client, asyncio client) pair, got {value!r}"
        )
    kinds = [inspect.iscoroutinefunction(client.execute_command) for client in clients]
    if len(clients) > 2 or len(set(kinds)) != len(kinds):
        raise ValueError("give at most one blocking client (redis.Redis, RedisCluster) and one asyncio client (redis.asyncio)")
    return clients


def normalise_name(name: str) -> str:
    """``cookie_secure``, ``COOKIE-SECURE`` and ``cookie-secure`` are the same setting."""
    return name.strip().lower().replace("_", "-")


def coerce(value: Any, kind: type) -> Any:
    """Convert a configured value to ``kind``; strings from config files or env are parsed."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value
