"""Server-side sessions in Redis hashes for Tornado and Flask, with typed field access.

This module re-exports the framework-free API only; it imports neither Tornado nor Flask.
"""

from __future__ import annotations

from .admin import SessionAdmin, SessionInfo
from .errors import (
    ConfigurationError,
    RedisSessionError,
    SessionLimitError,
    SessionTypeError,
    SessionUnavailableError,
    SessionValueError,
)
from .session import Session
from .settings import SessionSettings
from .value import Value

__version__ = "1.0.0"

__all__ = [
    "ConfigurationError",
    "RedisSessionError",
    "SessionAdmin",
    "SessionInfo",
    "Session",
    "SessionLimitError",
    "SessionSettings",
    "SessionTypeError",
    "SessionUnavailableError",
    "SessionValueError",
    "Value",
    "__version__",
]
