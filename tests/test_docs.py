"""Checks on the documentation sources that need no Sphinx build: CLI help, inventories, the flow diagram.

CI builds the pages themselves with ``sphinx-build -W`` and runs their examples
with the doctest builder; these tests catch the cheaper mistakes first.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType

import pytest

from brainlake.cli import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load_docs_module(path: Path) -> ModuleType:
    """Import a Python file from docs/ by path, as Sphinx does through sys.path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


cli_reference = load_docs_module(DOCS / "_ext" / "cli_reference.py")
COMMANDS = list(cli_reference.iter_commands(build_parser()))


def test_cli_reference_lists_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"ingest", "items", "history", "duplicates", "verify", "mart build", "train", "runs", "demo"} <= names


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_command_help_has_example(path: tuple[str, ...], parser: object) -> None:
    text = cli_reference.command_help(parser)
    assert "example:" in text.lower()
    assert "brainlake " + " ".join(path) in text


# Commands that do work; "brainlake mart" contains only subcommands.
WORKING_COMMANDS = [(path, parser) for path, parser in COMMANDS if path != ("mart",)]


@pytest.mark.parametrize(("path", "parser"), WORKING_COMMANDS, ids=[" ".join(path) for path, _ in WORKING_COMMANDS])
def test_command_offers_json_and_quiet(path: tuple[str, ...], parser: object) -> None:
    text = cli_reference.command_help(parser)
    assert "--json" in text
    assert "--quiet" in text


def test_top_level_help_states_exit_codes() -> None:
    text = cli_reference.command_help(build_parser())
    assert "0 success" in text
    assert "2 usage error" in text


def test_cli_page_documents_exit_codes() -> None:
    page = (DOCS / "cli.rst").read_text()
    assert ".. brainlake-cli::" in page
    for code in ("0", "1", "2"):
        assert f"\n{code}    " in page, f"exit code {code} is not in the table of docs/cli.rst"


def test_inventories_match_generator(tmp_path: Path) -> None:
    make_inventories = load_docs_module(DOCS / "make_inventories.py")
    for key, (project, version, names) in make_inventories.INVENTORIES.items():
        expected = make_inventories.inventory_bytes(project, version, names)
        stored = (DOCS / "_inventories" / f"{key}.inv").read_bytes()
        assert stored == expected, f"docs/_inventories/{key}.inv is stale; run python docs/make_inventories.py"


def test_inventories_cover_intersphinx_mapping() -> None:
    config = (DOCS / "conf.py").read_text()
    for inventory in (DOCS / "_inventories").glob("*.inv"):
        assert f'"_inventories/{inventory.name}"' in config


def test_flow_diagram_is_valid_svg() -> None:
    root = ElementTree.parse(DOCS / "_static" / "flow.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(element.text or "" for element in root.iter())
    for box in ("Sources", "Datalake", "Datamart", "uint8 arrays", "Trainer", "Run"):
        assert box in text


def test_toctree_pages_exist_except_pending_guides() -> None:
    index = (DOCS / "index.rst").read_text()
    entries = re.findall(r"^   ([a-z][a-z0-9/-]*)$", index, flags=re.MULTILINE)
    assert "getting-started" in entries
    missing = [entry for entry in entries if not (DOCS / f"{entry}.rst").exists()]
    assert set(missing) <= {"guides/remote-storage", "guides/ddp", "guides/patient-data"}


markdown_changelog = load_docs_module(DOCS / "_ext" / "markdown_changelog.py")


def test_changelog_bullet_joins_wrapped_code() -> None:
    lines = markdown_changelog.markdown_to_rst("## [Unreleased]\n\n### Added\n- `brainlake train --report\n  DIR` writes it.\n")
    assert lines[1:4] == ["[Unreleased]", "------------", ""]
    assert "Added" in lines
    assert "~~~~~" in lines
    assert lines[-1] == "- ``brainlake train --report DIR`` writes it."


@pytest.mark.parametrize(("markdown", "rst"), [
    ("see [Keep a Changelog](https://keepachangelog.com/)", "see `Keep a Changelog <https://keepachangelog.com/>`__"),
    ("`Datalake`s and `x`", "``Datalake``\\ s and ``x``"),
    ("a *star* and a |pipe|", "a \\*star\\* and a \\|pipe\\|"),
])
def test_changelog_inline_conversion(markdown: str, rst: str) -> None:
    assert markdown_changelog.convert_inline(markdown) == rst


def test_changelog_drops_file_title() -> None:
    lines = markdown_changelog.markdown_to_rst("# Changelog\n\nIntro text\nwraps here.\n")
    assert "Changelog" not in " ".join(lines)
    assert "Intro text wraps here." in lines
