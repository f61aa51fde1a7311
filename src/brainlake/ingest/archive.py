"""Reader for zip archives of images, read in memory without extracting them.

The ``zip`` reader yields the image members of an archive laid out like an
image folder (``Training/glioma/0001.jpg``), with the folder reader's options
and skipping rules. A zip member of the archive (the figshare download is a
zip of zips) is read into memory and walked in turn. The paths of its members
are prefixed with its own path, as in ``inner.zip/Training/glioma/0001.jpg``.

Nothing is written to disk, so a member name cannot overwrite a file. Names
that would escape the archive root if extracted (``../x.jpg``, ``/etc/x``,
``C:\\x``, backslashes) and symbolic links are still reported, because an
archive that contains them is damaged or hostile.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from ..exceptions import IngestError, StorageError
from ._base import SourceProblem, SourceRecord, canonical_label, canonical_split, register_reader
from .folder import _LEVELS, IMAGE_EXTENSIONS, FolderLevel, _is_hidden

__all__ = ["DEFAULT_MAX_MEMBER_BYTES", "MAX_NESTING_DEPTH", "read_zip_archive"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MEMBER_BYTES = 256 * 1024**2
"""Default cap, in bytes, on a member's declared uncompressed size (256 MiB)."""

MAX_NESTING_DEPTH = 4
"""How many levels of archives inside the archive are walked.

Real downloads nest one level. The cap stops a crafted archive from nesting
until memory runs out, because the bytes of every open level stay in memory.
"""

_ARCHIVE_SUFFIX = ".zip"
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
# Bit 0 of a member's general purpose flags marks it encrypted. The zipfile module tests the same bit.
_ENCRYPTED_FLAG = 0x1
_UNSAFE_HINT = (
    "the archive is damaged or was crafted to write outside its folder; the member was not read. "
    "Re-create the archive with relative paths separated by '/' if you need the file"
)


class _OpenArchive:
    """A zip archive open for reading, shared by the records read from it.

    The archive stays open as long as any record that reads from it exists,
    because the ingest pipeline reads records after the reader has moved on.
    :class:`zipfile.ZipFile` closes its file when it is garbage-collected.
    """

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.archive = archive
        self.name = name
        # ZipFile updates a reference count of its file without a lock when a
        # member is opened, so concurrent reads from worker threads are serialised.
        self._lock = threading.Lock()

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """Decompress one member, checking its CRC-32.

        Raises:
            StorageError: If the member's data is corrupt, encrypted or uses a
                compression method this Python cannot decompress.
        """
        try:
            with self._lock:
                return self.archive.read(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error, OSError) as error:
            raise StorageError(
                f"cannot read member {info.filename!r} of archive {self.name!r}: {error}"
            ) from error


