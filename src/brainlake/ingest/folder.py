"""Reader for image folders such as ``Training/glioma/0001.jpg``."""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..exceptions import IngestError
from ._base import (
    FolderLevel,
    SourceProblem,
    SourceRecord,
    canonical_label,
    check_folder_levels,
    labels_from_folders,
    register_reader,
    walk_folder,
)

__all__ = ["IMAGE_EXTENSIONS", "read_image_folder"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
"""File name extensions the folder reader treats as images (case-insensitive)."""


def _reader_of(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


@register_reader("folder")
def read_image_folder(
    root: str | os.PathLike[str],
    /,
    *,
    label_from: FolderLevel | None = "parent",
    split_from: FolderLevel | None = None,
    labels: Mapping[str, str] | str | os.PathLike[str] | None = None,
    **options: Any,
) -> Iterator[SourceRecord | SourceProblem]:
    """Walk an image folder in sorted order and yield one record per image.

    Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``,
    ``__MACOSX``) are skipped and reported; files whose extension is not an
    image extension are reported and skipped.

    Args:
        root: The folder to walk.
        label_from: Which folder level names the class: ``"parent"`` (the
            folder holding the file) or ``"grandparent"``; ``None`` for no label.
        split_from: Which folder level names the source split
            (``Training``/``Testing``), or ``None``.
        labels: Labels given by the user instead of folder names: a mapping
            from each image's path inside ``root`` (with ``/`` separators) to
            its class, or the path of a CSV file with the columns ``path`` and
            ``label``. Paths are relative to ``root`` (``./`` and absolute paths
            inside ``root`` are accepted too). When given, ``label_from`` is not
            used; images missing from it are reported as failed, and entries
            that name no image in the folder as skipped. A path listed twice
            with different labels, or with an empty label, is rejected.
        **options: Not accepted; present so every reader has one signature.

    Yields:
        A :class:`SourceRecord` per image and a :class:`SourceProblem` per
        skipped entry.

    Raises:
        IngestError: If ``root`` is not a folder or an argument is invalid.
    """
    if options:
        raise IngestError(f"the folder reader does not accept option(s) {sorted(options)!r}")
    check_folder_levels(label_from, split_from)
    base = Path(root)
    if base.is_file() and zipfile.is_zipfile(base):
        raise IngestError(f"{os.fspath(root)!r} is a zip archive; ingest it with reader='zip' (--reader zip)")
    if not base.is_dir():
        raise IngestError(f"source folder {os.fspath(root)!r} does not exist or is not a folder")
    label_map = _load_labels(labels, base) if labels is not None else None
    used: set[str] = set()

    entries = walk_folder(
        base,
        empty_reason="empty folder: no images in it",
        empty_hint="add its images or remove the folder; no class is created for it",
    )
    for entry in entries:
        if isinstance(entry, SourceProblem):
            yield entry
            continue
        path, relative_path = entry
        relative = relative_path.as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            yield SourceProblem(
                relative,
                f"not an image file (extension {path.suffix!r})",
                f"if it is an image, convert it to one of {', '.join(sorted(IMAGE_EXTENSIONS))}",
            )
            continue
        record = _record(path, relative_path, label_from if label_map is None else None, split_from)
        if label_map is not None:
            if relative not in label_map:
                yield SourceProblem(relative, "no label for this image in the label mapping",
                                    "add a row for it to the mapping, or remove the image", failed=True)
                continue
            used.add(relative)
            given = label_map[relative]
            extra = dict(record.extra, source_label=given) if canonical_label(given) != given else record.extra
            record = replace(record, label=canonical_label(given), extra=extra)
        yield record

    for unmatched in sorted(set(label_map or {}) - used):
        yield SourceProblem(unmatched, "listed in the label mapping but not found in the folder",
                            "check the path in the mapping; paths are relative to the folder, with '/'")


def _load_labels(labels: Mapping[str, str] | str | os.PathLike[str], base: Path) -> dict[str, str]:
    if isinstance(labels, Mapping):
        entries = [(str(path), str(label), f"key {path!r}") for path, label in labels.items()]
        origin = "the label mapping"
    else:
        entries = _read_label_csv(Path(labels))
        origin = f"label file {os.fspath(labels)!r}"

    mapping: dict[str, str] = {}
    for path, label, where in entries:
        relative = _relative_to(path.strip(), base)
        if not label.strip():
            raise IngestError(f"{origin}, {where}: the label of {path!r} is empty; give every listed image a class")
        if relative in mapping and mapping[relative] != label.strip():
            raise IngestError(
                f"{origin}, {where}: {path!r} is labelled both {mapping[relative]!r} and {label.strip()!r}; "
                "keep one row per image"
            )
        mapping[relative] = label.strip()
    return mapping


def _read_label_csv(path: Path) -> list[tuple[str, str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise IngestError(
                    f"label file {os.fspath(path)!r} needs a header with the columns 'path' and 'label', "
                    f"found {reader.fieldnames!r}"
                )
            return [(row["path"] or "", row["label"] or "", f"line {reader.line_num}") for row in reader]
    except OSError as error:
        raise IngestError(f"cannot read label file {os.fspath(path)!r}: {error}") from error


def _relative_to(path: str, base: Path) -> str:
    """Normalise a listed path to the form the reader uses: relative to ``base``, with ``/``."""
    candidate = Path(path.replace("\\", "/"))
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(base.resolve())
        except ValueError:
            return candidate.as_posix()
    return candidate.as_posix().removeprefix("./")


def _record(
    path: Path, relative: Path, label_from: FolderLevel | None, split_from: FolderLevel | None
) -> SourceRecord:
    label, split, extra = labels_from_folders(relative.parts[:-1], label_from, split_from)
    return SourceRecord(
        source_path=relative.as_posix(),
        read=_reader_of(path),
        label=label,
        source_split=split,
        extra=extra,
    )
