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

:class:`ZipMembers` walks the members and applies these checks. The ``zip``
reader and the ``figshare`` reader both use it, so both skip the same members.
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
from pathlib import Path, PurePosixPath
from typing import Any

from ..exceptions import IngestError, StorageError
from ._base import (
    FolderLevel,
    SourceProblem,
    SourceRecord,
    is_hidden,
    check_folder_levels,
    labels_from_folders,
    register_reader,
)
from .folder import IMAGE_EXTENSIONS

__all__ = ["DEFAULT_MAX_MEMBER_BYTES", "MAX_NESTING_DEPTH", "ZipMember", "ZipMembers", "read_zip_archive"]

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


class ZipMember:
    """A file member of a zip archive, or of an archive nested in it, that passed the safety checks.

    Attributes:
        path: The member's path from the root of the outer archive, prefixed
            with the path of each nested archive (``inner.zip/Training/glioma/0001.jpg``).
        name: The member's name inside its own, innermost archive (``Training/glioma/0001.jpg``).
    """

    __slots__ = ("_archive", "_info", "name", "path")

    def __init__(self, archive: _OpenArchive, info: zipfile.ZipInfo, path: str) -> None:
        self._archive = archive
        self._info = info
        self.name = info.filename
        self.path = path

    def __repr__(self) -> str:
        return f"ZipMember({self.path!r})"

    def read(self) -> bytes:
        """Decompress the member and return its bytes, checking its CRC-32.

        The archive that contains the member stays in memory as long as this object exists.

        Raises:
            StorageError: If the member's data is corrupt, encrypted or uses a
                compression method this Python cannot decompress.
        """
        return self._archive.read(self._info)


class ZipMembers:
    """The file members of a zip archive and of the zip archives nested in it, checked for safety.

    The archive is opened, and ``max_member_bytes`` is checked, when the
    object is created. Each iteration walks the archive again from the start,
    in name order within each archive, and yields a :class:`ZipMember` per
    regular file and a :class:`SourceProblem` per skipped member. Nested
    archives are walked instead of yielded. Each is read whole into memory
    while its members are walked, and it stays there as long as one of its
    :class:`ZipMember` objects exists.

    These members are skipped and reported:

    - hidden or system members and folders (``.DS_Store``, ``__MACOSX/``);
    - names that escape the archive root, and symbolic links;
    - encrypted members, and members larger than ``max_member_bytes``;
    - nested archives that are invalid or deeper than :data:`MAX_NESTING_DEPTH`.

    Args:
        root: The path of the ``.zip`` file.
        max_member_bytes: Members whose declared uncompressed size is larger
            are reported instead of read. Decompression stops at the declared
            size, so a member that lies about its size cannot exceed the cap.

    Attributes:
        max_member_bytes: The cap given as ``max_member_bytes``.
        unsafe_members: How many members the latest walk skipped because their
            names escape the archive root or they are symbolic links.

    Raises:
        IngestError: If ``root`` is missing or not a zip archive, or
            ``max_member_bytes`` is not a positive integer.
    """

    def __init__(self, root: str | os.PathLike[str], /, *, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        if isinstance(max_member_bytes, bool) or not isinstance(max_member_bytes, int) or max_member_bytes <= 0:
            raise IngestError(f"max_member_bytes must be a positive number of bytes, got {max_member_bytes!r}")
        self._archive = _open_archive_file(root)
        self.max_member_bytes = max_member_bytes
        self.unsafe_members = 0

    @property
    def name(self) -> str:
        """The path of the archive, as given."""
        return self._archive.name

    def __iter__(self) -> Iterator[ZipMember | SourceProblem]:
        self.unsafe_members = 0
        return self._walk(self._archive, prefix="", depth=0)

    def log_unsafe_members(self) -> None:
        """Log one warning if the latest walk skipped members whose names escape the root or that are links."""
        # One warning per archive, not one per member, because a hostile archive may contain thousands.
        if self.unsafe_members:
            logger.warning(
                "skipped %d member(s) of %s whose names escape the archive root or that are symbolic links",
                self.unsafe_members,
                self.name,
            )

    def _walk(self, archive: _OpenArchive, *, prefix: str, depth: int) -> Iterator[ZipMember | SourceProblem]:
        reported_folders: set[str] = set()
        for info in sorted(archive.archive.infolist(), key=lambda member: member.filename):
            name = info.filename
            path = prefix + name

            # 1. Names that would escape the archive root are never looked at further.
            unsafe = _unsafe_name_reason(name)
            if unsafe is not None:
                self.unsafe_members += 1
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
            if is_hidden(parts[-1]):
                yield SourceProblem(path, "hidden or system file skipped")
                continue

            # 3. Links, and members that cannot or should not be decompressed.
            if stat.S_ISLNK(info.external_attr >> 16):
                self.unsafe_members += 1
                yield SourceProblem(
                    path,
                    "symbolic link member skipped; links inside archives are never followed",
                    "add the file itself to the archive instead of a link to it",
                )
                continue
            problem = _member_problem(info, path, self.max_member_bytes)
            if problem is not None:
                yield problem
                continue

            # 4. Nested archives are walked in turn, and every other file is yielded.
            if PurePosixPath(name).suffix.lower() == _ARCHIVE_SUFFIX:
                yield from self._walk_nested(archive, info, path, depth)
            else:
                yield ZipMember(archive, info, path)

    def _walk_nested(
        self, archive: _OpenArchive, info: zipfile.ZipInfo, path: str, depth: int
    ) -> Iterator[ZipMember | SourceProblem]:
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
        yield from self._walk(_OpenArchive(inner, path), prefix=path + "/", depth=depth + 1)


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
    check_folder_levels(label_from, split_from)

    members = ZipMembers(root, max_member_bytes=max_member_bytes)
    logger.info("reading zip archive %s", members.name)
    return _image_records(members, label_from, split_from)


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


def _image_records(
    members: ZipMembers, label_from: FolderLevel | None, split_from: FolderLevel | None
) -> Iterator[SourceRecord | SourceProblem]:
    for entry in members:
        if isinstance(entry, SourceProblem):
            yield entry
            continue
        suffix = PurePosixPath(entry.name).suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            yield _record(entry, label_from, split_from)
        else:
            yield SourceProblem(
                entry.path,
                f"not an image file (extension {suffix!r})",
                f"if it is an image, convert it to one of {', '.join(sorted(IMAGE_EXTENSIONS))}",
            )
    members.log_unsafe_members()


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
        if is_hidden(folder):
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


def _record(member: ZipMember, label_from: FolderLevel | None, split_from: FolderLevel | None) -> SourceRecord:
    label, split, extra = labels_from_folders(member.name.split("/")[:-1], label_from, split_from)
    return SourceRecord(
        source_path=member.path,
        read=member.read,
        label=label,
        source_split=split,
        extra=extra,
    )
