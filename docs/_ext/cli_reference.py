"""Sphinx extension: render the ``brainlake`` command's help from its argparse parser.

The directive ``.. brainlake-cli::`` walks :func:`brainlake.cli.build_parser`
and emits one section per command and subcommand with the exact ``--help``
output, so the reference changes whenever a command or option does.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# argparse wraps help text to the terminal width; a fixed width keeps the
# generated pages identical from one machine to the next.
HELP_WIDTH = 88


def iter_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Yield ``(command path, parser)`` for every subcommand below ``parser``, depth first, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield (*path, name), subparser
                yield from iter_commands(subparser, (*path, name))


def command_help(parser: argparse.ArgumentParser) -> str:
    """Return ``parser``'s ``--help`` text wrapped at :data:`HELP_WIDTH` columns."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    try:
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


class BrainlakeCliDirective(SphinxDirective):
    """Insert the help of ``brainlake`` and of each of its commands, one section each."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from brainlake.cli import build_parser

        parser = build_parser()
        lines = ["brainlake", "---------", "", ".. code-block:: text", ""]
        lines += ["   " + line for line in command_help(parser).splitlines()]
        for path, subparser in iter_commands(parser):
            title = "brainlake " + " ".join(path)
            lines += ["", title, "-" * len(title), "", ".. code-block:: text", ""]
            lines += ["   " + line if line else "" for line in command_help(subparser).splitlines()]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="brainlake.cli"), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("brainlake-cli", BrainlakeCliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
