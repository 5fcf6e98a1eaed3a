"""``.. command-help::``: the ``redis-session`` command's usage, commands and options, read from
:func:`redis_session.command_line.build_parser` when the docs are built (the very parser the
command runs), so the page says what ``--help`` says.
"""

from __future__ import annotations

import argparse
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from redis_session.command_line import build_parser

#: argparse wraps usage lines to the terminal; the page uses a fixed width.
WIDTH = 88


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def option_items(parser: argparse.ArgumentParser) -> list[str]:
    """A definition list of the parser's own arguments (``-h`` left out: every command has it)."""
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            term = ", ".join(f"``{option}{metavar}``" for option in action.option_strings)
        else:
            term = f"``{action.metavar or action.dest}``"
        lines += [term, f"   {escape(action.help or '')}", ""]
    return lines


def escape(text: str) -> str:
    """Help text as plain reST text (``*`` and backquotes are not markup in it)."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`")


def render(parser: argparse.ArgumentParser) -> list[str]:
    lines = [escape(parser.description or ""), "", ".. code-block:: text", "", *(f"   {line}" for line in usage(parser).splitlines()), ""]
    lines += option_items(parser)
    commands = subcommands(parser)
    for choice in commands._choices_actions:
        command = commands.choices[choice.dest]
        lines += [f".. rubric:: {choice.dest}", "   :class: command-name", "", escape(command.description or ""), "",
                  ".. code-block:: text", "", *(f"   {line}" for line in usage(command).splitlines()), ""]
        lines += option_items(command)
    return lines  # the epilog (exit codes) is the page's own table, checked by a doctest


class CommandHelpDirective(SphinxDirective):
    """Renders the admin command's help; it takes no arguments."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        source = StringList(render(build_parser()), source="redis_session.command_line.build_parser()")
        self.state.nested_parse(source, self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("command-help", CommandHelpDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
