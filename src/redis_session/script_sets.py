"""The scripts a store sends, flagged for the server that runs them, and the SHA1 each is known
by to EVALSHA: a Redis server (7.0 or newer) gets each script with its flags line, the embedded
store (fakeredis, which knows no flags) without.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from .scripts import SOURCES

# Redis 7 script flags, declared on a script's first line. A script that declares flags and not
# allow-oom is refused as a whole, before it runs, while Redis is over maxmemory (an OOM error:
# a 503). Without flags Redis would refuse only the script's first memory-growing command, after
# the EXPIRE every script starts with, and then let the rest of the script grow memory past the
# limit: every request's first write got through. Scripts that only read, delete or shrink a
# session say allow-oom, so reads and logouts keep working while memory is full.
SHRINKING = frozenset({"read", "destroy", "flashes"})


def _first_line(name: str) -> str:
    return "#!lua flags=allow-oom\n" if name in SHRINKING else "#!lua\n"


class ScriptSet(NamedTuple):
    """The scripts one store sends, and the SHA1 each is known by to EVALSHA."""

    sources: dict[str, str]
    shas: dict[str, str]

    @classmethod
    def of(cls, sources: dict[str, str]) -> ScriptSet:
        return cls(sources, {name: hashlib.sha1(source.encode("utf-8")).hexdigest() for name, source in sources.items()})


#: What a Redis server runs (7.0 or newer: the first line declares the script's flags).
FLAGGED = ScriptSet.of({name: _first_line(name) + source for name, source in SOURCES.items()})
#: What the embedded store (fakeredis, which knows no flags) runs.
UNFLAGGED = ScriptSet.of(SOURCES)
SCRIPTS, SHAS = FLAGGED


def script_set_for(client: Any) -> ScriptSet:
    """The scripts for ``client``: fakeredis cannot parse a flags line (and has no maxmemory)."""
    return UNFLAGGED if type(client).__module__.startswith("fakeredis") else FLAGGED
