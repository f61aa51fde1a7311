"""Sphinx extension: include CHANGELOG.md, converting its small Markdown subset to reStructuredText.

The changelog uses only what Keep a Changelog needs: ``#`` headings, ``-``
bullets with indented continuation lines, paragraphs, inline code and links.
Converting that subset here spares the docs a Markdown parser dependency.
Anything else is passed through as text, and a construct that is not valid
reStructuredText after conversion shows up as a build warning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# Heading level -> reST underline character; level 1 (the file's own title) is dropped.
UNDERLINES = {2: "-", 3: "~", 4: "^"}
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def convert_inline(text: str) -> str:
    """Convert inline code and links; escape reST markup characters elsewhere."""
    pieces: list[str] = []
    position = 0
    for match in re.finditer(f"{INLINE_CODE.pattern}|{LINK.pattern}", text):
        pieces.append(_escape(text[position:match.start()]))
        if match.group(1) is not None:
            literal = f"``{match.group(1)}``"
            # reST needs inline markup to touch whitespace or punctuation; an
            # escaped space joins it to a neighbouring letter without a gap.
            if match.start() > 0 and text[match.start() - 1].isalnum():
                literal = "\\ " + literal
            if match.end() < len(text) and text[match.end()].isalnum():
                literal += "\\ "
            pieces.append(literal)
        else:
            pieces.append(f"`{_escape(match.group(2))} <{match.group(3)}>`__")
        position = match.end()
    pieces.append(_escape(text[position:]))
    return "".join(pieces)


def _escape(text: str) -> str:
    return re.sub(r"([*|\\])", r"\\\1", text)


def markdown_to_rst(markdown: str) -> list[str]:
    """Return reST lines for ``markdown`` (the changelog subset described in the module docstring).

    A bullet's continuation lines, and a paragraph's lines, are joined before
    conversion, because inline code may wrap across them.
    """
    lines: list[str] = []
    block: list[str] = []
    prefix = ""

    def flush() -> None:
        nonlocal block
        if block:
            lines.append(prefix + convert_inline(" ".join(part.strip() for part in block)))
            block = []

    for raw in markdown.splitlines():
        heading = re.match(r"^(#{1,4})\s+(.*)$", raw)
        if heading:
            flush()
            level = len(heading.group(1))
            if level > 1:
                title = convert_inline(heading.group(2).strip())
                lines.extend(["", title, UNDERLINES[level] * len(title), ""])
        elif raw.startswith("- "):
            flush()
            prefix, block = "- ", [raw[2:]]
        elif not raw.strip():
            flush()
            lines.append("")
        elif raw.startswith("  ") and block and prefix:
            block.append(raw)
        else:
            if not block:
                prefix = ""
            block.append(raw)
    flush()
    return lines


class MarkdownChangelogDirective(SphinxDirective):
    """Insert a Markdown changelog, given as a path relative to the document, as reST sections."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = (Path(self.env.doc2path(self.env.docname)).parent / self.arguments[0]).resolve()
        self.env.note_dependency(str(path))
        lines = markdown_to_rst(path.read_text(encoding="utf-8"))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=str(path)), container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("markdown-changelog", MarkdownChangelogDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
