"""Every error the library raises derives from :class:`RedisSessionError`.

One root lets an application catch "anything from the session layer" in one place, while the
subclasses also derive from the matching built-in (``ValueError``, ``TypeError``) so code that
already catches those keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable


class RedisSessionError(Exception):
    """Root of all redis_session errors."""


class ConfigurationError(RedisSessionError, ValueError):
    """The settings cannot work; the message lists every problem at once.

    Listing all problems (not just the first) saves a fix-restart-fail loop per typo.
    """

    def __init__(self, problems: Iterable[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = f"redis_session is misconfigured: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {problem}" for problem in self.problems)
            message = f"redis_session is misconfigured ({len(self.problems)} problems):\n{lines}"
        super().__init__(message)


class SessionUnavailableError(RedisSessionError):
    """The session store did not answer in time or refused the connection.

    The web glue turns this into a ``503 Service Unavailable`` with a single log line; the next
    request tries again, so the application recovers on its own when Redis is back.
    """

    #: The cause's text is cut to this length: some redis-py errors embed a whole client repr
    #: (over a kilobyte), and this message is the one log line each failed request gets.
    CAUSE_TEXT_LIMIT = 200

    def __init__(self, store: str, cause: BaseException) -> None:
        self.store = store
        self.cause = cause
        text = str(cause)
        if len(text) > self.CAUSE_TEXT_LIMIT:
            text = text[: self.CAUSE_TEXT_LIMIT - 3] + "..."
        super().__init__(f"session store {store} is unavailable: {type(cause).__name__}: {text}")


class SessionValueError(RedisSessionError, ValueError):
    """A session operation cannot apply to the value stored in the field (e.g. incr on text)."""


class SessionTypeError(RedisSessionError, TypeError):
    """A value, name or argument of the wrong type (the message names the field and the type)."""


class SessionLimitError(RedisSessionError, ValueError):
    """A write would exceed a configured size limit; nothing was written."""


class SessionStateError(RedisSessionError, RuntimeError):
    """A session operation was called where it cannot do what it promises, such as creating a
    session after the response has finished (its cookie could never be sent), or in a WebSocket,
    or an operation of an async session that was never awaited. Nothing was written."""


class SessionConflictError(SessionStateError):
    """A concurrent request moved this session to a new id first (a form submitted twice), and
    this request may not follow it there (a plain ``regenerate()``, or a login as another user:
    following would hand the session to whoever planted the old id). Its change was not made;
    the web glue answers 409 Conflict, and the browser keeps the session the other request set."""


class StoreRefusedError(ConfigurationError):
    """The session store answers but refuses this configuration: a wrong user name or password,
    a Redis user without a permission the sessions need, a database that does not exist, a
    cluster node named by a plain URL. Retrying never helps (it is not an outage): the web glue
    answers 500, not 503, and logs one line per minute, not a traceback per request."""

    def __init__(self, store: str, cause: BaseException, advice: str) -> None:
        self.store = store
        self.cause = cause
        text = str(cause)
        if len(text) > SessionUnavailableError.CAUSE_TEXT_LIMIT:
            text = text[: SessionUnavailableError.CAUSE_TEXT_LIMIT - 3] + "..."
        super().__init__(f"session store {store} refused this configuration: {advice} ({type(cause).__name__}: {text})")


class ConfigurationWarning(UserWarning):
    """A configuration that works but is probably not what was meant (a misspelt setting name)."""
