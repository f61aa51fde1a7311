"""The ingest steps: read, hash, decode, store objects, commit one batch of items."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from ..catalog import ITEM_SCHEMA
from ..exceptions import ImageDecodeError, StorageError
from ..imaging import DEFAULT_MAX_PIXELS, inspect_image
from ..storage import ObjectStore, sha256_hex
from ._base import SourceProblem, SourceRecord

__all__ = ["IngestReport", "item_id_for", "prepare_items", "split_coverage_warnings"]

logger = logging.getLogger(__name__)

_CHUNK = 64
_REMOTE_WORKERS = 16


@dataclass
class IngestReport:
    """What one call of :meth:`brainlake.Datalake.ingest` did.

    Attributes:
        event_id: The id of the event recorded for this ingest.
        source: The source name given to the ingest.
        seen: Entries the reader yielded as images.
        added: New items committed to the catalog.
        already_present: Items skipped because the lake already contains them.
        new_objects: Objects whose bytes were not in the lake before.
        failed: Images that could not be ingested, each with the reason and a hint.
        skipped: Entries the reader passed over (hidden files, other extensions).
        warnings: Findings about the source as a whole, such as a class
            that has no images in one of the source's splits.
        lake_version: The lake version after the commit (unchanged if nothing was added).
    """

    event_id: str
    source: str
    seen: int = 0
    added: int = 0
    already_present: int = 0
    new_objects: int = 0
    failed: list[SourceProblem] = field(default_factory=list)
    skipped: list[SourceProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lake_version: int = 0

    @property
    def ok(self) -> bool:
        """Whether every image the reader found is now in the lake."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain values (for JSON output and the event)."""
        return {
            "event_id": self.event_id,
            "source": self.source,
            "seen": self.seen,
            "added": self.added,
            "already_present": self.already_present,
            "new_objects": self.new_objects,
            "failed": [vars(problem) for problem in self.failed],
            "skipped": [vars(problem) for problem in self.skipped],
            "warnings": list(self.warnings),
            "lake_version": self.lake_version,
        }

    def __str__(self) -> str:
        lines = [
            f"ingest {self.event_id} of source {self.source!r}: {self.seen} images seen, "
            f"{self.added} added, {self.already_present} already in the lake, "
            f"{self.new_objects} new objects, {len(self.failed)} failed, "
            f"{_plural(len(self.skipped), 'other entry', 'other entries')} skipped; "
            f"lake version {self.lake_version}"
        ]
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        for problem in self.failed:
            hint = f" ({problem.hint})" if problem.hint else ""
            lines.append(f"  failed: {problem.source_path}: {problem.reason}{hint}")
        for problem in self.skipped[:_SKIPPED_SHOWN]:
            hint = f" ({problem.hint})" if problem.hint else ""
            lines.append(f"  skipped: {problem.source_path}: {problem.reason}{hint}")
        if len(self.skipped) > _SKIPPED_SHOWN:
            lines.append(f"  ... and {len(self.skipped) - _SKIPPED_SHOWN} more skipped entries (see report.skipped)")
        return "\n".join(lines)


_SKIPPED_SHOWN = 10


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def item_id_for(source: str, source_path: str, sha256: str) -> str:
    """Return the stable id of an item: the same file in the same source keeps its id."""
    key = f"{source}\x00{source_path}\x00{sha256}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


@dataclass(frozen=True)
class _Prepared:
    record: SourceRecord
    sha256: str
    size_bytes: int
    info: Any
    new_digests: tuple[str, ...]
    attachment_digests: dict[str, str]


def _prepare_one(record: SourceRecord, objects: ObjectStore, max_pixels: int) -> _Prepared | SourceProblem:
    try:
        data = record.read()
    except OSError as error:
        return SourceProblem(record.source_path, f"cannot be read: {error}",
                             "check that the file is readable and complete")
    try:
        info = inspect_image(data, max_pixels=max_pixels, name=record.source_path)
    except ImageDecodeError as error:
        # The message starts with the path and ends with its own advice.
        reason = str(error).removeprefix(f"{record.source_path}: ")
        return SourceProblem(record.source_path, reason, failed=True)
    digest = sha256_hex(data)
    new_digests: list[str] = []
    attachment_digests: dict[str, str] = {}
    try:
        _, written = objects.put(data, digest)
        if written:
            new_digests.append(digest)
        for name, read_attachment in sorted(record.attachments.items()):
            attachment_digest, attachment_written = objects.put(read_attachment())
            attachment_digests[name] = attachment_digest
            if attachment_written:
                new_digests.append(attachment_digest)
    except StorageError as error:
        return SourceProblem(record.source_path, str(error), "check the lake's storage, then ingest again")
    except (OSError, ValueError) as error:
        return SourceProblem(record.source_path, f"an attachment cannot be read: {error}", "check the source file")
    return _Prepared(record, digest, len(data), info, tuple(new_digests), attachment_digests)


