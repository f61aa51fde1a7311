"""The :class:`Datalake`: one place for every raw image, its metadata and its history.

A lake is a folder (or bucket prefix) holding ``brainlake.json``, the raw
objects under ``objects/`` and the Delta catalog under ``catalog/``. Opening a
lake never changes it; ingesting adds objects first and then commits the new
items in one catalog commit, followed by one event.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import inspect
import json
import logging
import os
import posixpath
import re
import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._version import __version__
from .catalog import Catalog, Filter
from .exceptions import (
    CatalogError,
    IngestError,
    LakeError,
    LakeFormatError,
    LakeNotFoundError,
    QueryError,
    ReadOnlyLakeError,
)
from .imaging import DEFAULT_MAX_PIXELS, near_duplicate_components
from . import maintenance
from .ingest import get_reader
from .ingest._pipeline import IngestReport, prepare_items, split_coverage_warnings
from .maintenance import ForgetReport, ObjectProblem, VacuumReport, VerifyReport
from .storage import (
    Location,
    ObjectStore,
    open_location,
    with_retries,
    write_once,
)

if TYPE_CHECKING:
    from .mart import BuiltMart, Datamart

__all__ = [
    "Datalake",
    "DuplicateGroup",
    "ForgetReport",
    "ObjectProblem",
    "VacuumReport",
    "VerifyReport",
    "conditions_to_filters",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MANIFEST = "brainlake.json"
_PSEUDONYM_KEY = "secrets/pseudonym.key"


@dataclass(frozen=True)
class DuplicateGroup:
    """Items whose raw bytes are identical, or whose pixels are near-identical.

    Attributes:
        sha256: The shared object digest; for a near-duplicate group, the
            smallest digest among its items.
        item_ids: The items, sorted by source path.
        source_paths: Their paths in their sources, in the same order.
        source_splits: Their source splits, in the same order.
        labels: Their labels, in the same order.
        sha256s: Their object digests, in the same order.
    """

    sha256: str
    item_ids: tuple[str, ...]
    source_paths: tuple[str, ...]
    source_splits: tuple[str | None, ...]
    labels: tuple[str | None, ...]
    sha256s: tuple[str, ...] = ()

    @property
    def extra_copies(self) -> int:
        """The number of items beyond the first in the group."""
        return len(self.item_ids) - 1

    @property
    def exact(self) -> bool:
        """Whether all items of the group share one object (identical bytes)."""
        return len(set(self.sha256s)) <= 1

    @property
    def spans_splits(self) -> bool:
        """Whether the copies sit in more than one source split (a leak)."""
        return len(set(self.source_splits)) > 1

    @property
    def conflicting_labels(self) -> bool:
        """Whether the copies carry different labels."""
        return len(set(self.labels)) > 1


_SUFFIXES = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in", "not_in": "not in"}


def conditions_to_filters(conditions: Mapping[str, Any]) -> list[Filter]:
    """Turn keyword conditions into catalog filters, combined with *and*.

    ``column=value`` tests equality and ``column=[a, b]`` (any list, tuple or
    set) membership. A suffix chooses another test: ``column__ne``,
    ``__lt``, ``__le``, ``__gt``, ``__ge``, ``__in``, ``__not_in``, and
    ``column__isnull=True`` (or ``False``) for missing values. ``column=None``
    is rejected; use ``__isnull``.

    Example:
        >>> from brainlake.lake import conditions_to_filters
        >>> conditions_to_filters({"width__ge": 256, "patient_id__isnull": False})
        [('patient_id', 'is not null', None), ('width', '>=', 256)]

    Raises:
        ValueError: If a suffix or value is invalid; the message names the condition.
    """
    filters: list[Filter] = []
    for key, value in sorted(conditions.items()):
        column, _, suffix = key.partition("__")
        if suffix == "isnull":
            if not isinstance(value, bool):
                raise ValueError(f"condition {key}={value!r} needs True or False")
            filters.append((column, "is null" if value else "is not null", None))
            continue
        if suffix and suffix not in _SUFFIXES:
            raise ValueError(
                f"condition {key!r} has an unknown suffix {suffix!r}; use one of "
                f"{', '.join(sorted([*_SUFFIXES, 'isnull']))}"
            )
        if value is None:
            raise ValueError(f"condition {key}=None is not supported; use {column}__isnull=True")
        many = isinstance(value, (list, tuple, set, frozenset))
        if suffix:
            op = _SUFFIXES[suffix]
        else:
            op = "in" if many else "="
        if op in ("in", "not in"):
            values = sorted(value, key=str) if many else [value]
            if not values:
                raise ValueError(f"condition {key}=[] matches nothing; give at least one value")
            filters.append((column, op, values))
        elif many:
            raise ValueError(f"condition {key}={value!r} compares with one value, not a list")
        else:
            filters.append((column, op, value))
    return filters


class Datalake:
    """A lake of raw MRI images with their metadata and the history of every change.

    ``Datalake(url)`` opens the lake at ``url`` and creates it when the
    location is empty; :meth:`open` only opens.

    Args:
        url: A local folder or an fsspec URL (``s3://bucket/lake``, ``gs://bucket/lake``).
        storage_options: Options for the fsspec backend (its own keys, such as
            s3fs's ``key``, ``secret`` and ``endpoint_url``); the catalog gets the
            same settings translated for delta-rs.
        create: Create a new lake when none exists at ``url``.
        read_only: Open an existing lake for reading only: every method that
            would write (ingest, forget, vacuum, a verify repair, recording an
            event, a run or a mart build) raises :class:`ReadOnlyLakeError`.
            Implies ``create=False``.

    Raises:
        LakeNotFoundError: If no lake exists and ``create`` is false (or
            ``read_only`` is true).
        LakeFormatError: If ``url`` contains a lake of an unknown format version.

    Example:
        >>> import brainlake as bl
        >>> lake = bl.Datalake(tmp_path / "lake")  # doctest: +SKIP
        >>> report = lake.ingest(bl.datasets.sample_path(), source="sample",
        ...                      split_from="grandparent")  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self._location = open_location(url, storage_options)
        self._objects = ObjectStore(self._location)
        self._catalog = Catalog(self._location)
        self._key: bytes | None = None
        self._read_only = read_only
        self._info = self._load_or_create(create and not read_only)

    @classmethod
    def open(
        cls,
        url: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
    ) -> Datalake:
        """Open an existing lake; never create one. See :class:`Datalake` for ``read_only``."""
        return cls(url, storage_options=storage_options, create=False, read_only=read_only)

    @property
    def read_only(self) -> bool:
        """Whether the lake was opened with ``read_only=True``."""
        return self._read_only

    def _require_writable(self, action: str) -> None:
        """Raise :class:`ReadOnlyLakeError` naming ``action`` when the lake is read-only."""
        if self._read_only:
            raise ReadOnlyLakeError(
                f"cannot {action}: lake {self.url!r} was opened read-only; "
                "open it with Datalake(url) or Datalake.open(url) to change it"
            )

    def _load_or_create(self, create: bool) -> dict[str, Any]:
        fs = self._location.fs
        manifest = self._location.path(_MANIFEST)
        manifest_url = self._location.url_of(_MANIFEST)
        self._location.refresh()
        if with_retries("check", manifest_url, lambda: fs.exists(manifest)):
            info: dict[str, Any] = json.loads(with_retries("read", manifest_url, lambda: fs.cat_file(manifest)))
            if info.get("format_version") != FORMAT_VERSION:
                raise LakeFormatError(
                    f"lake at {self.url!r} has format version {info.get('format_version')!r}; "
                    f"this brainlake {__version__} reads format {FORMAT_VERSION}"
                )
            return info
        if not create:
            raise LakeNotFoundError(
                f"no lake at {self.url!r} ({_MANIFEST} not found); check the path, or create a lake "
                f"there by ingesting into it (Datalake({self.url!r}).ingest(...) or brainlake ingest)"
            )
        # A root holding only catalog/ is a lake that another process is creating
        # right now (or whose creation stopped before brainlake.json): finish it.
        entries = fs.ls(self._location.root, detail=False) if fs.exists(self._location.root) else []
        if {posixpath.basename(str(entry).rstrip("/")) for entry in entries} - {"catalog"}:
            raise LakeFormatError(
                f"{self.url!r} is not empty and contains no {_MANIFEST}; choose an empty or new folder for a lake"
            )

        info = {
            "format_version": FORMAT_VERSION,
            "lake_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": __version__,
        }
        fs.makedirs(self._location.root, exist_ok=True)
        try:
            self._catalog.create()
        except CatalogError:
            # Two creators raced for a table's first commit and this one lost.
            # The table exists now, so creating it again leaves it as it is.
            self._catalog.create()
        # brainlake.json is written last, so a half-created lake is never taken for a lake.
        # It is written only if absent, so when two processes create the lake at
        # once, both continue with the first one's manifest and lake id.
        if not write_once(self._location, _MANIFEST, json.dumps(info, indent=2).encode()):
            return dict(json.loads(with_retries("read", manifest_url, lambda: fs.cat_file(manifest))))
        logger.info("created lake %s", self.url)
        return info

    # Properties ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The lake root as a URL (an absolute path for local lakes)."""
        return self._location.url

    @property
    def lake_id(self) -> str:
        """A random id given to the lake when it was created."""
        return str(self._info["lake_id"])

    @property
    def location(self) -> Location:
        """The resolved storage location (filesystem and root path)."""
        return self._location

    @property
    def version(self) -> int:
        """The current lake version: the version of the items table."""
        return self._catalog.version()

    def __repr__(self) -> str:
        return f"Datalake({self.url!r})"

    # Ingest -------------------------------------------------------------------

    def ingest(
        self,
        path: str | os.PathLike[str],
        *,
        source: str,
        reader: str = "folder",
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: bool | None = None,
        keep_identifiers: bool = False,
        **reader_options: Any,
    ) -> IngestReport:
        """Add every image of a source to the lake.

        Each image is read, decoded fully (a broken file fails here, not in a
        training epoch), hashed and stored as an object; then all new items are
        committed at once and an ``ingest`` event is recorded. Running the same
        ingest again adds no items. Files that fail are listed in the report
        with the reason; the others land.

        Patient ids are stored pseudonymised: each is replaced by a keyed hash
        (HMAC-SHA-256) under a secret key kept in the lake at
        ``secrets/pseudonym.key``, outside the catalog tables, so the same
        patient gets the same pseudonym in every ingest into this lake. Anyone
        who holds the key can test guessed ids against the pseudonyms: restrict
        access to that file as you would to the identifiers themselves.

        Args:
            path: The source location (for the ``folder`` reader, a folder).
            source: A name for the source, stored with each item (``"kaggle-brain-mri"``).
            reader: The registered reader to use (:func:`brainlake.list_readers`).
            workers: Threads for reading, decoding, hashing and storing. The
                default is one per core, and at least 16 on S3 and GCS because
                puts there mostly wait on the network.
            max_pixels: Images with more pixels are rejected.
            progress: Show a progress bar; by default only on a terminal.
            keep_identifiers: Store patient ids as the source gives them,
                instead of pseudonymised, and let readers of formats that carry
                identifiers in the file (DICOM) store it unchanged.
            **reader_options: Options for the reader. For ``folder``,
                ``zip`` and ``dicom``: ``label_from`` (``"parent"`` by default, or
                ``"grandparent"`` or ``None``) names the folder level that gives
                the class, and ``split_from`` (``None`` by default) the level
                that gives the source split, such as ``Training``/``Testing``.

        Returns:
            What was added, what was already there, and what failed.

        Raises:
            IngestError: If the source cannot be read at all or an argument is invalid.
        """
        self._require_writable("ingest")
        if not source or not source.strip():
            raise IngestError("source must be a non-empty name, such as 'kaggle-brain-mri'")
        read = get_reader(reader)
        options = dict(reader_options)
        if "keep_identifiers" in inspect.signature(read).parameters:
            # Readers of formats that carry identifiers in the file (DICOM)
            # remove them from the stored copy unless asked to keep them.
            options["keep_identifiers"] = keep_identifiers

        # 1. Start the event and learn which items of this source already exist.
        event_id = uuid.uuid4().hex
        started = datetime.now(UTC)
        report = IngestReport(event_id=event_id, source=source)
        known = set(self._catalog.items(columns=["item_id"], filters=[("source", "=", source)])
                    .column("item_id").to_pylist())

        # 2. Store objects and collect the new item rows.
        rows = prepare_items(
            read(path, **options),
            source=source,
            event_id=event_id,
            ingested_at=started,
            known_item_ids=known,
            objects=self._objects,
            report=report,
            workers=workers,
            max_pixels=max_pixels,
            progress=progress,
            pseudonymise=None if keep_identifiers else self._pseudonym,
        )

        # 3. Commit the items in one catalog commit, then record the event.
        self._objects.flush()
        report.warnings.extend(split_coverage_warnings(rows))
        report.added = rows.num_rows
        report.lake_version = self._catalog.append_items(rows) if rows.num_rows else self.version
        parameters = {"path": os.fspath(path), "reader": reader, "keep_identifiers": keep_identifiers,
                      **_effective_options(read, path, options)}
        self._record_event("ingest", event_id, started, source=source, parameters=parameters,
                           summary=report.to_dict(), items_version=report.lake_version)
        logger.info("ingested %d new items from %s into %s", report.added, source, self.url)
        return report

    def _pseudonym(self, identifier: str) -> str:
        """Return the lake's stable pseudonym for a patient identifier."""
        digest = hmac.new(self._pseudonym_key(), identifier.encode(), hashlib.sha256).hexdigest()
        return f"p-{digest[:24]}"

    def _pseudonym_key(self) -> bytes:
        if self._key is not None:
            return self._key
        fs = self._location.fs
        path = self._location.path(_PSEUDONYM_KEY)
        url = self._location.url_of(_PSEUDONYM_KEY)
        if not with_retries("check", url, lambda: fs.exists(path)):
            # Created only if absent (a conditional put on S3 and GCS), so when two
            # first ingests race, the loser reads and uses the winner's key.
            write_once(self._location, _PSEUDONYM_KEY, secrets.token_bytes(32))
        self._key = bytes(with_retries("read", url, lambda: fs.cat_file(path)))
        return self._key

    def _record_event(
        self,
        kind: str,
        event_id: str,
        created_at: datetime,
        *,
        source: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        items_version: int | None = None,
    ) -> None:
        self._require_writable(f"record a {kind!r} event")
        self._catalog.append_event(
            {
                "event_id": event_id,
                "kind": kind,
                "created_at": created_at,
                "user": _current_user(),
                "source": source,
                "items_version": items_version,
                "parameters": json.dumps(parameters or {}, sort_keys=True, default=str),
                "summary": json.dumps(summary or {}, sort_keys=True, default=str),
                "library_version": __version__,
            }
        )

    def record_event(
        self,
        kind: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> str:
        """Record an event of another module (a mart build, a run) and return its id."""
        self._require_writable(f"record a {kind!r} event")
        event_id = uuid.uuid4().hex
        self._record_event(kind, event_id, datetime.now(UTC), parameters=parameters,
                           summary=summary, items_version=self.version)
        return event_id

    # Reading ------------------------------------------------------------------

    def items(
        self,
        columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
        **where: Any,
    ) -> pa.Table:
        """Return the catalog's items as an Arrow table.

        Args:
            columns: Columns to read; all when omitted.
            version: A past lake version to read (time travel).
            **where: ``column=value`` (equality) or ``column=[v1, v2]``
                (membership) conditions, pushed into the catalog scan.

        Example:
            >>> lake.items(["source_path", "label"], label="glioma")  # doctest: +SKIP
        """
        try:
            filters = conditions_to_filters(where)
        except ValueError as error:
            raise QueryError(str(error)) from error
        return self._catalog.items(columns=columns, filters=filters, version=version)

    def read_object(self, sha256: str) -> bytes:
        """Return the raw bytes of a stored object."""
        return self._objects.get(sha256)

    def history(self) -> pa.Table:
        """Return every event (ingests, mart builds, runs), oldest first."""
        return self._catalog.events()

    def duplicates(self, *, near: bool = False, max_distance: int = 4, **where: Any) -> list[DuplicateGroup]:
        """Return the groups of items that share identical bytes or near-identical pixels.

        Args:
            near: Also join items whose perceptual hashes differ in at most
                ``max_distance`` bits (the same slice re-encoded, resized or
                lightly edited). Groups are connected components, so a chain of
                close pairs forms one group.
            max_distance: The largest Hamming distance between 64-bit
                perceptual hashes that counts as near-identical. 4 joins
                re-encoded and resized copies of the same slice; larger values
                start to join different slices of one scan.
            **where: Conditions restricting the items considered, as in :meth:`items`.

        Returns:
            One group per set of two or more items, sorted by their smallest digest.
        """
        if not isinstance(max_distance, int) or not 0 <= max_distance <= 64:
            raise QueryError(f"max_distance must be a whole number of bits from 0 to 64, got {max_distance!r}")
        table = self.items(["item_id", "sha256", "phash", "source_path", "source_split", "label"], **where)
        rows = table.to_pylist()
        if near:
            hashes = [row["phash"] or "0" * 16 for row in rows]
            components = near_duplicate_components(hashes, max_distance)
            # Items without a hash (none are ingested so today) can only match exactly.
            unhashed = [index for index, row in enumerate(rows) if not row["phash"]]
            components = [[index for index in group if index not in unhashed] for group in components]
            components += _exact_components([rows[index] for index in unhashed], unhashed)
        else:
            components = _exact_components(rows, list(range(len(rows))))

        groups = [_group_of([rows[index] for index in members]) for members in components if len(members) > 1]
        return sorted(groups, key=lambda group: (group.sha256, group.item_ids))

    # Maintenance ------------------------------------------------------------

    def verify(self, *, repair_from: Datalake | str | os.PathLike[str] | None = None) -> VerifyReport:
        """Check that every item's object exists and hashes to its name.

        Reads every object once, including the attachments of items (such as
        tumor masks) and the checkpoints of recorded runs (reported under the
        id ``run:<run-id>``). Also lists orphaned objects (stored, but
        referenced by no item, run or mart), which an interrupted ingest or a
        forget can leave behind, and temporary files of interrupted writes.
        Without ``repair_from`` nothing is changed.

        Args:
            repair_from: Another lake (or its URL, opened read-only) holding
                good copies. Each missing or corrupt object found there is
                hashed before it is written, and written atomically (a
                temporary file renamed into place on a local disk, a single
                put on S3 or GCS). Objects it cannot supply are listed in
                :attr:`VerifyReport.unrepaired`.

        Raises:
            ReadOnlyLakeError: If ``repair_from`` is given and this lake is read-only.
        """
        other = None
        if repair_from is not None:
            other = repair_from if isinstance(repair_from, Datalake) else Datalake.open(repair_from, read_only=True)
        return maintenance.verify(self, other)

    def vacuum(
        self,
        *,
        dry_run: bool = False,
        grace_period: timedelta = timedelta(hours=1),
        history: bool = False,
    ) -> VacuumReport:
        """Remove objects nothing refers to, leftovers of interrupted writes, and optionally old catalog versions.

        An object is kept while a current catalog item (or its attachment,
        such as a mask), a run record (its checkpoint) or a built mart's
        manifest refers to it.

        Ingest writes objects before it commits the items that refer to them,
        so during a concurrent ingest its new objects look unreferenced.
        ``grace_period`` protects them: only unreferenced objects and
        temporary files last modified longer ago than that are removed.

        Args:
            dry_run: Only report what would be removed.
            grace_period: The minimum age of an unreferenced object or
                temporary file before it is removed; one hour by default.
                ``timedelta(0)`` removes everything unreferenced, which is safe
                only while no other process writes to the lake.
            history: Also remove every past version of the items table, so
                time travel (``items(version=...)``, marts pinned to an older
                version) raises :class:`VersionNotFoundError` afterwards. This
                is how rows removed by :meth:`forget` leave the catalog's files.

        Returns:
            What was (or would be) removed.

        Raises:
            ReadOnlyLakeError: If the lake is read-only and ``dry_run`` is false.
        """
        return maintenance.vacuum(self, dry_run=dry_run, grace_period=grace_period, history=history)

    def forget(
        self,
        *,
        patient_id: str | None = None,
        item_ids: Sequence[str] | None = None,
        source: str | None = None,
        delete_marts: bool = False,
        purge_history: bool = False,
    ) -> ForgetReport:
        """Remove a patient's (or some items', or a source's) data from the lake.

        Give exactly one of ``patient_id``, ``item_ids`` or ``source``. The
        matching items are removed in one new catalog version, and every
        object they referred to (images, masks) that no remaining item, run or
        mart refers to is deleted. Built marts that contained any of the items
        are marked affected (opening one logs a warning and exposes
        ``BuiltMart.affected``), and so are the runs trained on them. A
        ``forget`` event records who, when and how many items and objects,
        with the affected marts and runs, but never the identifier.

        Past catalog versions still hold the removed rows until the history
        is purged (``purge_history=True`` here, or ``vacuum(history=True)``).

        Args:
            patient_id: The patient's identifier as the source gave it. It is
                pseudonymised with this lake's key before matching, and also
                matched as given (for items ingested with ``keep_identifiers``).
            item_ids: Item ids to remove.
            source: A source name; all its items are removed.
            delete_marts: Delete the files of affected marts (their arrays and
                item lists contain the removed images and pseudonyms) instead
                of only marking them.
            purge_history: Also remove every past catalog version, as
                :meth:`vacuum` with ``history=True`` does.

        Returns:
            What was removed and what is affected.

        Raises:
            ReadOnlyLakeError: If the lake is read-only.
            QueryError: If not exactly one selector is given, or it is empty.
        """
        self._require_writable("forget items")
        selector = self._forget_selector(patient_id, item_ids, source)
        return maintenance.forget(self, selector, delete_marts=delete_marts, purge_history=purge_history)

    def _forget_selector(
        self, patient_id: str | None, item_ids: Sequence[str] | None, source: str | None
    ) -> Filter:
        selectors = [name for name, value in (("patient_id", patient_id), ("item_ids", item_ids), ("source", source))
                 if value is not None]
        if len(selectors) != 1:
            raise QueryError(
                f"forget needs exactly one of patient_id, item_ids or source; got {selectors or 'none'}"
            )
        if patient_id is not None:
            if not patient_id.strip():
                raise QueryError("patient_id must be a non-empty identifier")
            candidates = [patient_id]
            if self._location.fs.exists(self._location.path(_PSEUDONYM_KEY)):
                candidates.append(self._pseudonym(patient_id))
            return ("patient_id", "in", candidates)
        if item_ids is not None:
            if isinstance(item_ids, str):
                raise QueryError(f"item_ids must be a list of ids, got the string {item_ids!r}; use [{item_ids!r}]")
            if not item_ids:
                raise QueryError("item_ids is empty; give at least one item id")
            return ("item_id", "in", sorted(set(item_ids)))
        source_name = source or ""
        if not source_name.strip():
            raise QueryError("source must be a non-empty source name")
        return ("source", "=", source_name)

    # Marts --------------------------------------------------------------------

    def mart(self, name: str) -> Datamart:
        """Start a datamart recipe named ``name`` on this lake (nothing runs yet)."""
        from .mart import Datamart

        return Datamart(self, name)

    def open_mart(self, name: str, recipe_hash: str | None = None) -> BuiltMart:
        """Open a built datamart: the given recipe, or the latest one built under ``name``."""
        from .mart import open_built_mart

        return open_built_mart(self, name, recipe_hash)


def _effective_options(read: Any, path: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return the reader options as the reader sees them, defaults included, for the event record."""
    try:
        bound = inspect.signature(read).bind_partial(path, **options)
    except (TypeError, ValueError):
        return dict(options)
    bound.apply_defaults()
    values = dict(bound.arguments)
    values.pop(next(iter(values)), None)  # the path, recorded on its own
    values.update(values.pop("options", {}) or {})
    return values


def _exact_components(rows: Sequence[Mapping[str, Any]], indices: Sequence[int]) -> list[list[int]]:
    members: dict[str, list[int]] = defaultdict(list)
    for row, index in zip(rows, indices):
        members[row["sha256"]].append(index)
    return list(members.values())


def _group_of(rows: Sequence[Mapping[str, Any]]) -> DuplicateGroup:
    ordered = sorted(rows, key=lambda row: (row["source_path"], row["item_id"]))
    return DuplicateGroup(
        sha256=min(row["sha256"] for row in ordered),
        item_ids=tuple(row["item_id"] for row in ordered),
        source_paths=tuple(row["source_path"] for row in ordered),
        source_splits=tuple(row["source_split"] for row in ordered),
        labels=tuple(row["label"] for row in ordered),
        sha256s=tuple(row["sha256"] for row in ordered),
    )


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
