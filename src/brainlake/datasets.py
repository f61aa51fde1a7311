"""Public datasets: the small real sample shipped inside the package.

:func:`sample_path` returns the folder of 56 real MRI slices (CC0, see the
``README.md`` beside them) that ``brainlake demo`` and the tests ingest when no
other data is at hand.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SAMPLE_SOURCE", "sample_path"]

SAMPLE_SOURCE = "brainlake-sample"
"""The source name the demo gives the sample when ingesting it."""


def sample_path() -> Path:
    """Return the folder of the shipped sample (``Training/<class>/``, ``Testing/<class>/``).

    Ingest it with ``label_from="parent", split_from="grandparent"``.
    """
    root = resources.files("brainlake") / "sample" / "brain-tumor-mri"
    return Path(str(root))
