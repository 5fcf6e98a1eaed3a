"""``.. flask-session-encodings::``: how ``flask.session`` stores each Python type, rendered from
:data:`redis_session.flask_view.ENCODINGS` when the docs are built, so the table cannot drift
from the code."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from redis_session.flask_view import ENCODINGS


class FlaskEncodingsDirective(SphinxDirective):
    """Renders the table; it takes no arguments."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 15 55",
            "",
            "   * - ``flask.session`` value",
            "     - type note",
            "     - stored as (``request.session`` reads it with)",
        ]
        for python_type, tag, stored in ENCODINGS:
            lines += [f"   * - {python_type}", f"     - {f'``{tag}``' if tag else '(none)'}", f"     - {stored}"]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="redis_session.flask_view.ENCODINGS"), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("flask-session-encodings", FlaskEncodingsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
