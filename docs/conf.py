"""Sphinx configuration of the redis_session documentation.

Build it with ``python docs/build.py`` (HTML, then every example on the pages run as a doctest,
warnings as errors). What can be generated is: the configuration page from
:data:`redis_session.settings.SETTINGS`, the admin command page from its argument parser, the API
reference from the docstrings, the performance page from ``bench/results.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import inventories  # noqa: E402 - docs/_ext is on the path only from the line above

import redis_session  # noqa: E402

project = "redis_session"
author = "the redis_session authors"
copyright = "the redis_session authors"  # noqa: A001 - Sphinx's name for it
release = redis_session.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "myst_parser",  # only to include bench/results.md, which the benchmark writes in Markdown
    "settings_table",
    "command_help",
    "docs_checks",
    "module_names",
    "flask_encodings",
]

root_doc = "index"
smartquotes_action = "qe"  # no dashes: "--session-expire" in generated text stays two hyphens
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "furo"
html_title = f"redis_session {release}"
html_static_path = ["_static"]
html_css_files = ["tables.css"]

# Every reference must resolve: a misspelt class, setting or page fails the build.
nitpicky = True
nitpick_ignore = [
    # redis-py publishes no Sphinx inventory that a build without network can read (no package
    # ships one, and CI has no network): its classes stay plain text.
    ("py:class", "redis.Redis"),
    ("py:class", "redis.cluster.RedisCluster"),
    ("py:class", "redis.asyncio.Redis"),
    # TypeVars in signatures (SessionBackend.with_settings, testing.use_store return what they get):
    # autodoc renders it as a class name, and a TypeVar has no page of its own
    ("py:class", "redis_session.backend.BackendT"),
    ("py:class", "redis_session.testing.AppT"),
]

intersphinx_mapping = inventories.mapping()
intersphinx_timeout = 10

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": True}  # so docs_checks sees what lacks a docstring

# The doctests run on the in-process memory:// store; each page's setup is in a hidden
# ``testsetup`` block, and docs/_ext/doc_sessions.py builds what they share.
doctest_global_setup = "from doc_sessions import *"
doctest_test_doctest_blocks = "default"
doctest_default_flags = (
    __import__("doctest").ELLIPSIS | __import__("doctest").NORMALIZE_WHITESPACE | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)

# bench/results.md is included as written; its headings get anchors for the page's contents.
myst_heading_anchors = 2

# Built on Read the Docs? Then the canonical URL is the published one.
html_baseurl = os.environ.get("READTHEDOCS_CANONICAL_URL", "")