@register_reader("zip")
def read_zip_archive(
    root: str | os.PathLike[str],
    /,
    *,
    label_from: FolderLevel | None = "parent",
    split_from: FolderLevel | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    **options: Any,
) -> Iterator[SourceRecord | SourceProblem]:
    """Read the image members of a zip archive in name order, one record per image.

    The archive is opened and the arguments are checked when this function is
    called. Members are listed lazily, and each record's ``read`` decompresses
    its member from the open archive. Nested archives are read whole into
    memory, so memory use grows with the size of the nested archive being walked.

    These members are skipped and reported:

    - hidden or system members and folders (``.DS_Store``, ``__MACOSX/``);
    - members whose extension is not an image extension;
    - names that escape the archive root, and symbolic links;
    - encrypted members, and members larger than ``max_member_bytes``;
    - nested archives that are invalid or deeper than :data:`MAX_NESTING_DEPTH`.

    Args:
        root: The path of the ``.zip`` file.
        label_from: Which folder level of a member's path names the class:
            ``"parent"`` (the folder holding the member) or ``"grandparent"``;
            ``None`` for no label. Levels are counted inside the innermost archive.
        split_from: Which folder level names the source split
            (``Training``/``Testing``), or ``None``.
        max_member_bytes: Members whose declared uncompressed size is larger
            are reported instead of read. Decompression stops at the declared
            size, so a member that lies about its size cannot exceed the cap.
        **options: Not accepted; present so every reader has one signature.

    Returns:
        An iterator of one :class:`SourceRecord` per image and one
        :class:`SourceProblem` per skipped member.

    Raises:
        IngestError: If ``root`` is missing or not a zip archive, or an argument is invalid.
    """
    if options:
        raise IngestError(f"the zip reader does not accept option(s) {sorted(options)!r}")
    for argument, value in (("label_from", label_from), ("split_from", split_from)):
        if value is not None and value not in _LEVELS:
            raise IngestError(f"{argument} must be 'parent', 'grandparent' or None, got {value!r}")
    if isinstance(max_member_bytes, bool) or not isinstance(max_member_bytes, int) or max_member_bytes <= 0:
        raise IngestError(f"max_member_bytes must be a positive number of bytes, got {max_member_bytes!r}")

    archive = _open_archive_file(root)
    logger.info("reading zip archive %s", archive.name)
    settings = _Settings(label_from, split_from, max_member_bytes)
    return _walk_reporting_unsafe(archive, settings)


def _open_archive_file(root: str | os.PathLike[str]) -> _OpenArchive:
    path = Path(root)
    path_text = os.fspath(root)
    if not path.is_file():
        raise IngestError(f"source archive {path_text!r} does not exist or is not a file; pass the path of a .zip file")
    if not zipfile.is_zipfile(path):
        raise IngestError(
            f"source archive {path_text!r} is not a zip archive; pass a .zip file, "
            "or use reader='folder' for an extracted folder"
        )
    try:
        return _OpenArchive(zipfile.ZipFile(path), path_text)
    except (zipfile.BadZipFile, OSError) as error:
        raise IngestError(f"source archive {path_text!r} cannot be opened as a zip archive: {error}") from error


@dataclass
class _Settings:
    """The reader options that every level of nested archives uses, and a count for the final warning."""

    label_from: FolderLevel | None
    split_from: FolderLevel | None
    max_member_bytes: int
    unsafe_members: int = 0


def _walk_reporting_unsafe(archive: _OpenArchive, settings: _Settings) -> Iterator[SourceRecord | SourceProblem]:
    yield from _walk(archive, prefix="", depth=0, settings=settings)
    # One warning per archive, not one per member, because a hostile archive may contain thousands.
    if settings.unsafe_members:
        logger.warning(
            "skipped %d member(s) of %s whose names escape the archive root or that are symbolic links",
            settings.unsafe_members,
            archive.name,
        )


def _walk(
    archive: _OpenArchive, *, prefix: str, depth: int, settings: _Settings
) -> Iterator[SourceRecord | SourceProblem]:
    reported_folders: set[str] = set()
    for info in sorted(archive.archive.infolist(), key=lambda member: member.filename):
        name = info.filename
        path = prefix + name

        # 1. Names that would escape the archive root are never looked at further.
        unsafe = _unsafe_name_reason(name)
        if unsafe is not None:
            settings.unsafe_members += 1
            yield SourceProblem(path, unsafe, _UNSAFE_HINT)
            continue

        # 2. Hidden and system entries, reported once per hidden folder as the folder reader does.
        parts = name.rstrip("/").split("/")
        hidden = _hidden_folder(parts if info.is_dir() else parts[:-1])
        if hidden is not None:
            folder = prefix + hidden + "/"
            if folder not in reported_folders:
                reported_folders.add(folder)
                yield SourceProblem(folder, "hidden or system folder skipped")
            continue
        if info.is_dir():
            continue
        if _is_hidden(parts[-1]):
            yield SourceProblem(path, "hidden or system file skipped")
            continue

        # 3. Links, and members that cannot or should not be decompressed.
        if stat.S_ISLNK(info.external_attr >> 16):
            settings.unsafe_members += 1
            yield SourceProblem(
                path,
                "symbolic link member skipped; links inside archives are never followed",
                "add the file itself to the archive instead of a link to it",
            )
            continue
        problem = _member_problem(info, path, settings.max_member_bytes)
        if problem is not None:
            yield problem
            continue

        # 4. Nested archives, images, and everything else.
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == _ARCHIVE_SUFFIX:
            yield from _walk_nested(archive, info, path, depth, settings)
        elif suffix in IMAGE_EXTENSIONS:
            yield _record(archive, info, path, parts, settings)
        else:
            yield SourceProblem(
                path,
                f"not an image file (extension {suffix!r})",
                f"if it is an image, convert it to one of {', '.join(sorted(IMAGE_EXTENSIONS))}",
            )


