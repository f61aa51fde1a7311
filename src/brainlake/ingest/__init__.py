"""Source readers behind a small registry, and the records they yield.

A reader turns one source (a folder, an archive, a set of ``.mat`` files) into
:class:`SourceRecord` objects carrying raw bytes and metadata, and reports
entries it cannot use as :class:`SourceProblem`. The lake does the rest
(hashing, decoding, storing, committing). Users add readers for their own
sources with :func:`register_reader`.
"""

from __future__ import annotations

from ._base import (
    Reader,
    SourceProblem,
    SourceRecord,
    canonical_label,
    canonical_split,
    get_reader,
    is_reader,
    list_readers,
    register_reader,
)
from . import archive
from .dicom import read_dicom_folder
from .figshare import read_figshare_folder
from .folder import read_image_folder

__all__ = [
    "Reader",
    "SourceProblem",
    "SourceRecord",
    "canonical_label",
    "canonical_split",
    "get_reader",
    "is_reader",
    "list_readers",
    "read_dicom_folder",
    "read_figshare_folder",
    "read_image_folder",
    "register_reader",
]
