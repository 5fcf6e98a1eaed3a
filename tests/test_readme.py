"""README.rst is the package's long description on PyPI and the user's manual: it must render."""

from __future__ import annotations

from pathlib import Path

import docutils.core
import docutils.utils

README = Path(__file__).resolve().parent.parent / "README.rst"


def test_the_readme_renders_without_rest_warnings():
    """README.rst has no reST warning or error (a broken table or link shows as raw text on PyPI)."""
    document = docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"),
        settings_overrides={"report_level": docutils.utils.Reporter.WARNING_LEVEL, "halt_level": 5, "warning_stream": False},
    )
    # parse problems stay in the tree; problems found by transforms (an unknown link target)
    # are kept aside in transform_messages
    messages = [*document.findall(docutils.nodes.system_message), *document.transform_messages]
    problems = [message.astext() for message in messages if message["level"] >= docutils.utils.Reporter.WARNING_LEVEL]
    assert problems == []
