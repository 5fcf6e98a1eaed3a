"""Checks that fail the build (it runs with warnings as errors) where a reader would be let down:
a page that no path from the front page reaches, and a public class, function, method or
property that the API reference would show without a word of explanation.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: What autodoc documents that must say something: attributes and data may be self-explanatory.
NEEDS_DOCSTRING = {"module", "class", "exception", "function", "method", "property"}


def unreachable(env: BuildEnvironment) -> list[str]:
    """Documents no chain of toctrees leads to from the root document."""
    seen = {env.config.root_doc}
    pending = [env.config.root_doc]
    while pending:
        for child in env.toctree_includes.get(pending.pop(), []):
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return sorted(set(env.found_docs) - seen)


def check_reachable(app: Sphinx, env: BuildEnvironment) -> None:
    for docname in unreachable(env):
        logger.warning("no toctree path from %s leads to this page", env.config.root_doc, location=docname)


def check_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in NEEDS_DOCSTRING and not any(line.strip() for line in lines):
        logger.warning("%s %s has no docstring: the API reference would show it unexplained", what, name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-check-consistency", check_reachable)
    app.connect("autodoc-process-docstring", check_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
