"""The compatibility matrix: every Python and dependency range setup.cfg claims, run for real.

    nox                      # every session below
    nox -s tests-3.12        # one session
    nox -s tests -- -m "not cluster and not sentinel"   # pytest arguments after --

``tests``: the whole suite on each claimed Python with the newest releases of everything.
``lowest``: the whole suite on the oldest claimed Python with every direct dependency at the
minimum setup.cfg declares (constraints/lowest.txt, which tests/test_packaging.py keeps equal
to setup.cfg), then ruff and mypy at their own minimums.
``hiredis``: the suite with redis-py's C reply parser.
``lint``: ruff, then mypy on the package with the newest and with the lowest redis-py (its type
annotations change between releases, and a ``type: ignore`` needed by one is unused in the other).
``docs``: the documentation (docs/build.py: HTML, then the doctests on its pages, warnings as
errors) with the newest Sphinx, furo and myst-parser, then with the minimums the docs extra declares.

Interpreters come from PATH (``python3.10`` ... ``python3.13``); with pyenv, set
``PYENV_VERSION`` to them all, joined by colons. With ``CI`` set a missing interpreter is an
error, never a skip.
"""

from __future__ import annotations

import os

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOWEST_PYTHON = PYTHONS[0]
NEWEST_PYTHON = PYTHONS[-1]
LOWEST = "constraints/lowest.txt"
#: What builds the documentation (the docs extra, less what the package itself needs).
DOCS_TOOLS = ["sphinx", "furo", "myst-parser", "pytest"]
RUFF_PATHS = ["src", "tests", "examples", "bench", "docs", "noxfile.py"]

nox.options.sessions = ["tests", "lowest", "hiredis", "lint", "docs"]
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() in ("1", "true", "yes")
nox.options.reuse_existing_virtualenvs = False


def _pytest(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", *session.posargs, env={"CI": os.environ.get("CI", "")})


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite on the newest release of every dependency (a regular, not editable, install:
    it also proves the built package holds everything, py.typed included)."""
    session.install(".[test]")
    _pytest(session)


@nox.session(python=LOWEST_PYTHON)
def lowest(session: nox.Session) -> None:
    """The suite, ruff and mypy with every direct dependency at its declared minimum."""
    session.install("-c", LOWEST, ".[test]")
    session.run("python", "-m", "pip", "check")
    _pytest(session)
    session.run("ruff", "check", *RUFF_PATHS)
    session.run("mypy", "src/redis_session")


@nox.session(python=NEWEST_PYTHON)
def hiredis(session: nox.Session) -> None:
    """The suite with hiredis parsing every Redis reply (the ``hiredis`` extra)."""
    session.install(".[test,hiredis]")
    session.run("python", "-c", "import redis.utils, sys; sys.exit(not redis.utils.HIREDIS_AVAILABLE)")
    _pytest(session)


@nox.session(python=NEWEST_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff; mypy on the newest and on the lowest redis-py."""
    session.install("-e", ".[test]")
    session.run("ruff", "check", *RUFF_PATHS)
    session.run("mypy", "src/redis_session")
    lowest_redis = [line.strip() for line in open(LOWEST, encoding="utf-8") if line.startswith("redis==")]
    session.install(*lowest_redis)
    session.run("mypy", "src/redis_session")


@nox.session(python=NEWEST_PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation with warnings as errors, its examples run as doctests: built with the
    newest docs tools, then again with the lowest the docs extra declares (constraints/lowest.txt).

    Without network the links to Python, Tornado and Flask need Debian's documentation packages
    (docs/_ext/inventories.py); .ci/run installs them."""
    session.install("-e", ".[docs]")
    session.run("python", "docs/build.py", "-q", "-E")
    session.install("-c", LOWEST, *DOCS_TOOLS)
    session.run("python", "-m", "pip", "check")
    session.run("python", "docs/build.py", "-q", "-E")
