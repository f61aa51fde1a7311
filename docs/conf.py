"""Sphinx configuration for the brainlake documentation.

Build it as CI does, with warnings as errors::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import brainlake

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "brainlake"
author = "The brainlake developers"
copyright = "The brainlake developers"
release = brainlake.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "cli_reference",
    "markdown_changelog",
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
# Attributes sections become fields of their class; as attribute entries they
# would clash with the entries autodoc makes for NamedTuple fields.
napoleon_use_ivar = True
autodoc_member_order = "bysource"

# Links to other projects' docs resolve through the inventories kept in
# docs/_inventories, which list the names these pages link to with their real
# URLs. They are read first, so the build needs no network (CI reaches only the
# package registries) and prints no fetch errors. The site's own inventory is
# the fallback when a local copy is missing. Regenerate the copies with
# ``python docs/make_inventories.py``.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", ("_inventories/python.inv", None)),
    "torch": ("https://docs.pytorch.org/docs/stable", ("_inventories/torch.inv", None)),
    "numpy": ("https://numpy.org/doc/stable", ("_inventories/numpy.inv", None)),
    "pyarrow": ("https://arrow.apache.org/docs", ("_inventories/pyarrow.inv", None)),
    "fsspec": ("https://filesystem-spec.readthedocs.io/en/latest", ("_inventories/fsspec.inv", None)),
}
intersphinx_timeout = 3

# The doctest builder runs the examples in docstrings and in the guides. Each
# document's examples run in a new temporary working directory, so they can
# use relative paths such as Datalake("lake"), as a reader's script would, and
# a build leaves nothing behind.
doctest_global_setup = f"""
import os as _os
import tempfile as _tempfile

import brainlake as bl

EXAMPLES = {str(DOCS.parent / "examples")!r}
_doctest_previous_cwd = _os.getcwd()
_doctest_workdir = _tempfile.TemporaryDirectory(prefix="brainlake-doctest-")
_os.chdir(_doctest_workdir.name)
"""
doctest_global_cleanup = """
_os.chdir(_doctest_previous_cwd)
_doctest_workdir.cleanup()
"""

html_theme = "furo"
html_title = f"brainlake {release}"
html_static_path = ["_static"]
exclude_patterns = ["_build", "_ext", "_inventories"]

# Names re-exported by a package are documented once, where a reader imports
# them from (``brainlake.Datalake``, not ``brainlake.lake.Datalake``): the first
# module in api.rst that documents a class or function keeps it, and later
# modules skip it.
_documented_in: dict[int, str] = {}
_current_module: list[str] = [""]


def _remember_module(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what == "module":
        _current_module[0] = name


def _skip_documented(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    if skip or what != "module" or not (isinstance(obj, type) or callable(obj)):
        return None
    owner = _documented_in.setdefault(id(obj), _current_module[0])
    return True if owner != _current_module[0] else None


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _remember_module)
    app.connect("autodoc-skip-member", _skip_documented)
