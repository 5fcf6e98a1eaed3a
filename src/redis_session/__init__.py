"""Server-side sessions in Redis hashes for Tornado and Flask, with typed field access.

This module re-exports the framework-free API only; it imports neither Tornado nor Flask.
"""

from __future__ import annotations

from .admin import AsyncSessionAdmin, SessionAdmin, SessionInfo
from .aio import AsyncSession
from .async_store import AsyncStore
from .errors import (
    ConfigurationError,
    ConfigurationWarning,
    RedisSessionError,
    SessionConflictError,
    SessionLimitError,
    SessionStateError,
    SessionTypeError,
    SessionUnavailableError,
    SessionValueError,
    StoreRefusedError,
)
from .session import Session
from .settings import SessionSettings
from .store import Store
from .value import Value

__version__ = "1.1.0"

__all__ = [
    "AsyncSession",
    "AsyncSessionAdmin",
    "AsyncStore",
    "ConfigurationError",
    "ConfigurationWarning",
    "RedisSessionError",
    "Session",
    "SessionAdmin",
    "SessionConflictError",
    "SessionInfo",
    "SessionLimitError",
    "SessionSettings",
    "SessionStateError",
    "SessionTypeError",
    "SessionUnavailableError",
    "SessionValueError",
    "Store",
    "StoreRefusedError",
    "Value",
    "__version__",
]
