"""Sphinx configuration for the brainlake documentation."""

from __future__ import annotations

import brainlake

project = "brainlake"
author = "The brainlake developers"
release = brainlake.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "torch": ("https://pytorch.org/docs/stable", None),
    "pyarrow": ("https://arrow.apache.org/docs", None),
}
html_theme = "furo"
exclude_patterns = ["_build"]
