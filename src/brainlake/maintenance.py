"""Keeping a lake whole and honouring consent: verify, repair, vacuum and forget.

These are the implementations behind :meth:`Datalake.verify`,
:meth:`Datalake.vacuum` and :meth:`Datalake.forget`, with the reports they
return. An object is referenced when a current catalog item (its image or an
attachment such as a mask), a run record (its checkpoint) or a built mart's
manifest names it. Every operation here starts from that set of references.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .catalog import Filter
from .exceptions import LakeError, StorageError
from .storage import cache_root, sha256_hex

if TYPE_CHECKING:
    from .lake import Datalake

__all__ = ["ForgetReport", "ObjectProblem", "VacuumReport", "VerifyReport"]

logger = logging.getLogger(__name__)

_AFFECTED = "affected.json"
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ObjectProblem:
    """One item whose object is missing or corrupt.

    Attributes:
        kind: ``"missing"`` (no object stored) or ``"corrupt"`` (the bytes no
            longer hash to the object's name).
        item_id: The item, or ``run:<run-id>`` for a run's checkpoint.
        sha256: The object's digest.
        object_path: Where the object is (or should be) stored.
        source_path: The item's path in its source; ``None`` for a run.
    """

    kind: Literal["missing", "corrupt"]
    item_id: str
    sha256: str
    object_path: str
    source_path: str | None


@dataclass
class VerifyReport:
    """Findings of :meth:`Datalake.verify`, and what a repair restored.

    Attributes:
        items_checked: Items whose object was checked.
        objects_checked: Distinct objects read and hashed.
        missing: Items whose object is not stored, as ``(item_id, sha256)``.
        corrupt: Items whose object's bytes no longer hash to its name.
        orphaned: Stored objects that no item, run or mart references (left
            by an interrupted ingest or a forget); :meth:`Datalake.vacuum`
            removes them.
        temporary: Temporary files left under ``objects/`` by an interrupted write.
        problems: Every missing or corrupt object per item, with its paths.
        repaired: Digests restored from the lake given as ``repair_from``.
        unrepaired: Digests found missing or corrupt that could not be restored.
    """

    items_checked: int = 0
    objects_checked: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    problems: list[ObjectProblem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every item's object exists and is intact (after any repair)."""
        found = {digest for _, digest in self.missing + self.corrupt}
        return found <= set(self.repaired)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain values."""
        return {
            "ok": self.ok,
            "items_checked": self.items_checked,
            "objects_checked": self.objects_checked,
            "missing": [list(pair) for pair in self.missing],
            "corrupt": [list(pair) for pair in self.corrupt],
            "orphaned": list(self.orphaned),
            "temporary": list(self.temporary),
            "problems": [asdict(problem) for problem in self.problems],
            "repaired": list(self.repaired),
            "unrepaired": list(self.unrepaired),
        }


@dataclass
class VacuumReport:
    """Objects and files removed by :meth:`Datalake.vacuum` (with ``dry_run``, the ones it would remove).

    Attributes:
        dry_run: Whether nothing was removed.
        objects_removed: Digests of unreferenced objects older than the grace period.
        bytes_freed: Their total size in bytes.
        objects_kept_recent: Unreferenced objects kept because they are younger
            than the grace period (a concurrent ingest may be about to commit them).
        temporary_removed: Temporary files of interrupted writes (objects, mart builds).
        history_files_removed: Catalog data files of past versions removed
            with ``history=True``.
    """

    dry_run: bool = False
    objects_removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    objects_kept_recent: int = 0
    temporary_removed: list[str] = field(default_factory=list)
    history_files_removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain values."""
        return asdict(self)


@dataclass
class ForgetReport:
    """Counts and affected marts and runs of one :meth:`Datalake.forget` call, without the identifier.

    Attributes:
        event_id: The ``forget`` event recorded, or ``None`` when nothing matched.
        items_removed: Items removed from the catalog.
        objects_removed: Objects deleted because no remaining item, run or mart referenced them.
        lake_version: The lake version after the removal.
        affected_marts: Built marts that contained removed items, as
            ``{"name": ..., "recipe_hash": ...}``.
        affected_runs: Ids of runs trained on an affected mart.
        marts_deleted: Whether the affected marts' files were deleted.
        history_purged: Whether past catalog versions were removed.
    """

    event_id: str | None = None
    items_removed: int = 0
    objects_removed: int = 0
    lake_version: int = 0
    affected_marts: list[dict[str, str]] = field(default_factory=list)
    affected_runs: list[str] = field(default_factory=list)
    marts_deleted: bool = False
    history_purged: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain values."""
        return asdict(self)


def verify(lake: Datalake, repair_from: Datalake | None) -> VerifyReport:
    """Check every referenced object of ``lake`` and restore bad ones from ``repair_from``; see :meth:`Datalake.verify`."""
    if repair_from is not None:
        lake._require_writable("repair objects")
    references = _referenced_digests(lake)
    sources = _item_source_paths(lake)

    report = VerifyReport(items_checked=len(sources))
    for digest in sorted(references):
        try:
            data = lake._objects.get(digest)
        except StorageError:
            kind: Literal["missing", "corrupt"] = "missing"
        else:
            report.objects_checked += 1
            if sha256_hex(data) == digest:
                continue
            kind = "corrupt"
        for referrer in references[digest]:
            (report.missing if kind == "missing" else report.corrupt).append((referrer, digest))
            report.problems.append(ObjectProblem(kind, referrer, digest, lake._objects.path(digest),
                                                 sources.get(referrer)))

    report.orphaned = sorted(set(lake._objects.iter_digests()) - set(references))
    report.temporary = [path for path, _ in _temporary_files(lake)]
    for problem in report.problems:
        logger.warning("item %s (%s): object %s is %s at %s", problem.item_id, problem.source_path,
                       problem.sha256, problem.kind, problem.object_path)
    if repair_from is not None:
        _repair(lake, report, repair_from)
    return report


def vacuum(lake: Datalake, *, dry_run: bool, grace_period: timedelta, history: bool) -> VacuumReport:
    """Remove what nothing in ``lake`` refers to; see :meth:`Datalake.vacuum`."""
    # NOTE: on S3 and GCS, an ingest that finds an old orphaned object
    # already stored leaves it untouched (local ingests refresh its
    # modification time), so the grace period does not protect that object
    # there. A vacuum during such an ingest can remove it before the ingest
    # commits, so run vacuum while no ingest runs, or run verify after both.
    if not dry_run:
        lake._require_writable("vacuum")
    if grace_period < timedelta(0):
        raise LakeError(f"grace_period must be zero or positive, got {grace_period!r}")
    cutoff = datetime.now(UTC) - grace_period
    fs = lake._location.fs
    report = VacuumReport(dry_run=dry_run)

    # 1. Unreferenced objects older than the grace period.
    referenced = set(_referenced_digests(lake))
    for digest in sorted(set(lake._objects.iter_digests()) - referenced):
        path = lake._objects.path(digest)
        if not _older_than(lake, path, cutoff):
            report.objects_kept_recent += 1
            continue
        report.bytes_freed += int(fs.size(path) or 0)
        report.objects_removed.append(digest)
        if not dry_run:
            lake._objects.remove(digest)

    # 2. Temporary files and staging folders of interrupted writes.
    for path, is_folder in list(_temporary_files(lake)):
        if _older_than(lake, path, cutoff):
            report.temporary_removed.append(path)
            if not dry_run:
                fs.rm(path, recursive=is_folder)

    # 3. Past catalog versions.
    if history:
        report.history_files_removed = lake._catalog.purge_history(dry_run=dry_run)
    logger.info("vacuum of %s%s: %d objects (%d bytes), %d temporary files, %d catalog files",
                lake.url, " (dry run)" if dry_run else "", len(report.objects_removed), report.bytes_freed,
                len(report.temporary_removed), len(report.history_files_removed))
    return report


def forget(lake: Datalake, selector: Filter, *, delete_marts: bool, purge_history: bool) -> ForgetReport:
    """Remove the items matching ``selector`` and what only they referred to; see :meth:`Datalake.forget`."""
    report = ForgetReport(marts_deleted=delete_marts, history_purged=purge_history)

    # 1. Find the items and every object they refer to.
    rows = lake._catalog.items(columns=["item_id", "sha256", "extra"], filters=[selector]).to_pylist()
    removed_ids = sorted({row["item_id"] for row in rows})
    digests = set()
    for row in rows:
        digests.add(row["sha256"])
        extra = json.loads(row["extra"] or "{}")
        digests.update(value for key, value in extra.items() if key.endswith("_sha256") and isinstance(value, str))

    if removed_ids:
        # 2. Remove the rows in one commit, then the objects nothing else refers to.
        started = datetime.now(UTC)
        affected_marts = _marts_containing(lake, set(removed_ids))
        report.lake_version = lake._catalog.delete_items(removed_ids)
        report.items_removed = len(removed_ids)
        still_referenced = set(_referenced_digests(lake))
        for digest in sorted(digests - still_referenced):
            if lake._objects.exists(digest):
                lake._objects.remove(digest)
                report.objects_removed += 1

        # 3. Mark (or delete) the affected marts and mark their runs, then record the event.
        event_id = uuid.uuid4().hex
        report.event_id = event_id
        report.affected_marts = [{"name": name, "recipe_hash": recipe_hash}
                                 for name, recipe_hash, _ in affected_marts]
        report.affected_runs = _mark_affected(lake, affected_marts, event_id, report, delete_marts)
        lake._record_event(
            "forget", event_id, started,
            parameters={"by": selector[0] if selector[0] != "item_id" else "item_ids",
                        "delete_marts": delete_marts, "purge_history": purge_history},
            summary={"items_removed": report.items_removed, "objects_removed": report.objects_removed,
                     "affected_marts": report.affected_marts, "affected_runs": report.affected_runs},
            items_version=report.lake_version,
        )
    else:
        report.lake_version = lake.version
        logger.warning("forget on %s: no item matches; nothing removed", lake.url)

    # 4. Remove past catalog versions when asked.
    if purge_history:
        lake._catalog.purge_history()
    logger.info("forget on %s: %d items and %d objects removed, %d marts and %d runs affected", lake.url,
                report.items_removed, report.objects_removed, len(report.affected_marts),
                len(report.affected_runs))
    return report


def _item_source_paths(lake: Datalake) -> dict[str, str]:
    table = lake._catalog.items(columns=["item_id", "source_path"])
    return dict(zip(table.column("item_id").to_pylist(), table.column("source_path").to_pylist()))


def _repair(lake: Datalake, report: VerifyReport, other: Datalake) -> None:
    """Restore the report's missing and corrupt objects from another lake."""
    for digest in sorted({problem.sha256 for problem in report.problems}):
        try:
            data = other.read_object(digest)
        except StorageError:
            report.unrepaired.append(digest)
            logger.warning("object %s: not found in %s; it stays missing or corrupt", digest, other.url)
            continue
        if sha256_hex(data) != digest:
            report.unrepaired.append(digest)
            logger.warning("object %s: the copy in %s is corrupt too; nothing written", digest, other.url)
            continue
        _replace_object(lake, digest, data)
        report.repaired.append(digest)
        logger.info("object %s: restored from %s", digest, other.url)


def _replace_object(lake: Datalake, digest: str, data: bytes) -> None:
    """Write an object's bytes over whatever is stored under its name, atomically."""
    target = lake._objects.path(digest)
    if not lake._location.is_local:
        lake._location.fs.pipe_file(target, data)  # a single put is atomic on S3 and GCS
        return
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{digest}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _referenced_digests(lake: Datalake) -> dict[str, list[str]]:
    """Map every object digest that something refers to onto the referrers.

    Referrers are the current catalog items (their object and attachments
    such as masks, under the item id), run records (``run:<run-id>``) and
    built marts (``mart:<name>/<recipe-hash>``). Any value of a key ending
    in ``_sha256`` in a run record or mart manifest counts, so an
    attachment added there later is kept by vacuum too.
    """
    by_digest: dict[str, list[str]] = defaultdict(list)
    table = lake.items(["item_id", "sha256", "extra"])
    for row in table.to_pylist():
        by_digest[row["sha256"]].append(row["item_id"])
        for key, value in json.loads(row["extra"] or "{}").items():
            if key.endswith("_sha256") and isinstance(value, str):
                by_digest[value].append(row["item_id"])
    for run_id, record in _run_records(lake):
        for digest in _digests_under_sha256_keys(record):
            by_digest[digest].append(f"run:{run_id}")
    for name, recipe_hash, folder in _mart_folders(lake):
        manifest_path = folder + "/manifest.json"
        if lake._location.fs.exists(manifest_path):
            manifest = json.loads(lake._location.fs.cat_file(manifest_path))
            for digest in _digests_under_sha256_keys(manifest):
                by_digest[digest].append(f"mart:{name}/{recipe_hash}")
    return by_digest


def _run_records(lake: Datalake) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(run_id, record)`` for every stored run record."""
    fs = lake._location.fs
    base = lake._location.path("runs")
    lake._location.refresh("runs")
    if not fs.exists(base):
        return []
    records = []
    for folder in sorted(fs.ls(base, detail=False)):
        record_path = folder.rstrip("/") + "/run.json"
        if fs.exists(record_path):
            record = json.loads(fs.cat_file(record_path))
            records.append((str(record.get("run_id") or _basename(folder)), record))
    return records


def _mart_folders(lake: Datalake) -> list[tuple[str, str, str]]:
    """Return ``(name, recipe_hash, folder)`` for every built mart (staging folders skipped)."""
    fs = lake._location.fs
    base = lake._location.path("marts")
    if not fs.exists(base):
        return []
    found = []
    for name_folder in sorted(fs.ls(base, detail=False)):
        if not fs.isdir(name_folder):
            continue
        for folder in sorted(fs.ls(name_folder, detail=False)):
            recipe_hash = _basename(folder)
            if not recipe_hash.startswith(".") and fs.isdir(folder):
                found.append((_basename(name_folder), recipe_hash, folder.rstrip("/")))
    return found


def _temporary_files(lake: Datalake) -> Iterator[tuple[str, bool]]:
    """Yield ``(path, is_folder)`` for leftovers of interrupted writes.

    These are temporary object files (``objects/.../.<digest>.<id>.tmp``)
    and mart staging folders (``marts/<name>/.<recipe-hash>.<suffix>``).
    """
    fs = lake._location.fs
    objects = lake._location.path("objects")
    if fs.exists(objects):
        for path in fs.find(objects):
            name = _basename(path)
            if name.startswith(".") and name.endswith(".tmp"):
                yield path, False
    marts = lake._location.path("marts")
    if fs.exists(marts):
        for name_folder in fs.ls(marts, detail=False):
            if not fs.isdir(name_folder):
                continue
            for folder in fs.ls(name_folder, detail=False):
                if _basename(folder).startswith(".") and fs.isdir(folder):
                    yield folder.rstrip("/"), True


def _older_than(lake: Datalake, path: str, cutoff: datetime) -> bool:
    try:
        modified = lake._location.fs.modified(path)
    except (NotImplementedError, FileNotFoundError, OSError):
        # Without a modification time the age is unknown; keep the file.
        return False
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return bool(modified <= cutoff)


def _marts_containing(lake: Datalake, item_ids: set[str]) -> list[tuple[str, str, str]]:
    """Return the built marts whose item lists name any of ``item_ids``."""
    fs = lake._location.fs
    affected = []
    for name, recipe_hash, folder in _mart_folders(lake):
        for path in fs.glob(folder + "/*-items.csv"):
            text = fs.cat_file(path).decode("utf-8")
            ids = {line.split(",", 1)[0] for line in text.splitlines()[1:]}
            if ids & item_ids:
                affected.append((name, recipe_hash, folder))
                break
    return affected


def _mark_affected(
    lake: Datalake, marts: Sequence[tuple[str, str, str]], event_id: str, report: ForgetReport, delete: bool
) -> list[str]:
    """Mark (or delete) affected marts, mark the runs trained on them, and return those run ids."""
    fs = lake._location.fs
    note = {"forget_event_id": event_id, "items_removed": report.items_removed}
    for name, recipe_hash, folder in marts:
        if delete:
            fs.rm(folder, recursive=True)
            if not lake._location.is_local:
                # A remote lake's marts are also cached on this machine.
                shutil.rmtree(cache_root() / lake.lake_id / "marts" / name / recipe_hash, ignore_errors=True)
        else:
            _append_affected(fs, folder + "/" + _AFFECTED, note)
            cached = cache_root() / lake.lake_id / "marts" / name / recipe_hash
            if not lake._location.is_local and cached.is_dir():
                # NOTE: only this machine's cached copy gets the note; a copy
                # cached elsewhere opens without the warning until it is re-fetched.
                notes = json.loads((cached / _AFFECTED).read_text()) if (cached / _AFFECTED).exists() else []
                (cached / _AFFECTED).write_text(json.dumps([*notes, note], indent=2, sort_keys=True))
    keys = {(name, recipe_hash) for name, recipe_hash, _ in marts}
    runs = []
    for run_id, record in _run_records(lake):
        mart = record.get("mart") or {}
        if (mart.get("name"), mart.get("recipe_hash")) in keys:
            _append_affected(fs, lake._location.path("runs", run_id, _AFFECTED), note)
            runs.append(run_id)
    return sorted(runs)


def _basename(path: str) -> str:
    """Return the last part of a ``/``-separated path."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _digests_under_sha256_keys(value: Any) -> Iterator[str]:
    """Yield every SHA-256 hex digest stored under a key ending in ``_sha256``, at any depth."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key).endswith("_sha256") and isinstance(inner, str) and _DIGEST.fullmatch(inner):
                yield inner
            else:
                yield from _digests_under_sha256_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _digests_under_sha256_keys(inner)


def _append_affected(fs: Any, path: str, note: Mapping[str, Any]) -> None:
    """Add a forget note to an ``affected.json`` marker (a list of notes)."""
    notes = json.loads(fs.cat_file(path)) if fs.exists(path) else []
    notes.append(dict(note))
    fs.pipe_file(path, json.dumps(notes, indent=2, sort_keys=True).encode())