def _chunks(items: Iterable[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def prepare_items(
    entries: Iterable[SourceRecord | SourceProblem],
    *,
    source: str,
    event_id: str,
    ingested_at: datetime,
    known_item_ids: set[str],
    objects: ObjectStore,
    report: IngestReport,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
    pseudonymise: Callable[[str], str] | None = None,
) -> pa.Table:
    """Store the objects of a source's new images and return their item rows.

    Objects are written before any catalog commit, so a crash leaves at most
    unreferenced objects. Work runs on a thread pool in chunks, so memory contains
    one chunk of image bytes at a time, whatever the size of the source.
    ``pseudonymise``, when given, replaces each patient id before it is stored.

    Returns:
        The new item rows, with :data:`~brainlake.catalog.ITEM_SCHEMA`.
    """
    records = _records_only(entries, report)
    rows: list[dict[str, Any]] = []
    # Two threads may store the same bytes at once; count each digest once.
    new_digests: set[str] = set()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(desc=f"ingest {source}", unit="img", disable=not show)
    pool = ThreadPoolExecutor(max_workers=workers or _default_workers(objects))
    try:
        for chunk in _chunks(records, _CHUNK):
            for outcome in pool.map(lambda record: _prepare_one(record, objects, max_pixels), chunk):
                bar.update(1)
                if isinstance(outcome, SourceProblem):
                    report.failed.append(outcome)
                    logger.warning("failed to ingest %s: %s", outcome.source_path, outcome.reason)
                    continue
                new_digests.update(outcome.new_digests)
                if not _add_row(outcome, rows, source, event_id, ingested_at, known_item_ids, pseudonymise):
                    report.already_present += 1
    finally:
        pool.shutdown(wait=True)
        bar.close()
    report.new_objects = len(new_digests)
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def _default_workers(objects: ObjectStore) -> int:
    """Return one thread per core, or at least 16 when objects go to S3 or GCS.

    A put to an object store mostly waits for the server, so more threads
    than cores keep more requests in flight. Memory stays bounded by one
    chunk's bytes, whatever the thread count.
    """
    cores = os.cpu_count() or 1
    return cores if objects.is_local else max(cores, _REMOTE_WORKERS)


def _records_only(entries: Iterable[SourceRecord | SourceProblem], report: IngestReport) -> Iterator[SourceRecord]:
    for entry in entries:
        if isinstance(entry, SourceProblem):
            if entry.failed:
                report.seen += 1
                report.failed.append(entry)
                logger.warning("failed to ingest %s: %s", entry.source_path, entry.reason)
            else:
                report.skipped.append(entry)
            continue
        report.seen += 1
        yield entry


def _add_row(
    prepared: _Prepared,
    rows: list[dict[str, Any]],
    source: str,
    event_id: str,
    ingested_at: datetime,
    known_item_ids: set[str],
    pseudonymise: Callable[[str], str] | None,
) -> bool:
    record = prepared.record
    item_id = item_id_for(source, record.source_path, prepared.sha256)
    if item_id in known_item_ids:
        return False
    known_item_ids.add(item_id)
    info = prepared.info
    rows.append(
        {
            "item_id": item_id,
            "sha256": prepared.sha256,
            "size_bytes": prepared.size_bytes,
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "bit_depth": info.bit_depth,
            "label": record.label,
            "source": source,
            "source_path": record.source_path,
            "source_split": record.source_split,
            "patient_id": pseudonymise(record.patient_id) if pseudonymise and record.patient_id else record.patient_id,
            "modality": record.modality,
            "phash": info.phash,
            "event_id": event_id,
            "ingested_at": ingested_at,
            "extra": _extra_json(record.extra, info.exif_orientation, prepared.attachment_digests),
        }
    )
    return True


def _extra_json(extra: dict[str, Any], exif_orientation: int | None, attachments: dict[str, str]) -> str | None:
    values = dict(extra)
    if exif_orientation is not None:
        values["exif_orientation"] = exif_orientation
    for name, digest in attachments.items():
        values[f"{name}_sha256"] = digest
    return json.dumps(values, sort_keys=True, ensure_ascii=False) if values else None


def split_coverage_warnings(rows: pa.Table) -> list[str]:
    """Return a warning for each label missing from a source split that other labels occur in."""
    pairs = {(label, split) for label, split in zip(rows.column("label").to_pylist(),
                                                     rows.column("source_split").to_pylist())
             if label is not None and split is not None}
    labels = sorted({label for label, _ in pairs})
    splits = sorted({split for _, split in pairs})
    warnings = []
    for split in splits:
        missing = [label for label in labels if (label, split) not in pairs]
        if missing:
            warnings.append(
                f"split {split!r} has no images of class(es) {', '.join(missing)}; "
                "marts built from this source will lack them there"
            )
    return warnings
