"""``.. session-settings::``: every setting of :data:`redis_session.settings.SETTINGS`, rendered
when the docs are built, so the configuration page cannot drift from the code.

It writes a summary table (the three spellings of each setting, its type and default) and then
one ``confval`` entry per setting with its help text, which other pages link to with
``:confval:`session-expire```.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from redis_session.flask_session import config_key
from redis_session.settings import SETTINGS, Setting


def flag(setting: Setting) -> str:
    """The Tornado flag (and the admin command's), as ``tornado_settings.define_flags`` names it."""
    return f"--session-{setting.name}"


def literal(value: Any) -> str:
    """A default as the reader would write it in Python (``''`` shows that it is empty)."""
    return f"``{value!r}``"


def summary_table(settings: tuple[Setting, ...]) -> list[str]:
    """One row per setting: its three spellings stacked in one cell (a narrow page has no room
    for five columns), its type and its default."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :class: settings-summary",
        "   :widths: 50 10 40",
        "",
        "   * - flag / Flask key / ``redis_session={...}`` key",
        "     - type",
        "     - default",
    ]
    for setting in settings:
        lines += [
            f"   * - | :confval:`{flag(setting)} <session-{setting.name}>`",
            f"       | ``{config_key(setting.name)}``",
            f"       | ``\"{setting.name}\"``",
            f"     - ``{setting.type.__name__}``",
            f"     - {literal(setting.default)}",
        ]
    return lines


def entries(settings: tuple[Setting, ...]) -> list[str]:
    lines: list[str] = []
    for setting in settings:
        lines += [
            f".. confval:: session-{setting.name}",
            f"   :type: ``{setting.type.__name__}``",
            f"   :default: {literal(setting.default)}",
            "",
            f"   {setting.help[:1].upper()}{setting.help[1:]}.",
            "",
            f"   Flag ``{flag(setting)}``; Flask ``{config_key(setting.name)}``; "
            f"Application setting ``redis_session={{\"{setting.name}\": ...}}``.",
            "",
        ]
    return lines


class SessionSettingsDirective(SphinxDirective):
    """Renders the settings table; it takes no arguments."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        source = StringList(summary_table(SETTINGS) + [""] + entries(SETTINGS), source="redis_session.settings.SETTINGS")
        self.state.nested_parse(source, self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("session-settings", SessionSettingsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