def _unsafe_name_reason(name: str) -> str | None:
    if "\\" in name:
        # Zip names separate folders with '/', but Windows tools also split on
        # backslashes, so '..\\x' would escape the folder there.
        return "member name contains a backslash, which Windows tools read as a folder separator"
    if name.startswith("/"):
        return "member name is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "member name starts with a drive letter"
    if ".." in name.split("/"):
        return "member name contains a '..' segment that points outside the archive"
    return None


def _hidden_folder(folders: list[str]) -> str | None:
    for index, folder in enumerate(folders):
        if _is_hidden(folder):
            return "/".join(folders[: index + 1])
    return None


def _member_problem(info: zipfile.ZipInfo, path: str, max_member_bytes: int) -> SourceProblem | None:
    if info.flag_bits & _ENCRYPTED_FLAG:
        return SourceProblem(
            path,
            "encrypted member skipped",
            "re-create the archive without a password, then ingest again",
        )
    if info.file_size > max_member_bytes:
        return SourceProblem(
            path,
            f"declared uncompressed size {info.file_size} bytes exceeds max_member_bytes={max_member_bytes}",
            "if the member is genuine, pass a larger max_member_bytes",
        )
    return None


def _walk_nested(
    archive: _OpenArchive, info: zipfile.ZipInfo, path: str, depth: int, settings: _Settings
) -> Iterator[SourceRecord | SourceProblem]:
    if depth + 1 > MAX_NESTING_DEPTH:
        yield SourceProblem(
            path,
            f"nested archive skipped: more than {MAX_NESTING_DEPTH} levels of archives inside archives",
            "extract the outer archives, then ingest the inner one",
        )
        return
    try:
        data = archive.read(info)
        inner = zipfile.ZipFile(io.BytesIO(data))
    except (StorageError, zipfile.BadZipFile) as error:
        yield SourceProblem(path, f"nested archive cannot be read: {error}", "check or remove the nested archive")
        return
    yield from _walk(_OpenArchive(inner, path), prefix=path + "/", depth=depth + 1, settings=settings)


def _folder_at(parts: list[str], level: FolderLevel | None) -> str | None:
    if level is None:
        return None
    depth = _LEVELS[level]
    folders = parts[:-1]
    if len(folders) < depth:
        return None
    return folders[-depth]


def _record(
    archive: _OpenArchive, info: zipfile.ZipInfo, path: str, parts: list[str], settings: _Settings
) -> SourceRecord:
    extra: dict[str, Any] = {}
    label_folder = _folder_at(parts, settings.label_from)
    split_folder = _folder_at(parts, settings.split_from)
    label = canonical_label(label_folder) if label_folder else None
    split = canonical_split(split_folder) if split_folder else None
    if label_folder and label != label_folder:
        extra["source_label"] = label_folder
    if split_folder and split != split_folder:
        extra["source_split"] = split_folder
    return SourceRecord(
        source_path=path,
        read=partial(archive.read, info),
        label=label,
        source_split=split,
        extra=extra,
    )
