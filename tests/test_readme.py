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


EXAMPLES = README.parent / "examples"
DOCS = README.parent / "docs"
DOCS_SITE = "https://redis-session.readthedocs.io/en/latest/"


def readme_tree() -> docutils.nodes.document:
    return docutils.core.publish_doctree(
        README.read_text(encoding="utf-8"), settings_overrides={"report_level": 5, "halt_level": 5}
    )


def test_the_readme_code_is_the_quick_start_examples():
    """Each Python block of the README is a verbatim excerpt of an examples/quickstart_*.py file,
    which tests/test_quickstarts.py runs: the README's code cannot drift from code that works."""
    quick_starts = {path.name: path.read_text(encoding="utf-8") for path in EXAMPLES.glob("quickstart_*.py")}
    blocks = [block.astext() for block in readme_tree().findall(docutils.nodes.literal_block) if "python" in block["classes"]]
    assert len(blocks) == 3
    for block in blocks:
        assert any(block in source for source in quick_starts.values()), f"not an excerpt of {sorted(quick_starts)}:\n{block}"


def test_the_readme_links_every_docs_page():
    """The README's documentation list names every page of docs/ (but the front page), and no other."""
    targets = {node["refuri"] for node in readme_tree().findall(docutils.nodes.reference) if "refuri" in node}
    linked = {target[len(DOCS_SITE):].removesuffix(".html") for target in targets if target.startswith(DOCS_SITE)}
    pages = {path.stem for path in DOCS.glob("*.rst")} - {"index"}
    assert linked == pages
