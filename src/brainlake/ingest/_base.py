"""The reader protocol, the registry of readers, label/split normalisation, and the shared folder walk."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ..exceptions import DuplicateNameError, IngestError, UnknownReaderError

__all__ = [
    "Reader",
    "SourceProblem",
    "SourceRecord",
    "canonical_label",
    "canonical_split",
    "get_reader",
    "is_reader",
    "list_readers",
    "register_reader",
]


@dataclass(frozen=True)
class SourceRecord:
    """One image found in a source, not yet stored.

    Attributes:
        source_path: The path of the entry inside the source, with ``/``
            separators (stable across machines, used in the item id).
        read: Returns the raw bytes; called once, on a worker thread.
        label: Canonical class name, or ``None`` when the source has none.
        source_split: ``"train"``, ``"val"`` or ``"test"`` as the source
            assigned it, or ``None``.
        patient_id: The patient the image belongs to, when known.
        modality: The imaging modality (``"MR"``), when known.
        extra: Source-specific values stored as JSON with the item.
        attachments: Further byte strings that belong to the image (a tumor
            mask, say). Each is stored as its own object and its digest is
            recorded in ``extra`` as ``"<name>_sha256"``.
    """

    source_path: str
    read: Callable[[], bytes]
    label: str | None = None
    source_split: str | None = None
    patient_id: str | None = None
    modality: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Callable[[], bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceProblem:
    """An entry of a source that was skipped, with the reason and what to do.

    Attributes:
        source_path: The entry's path inside the source.
        reason: Why it was not ingested.
        hint: What the user can do about it.
        failed: Whether the entry is an image that should have landed (an
            image without a label in a given mapping, say), as opposed to an
            entry that is rightly passed over (a hidden file). Failed entries
            are listed with the failures of the ingest report.
    """

    source_path: str
    reason: str
    hint: str = ""
    failed: bool = False


class Reader(Protocol):
    """A callable that walks one source and yields its records and problems."""

    def __call__(self, root: str | os.PathLike[str], /, **options: Any) -> Iterator[SourceRecord | SourceProblem]:
        """Yield one record per usable entry and one problem per skipped entry."""
        ...


_READERS: dict[str, Reader] = {}


def register_reader(name: str, *, override: bool = False) -> Callable[[Reader], Reader]:
    """Register a reader under ``name``, as a decorator.

    Args:
        name: The name users pass as ``Datalake.ingest(..., reader=name)``.
        override: Replace an existing reader of that name instead of failing.

    Raises:
        DuplicateNameError: If ``name`` is taken and ``override`` is false.
    """

    def decorator(reader: Reader) -> Reader:
        if name in _READERS and not override:
            raise DuplicateNameError(
                f"an ingest reader named {name!r} is already registered; "
                "pass override=True to replace it"
            )
        _READERS[name] = reader
        return reader

    return decorator


def list_readers() -> list[str]:
    """Return the names of all registered readers, sorted."""
    return sorted(_READERS)


def is_reader(name: str) -> bool:
    """Return whether a reader is registered under ``name``."""
    return name in _READERS


def get_reader(name: str) -> Reader:
    """Return the reader registered under ``name``.

    Raises:
        UnknownReaderError: If no reader has that name; the message lists the known ones.
    """
    try:
        return _READERS[name]
    except KeyError:
        raise UnknownReaderError(
            f"unknown ingest reader {name!r}; registered readers: {', '.join(list_readers())}"
        ) from None


_LABEL_ALIASES = {
    "glioma": "glioma",
    "gliomatumor": "glioma",
    "meningioma": "meningioma",
    "meningiomatumor": "meningioma",
    "pituitary": "pituitary",
    "pituitarytumor": "pituitary",
    "notumor": "notumor",
    "notumour": "notumor",
    "normal": "notumor",
    "healthy": "notumor",
}

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def canonical_label(name: str) -> str:
    """Map a source's class name to brainlake's canonical lower-case label.

    Known spellings of the four classes (``glioma_tumor``, ``No Tumor``,
    ``pituitary tumor``) become ``glioma``, ``meningioma``, ``pituitary`` and
    ``notumor``; any other name is lower-cased with spaces as underscores.
    """
    key = "".join(character for character in name.lower() if character.isalnum())
    if key in _LABEL_ALIASES:
        return _LABEL_ALIASES[key]
    return "_".join(name.strip().lower().split())


def canonical_split(name: str) -> str:
    """Map a source's split folder name to ``train``, ``val`` or ``test``.

    Other names are returned lower-cased, so an unusual split stays visible.
    """
    return _SPLIT_ALIASES.get(name.strip().lower(), name.strip().lower())


FolderLevel = Literal["parent", "grandparent"]
"""A folder level above a file: ``"parent"`` (the folder holding it) or ``"grandparent"``."""

_LEVELS: dict[str, int] = {"parent": 1, "grandparent": 2}
_SYSTEM_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


def is_hidden(name: str) -> bool:
    """Return whether a file or folder name is hidden or a system entry (``.*``, ``__MACOSX``, ``Thumbs.db``)."""
    return name.startswith(".") or name in _SYSTEM_NAMES


def check_folder_levels(label_from: FolderLevel | None, split_from: FolderLevel | None) -> None:
    """Check the ``label_from`` and ``split_from`` arguments of a reader.

    Raises:
        IngestError: If either is not ``"parent"``, ``"grandparent"`` or ``None``.
    """
    for argument, value in (("label_from", label_from), ("split_from", split_from)):
        if value is not None and value not in _LEVELS:
            raise IngestError(f"{argument} must be 'parent', 'grandparent' or None, got {value!r}")


def walk_folder(base: Path, *, empty_reason: str, empty_hint: str) -> Iterator[SourceProblem | tuple[Path, Path]]:
    """Walk ``base`` top-down in sorted order, reporting and skipping hidden and system entries.

    Hidden folders are not entered. Folders and files are visited in name
    order, each folder's files before its subfolders.

    Args:
        base: The folder to walk.
        empty_reason: The reason reported for an empty folder below ``base``.
        empty_hint: The hint reported for an empty folder below ``base``.

    Yields:
        A :class:`SourceProblem` per empty folder, hidden folder and hidden
        file, and a ``(path, relative_path)`` pair per other file, where
        ``relative_path`` is relative to ``base``.
    """
    for directory, folders, files in os.walk(base):
        current = Path(directory)
        if not folders and not files and current != base:
            yield SourceProblem(current.relative_to(base).as_posix() + "/", empty_reason, empty_hint)
        for name in sorted(folders):
            if is_hidden(name):
                relative = (current / name).relative_to(base).as_posix()
                yield SourceProblem(relative + "/", "hidden or system folder skipped")
        folders[:] = sorted(name for name in folders if not is_hidden(name))

        for name in sorted(files):
            path = current / name
            relative_path = path.relative_to(base)
            if is_hidden(name):
                yield SourceProblem(relative_path.as_posix(), "hidden or system file skipped")
                continue
            yield path, relative_path


def labels_from_folders(
    folder_names: Sequence[str], label_from: FolderLevel | None, split_from: FolderLevel | None
) -> tuple[str | None, str | None, dict[str, Any]]:
    """Derive a file's label and source split from the names of the folders above it.

    Args:
        folder_names: The folders from the source root down to the file,
            nearest last (``["Training", "glioma"]``).
        label_from: Which folder level names the class, or ``None`` for no label.
        split_from: Which folder level names the source split, or ``None``.

    Returns:
        The canonical label, the canonical split, and the ``extra`` values
        ``source_label`` and ``source_split``, each present only when the
        folder name differs from its canonical form. The label or split is
        ``None`` when its level is ``None``, when there are fewer folders than
        the level needs, or when the folder name is empty.
    """
    label_folder = _folder_at(folder_names, label_from)
    split_folder = _folder_at(folder_names, split_from)
    label = canonical_label(label_folder) if label_folder else None
    split = canonical_split(split_folder) if split_folder else None
    extra: dict[str, Any] = {}
    if label_folder and label != label_folder:
        extra["source_label"] = label_folder
    if split_folder and split != split_folder:
        extra["source_split"] = split_folder
    return label, split, extra


def _folder_at(folder_names: Sequence[str], level: FolderLevel | None) -> str | None:
    if level is None:
        return None
    depth = _LEVELS[level]
    if len(folder_names) < depth:
        return None
    return folder_names[-depth]
