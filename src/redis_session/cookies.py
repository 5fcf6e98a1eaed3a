"""Reading the session cookie out of a raw ``Cookie`` header, the same way for every framework.

The frameworks' own parsers keep one value per name (the last one, for Tornado), so a second
cookie of the same name, planted by a sibling subdomain or a more specific path (cookie
tossing), silently replaces the real one. Reading the header here sees every cookie a framework
could take for the session cookie, however the header spells it (spaces or tabs around the
name, a quoted name, a quoted value), so a request carrying two is refused: it gets a new
session, never either of the two.
"""

from __future__ import annotations

#: What a browser or an attacker may put around a cookie name that parsers strip.
_NAME_PADDING = " \t\"'"


def session_cookie_values(header: str, name: str) -> list[str]:
    """The value of every cookie in ``header`` that a framework could read as ``name`` (its
    surrounding whitespace and quotes removed), in header order."""
    if name not in header:  # a header without the name at all holds none (the common case)
        return []
    values: list[str] = []
    for chunk in header.split(";"):
        key, has_value, value = chunk.partition("=")
        if has_value and key.strip().strip(_NAME_PADDING) == name:
            values.append(unquote(value.strip()))
    return values


def unquote(value: str) -> str:
    """A cookie value without the double quotes a server may have put around it (Tornado quotes
    its signed values). A quoted value with escapes inside is none a signer wrote: it comes back
    empty, which reads as no session."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return "" if "\\" in inner or '"' in inner else inner
    return value
