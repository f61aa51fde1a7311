"""The lake's metadata tables: items and events, stored as Delta Lake tables.

``catalog/items`` contains one row per item (an occurrence of a stored object in a
source) and ``catalog/events`` one row per event (an ingest, a mart build, a
run). Both are Delta tables written through delta-rs, so every append is an
atomic commit, every commit is a version that marts can pin, and the tables
can be read as they are by DuckDB, Polars or Spark.

Table objects are opened per call and released before returning. Scans go
through delta-rs's own query engine rather than a pyarrow dataset. With PyTorch
loaded in the same process, pyarrow dataset scans made the interpreter abort at
exit ("terminate called without an active exception") in up to one exit in
three, even single-threaded. delta-rs queries showed no abort in 60 runs
(deltalake 1.6.6, pyarrow 26, torch 2.14.1, on a 2-core x86_64 machine).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from .exceptions import CatalogError, VersionNotFoundError
from .storage import Location, delta_storage_options, delta_table_uri

__all__ = ["EVENT_SCHEMA", "ITEM_SCHEMA", "Catalog", "Filter"]

logger = logging.getLogger(__name__)

Filter = tuple[str, str, Any]
"""One pushed-down condition: ``(column, op, value)`` with op one of
``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``, ``is null``
and ``is not null`` (whose value is ignored)."""

_UTC_MICROS = pa.timestamp("us", tz="UTC")

ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("mode", pa.string()),
        pa.field("bit_depth", pa.int16()),
        pa.field("label", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("source_split", pa.string()),
        pa.field("patient_id", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("phash", pa.string()),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ingested_at", _UTC_MICROS, nullable=False),
        pa.field("extra", pa.string()),
    ]
)
"""Columns of the items table; ``extra`` is a JSON object of source-specific values."""

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("created_at", _UTC_MICROS, nullable=False),
        pa.field("user", pa.string()),
        pa.field("source", pa.string()),
        pa.field("items_version", pa.int64()),
        pa.field("parameters", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("library_version", pa.string()),
    ]
)
"""Columns of the events table; ``parameters`` and ``summary`` are JSON objects."""

# Pinned versions must stay readable for years, so history is kept that long.
_TABLE_CONFIGURATION = {
    "delta.logRetentionDuration": "interval 36500 days",
    "delta.deletedFileRetentionDuration": "interval 36500 days",
}

_ITEMS = "catalog/items"
_EVENTS = "catalog/events"


class Catalog:
    """Read and append the items and events tables of one lake.

    Args:
        location: The lake root.
    """

    def __init__(self, location: Location) -> None:
        self._items_uri = delta_table_uri(location, _ITEMS)
        self._events_uri = delta_table_uri(location, _EVENTS)
        self._options = delta_storage_options(location)

    def create(self) -> None:
        """Create both tables, empty; existing tables are left as they are."""
        for uri, schema in ((self._items_uri, ITEM_SCHEMA), (self._events_uri, EVENT_SCHEMA)):
            try:
                table = DeltaTable.create(
                    uri,
                    schema,
                    mode="ignore",
                    configuration=_TABLE_CONFIGURATION,
                    storage_options=self._options or None,
                )
            except DeltaError as error:
                raise CatalogError(f"failed to create catalog table at {uri!r}: {error}") from error
            del table

    def _open(self, uri: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(uri, version=version, storage_options=self._options or None)
        except TableNotFoundError as error:
            if version is not None:
                # A purged history leaves no log file for old versions, which
                # delta-rs reports as a missing table.
                raise VersionNotFoundError(
                    f"lake version {version!r} cannot be read: its catalog history was removed "
                    f"(by vacuum(history=True) or forget(purge_history=True)) or it never existed"
                ) from error
            raise CatalogError(
                f"catalog table {uri!r} not found; is this a brainlake lake root?"
            ) from error
        except DeltaError as error:
            if version is not None:
                raise VersionNotFoundError(
                    f"lake version {version!r} cannot be read ({error}); "
                    "it may not exist yet or may have been vacuumed"
                ) from error
            raise CatalogError(f"failed to open catalog table {uri!r}: {error}") from error

    def version(self) -> int:
        """Return the current version of the items table (the lake version)."""
        table = self._open(self._items_uri)
        try:
            return int(table.version())
        finally:
            del table

    def items(
        self,
        *,
        columns: Sequence[str] | None = None,
        filters: Sequence[Filter] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Read item rows, pushing column selection and filters into the scan.

        Args:
            columns: Columns to read; all when omitted.
            filters: Conditions combined with *and*.
            version: A past lake version; the current one when omitted.

        Returns:
            The matching rows, as a pyarrow table with :data:`ITEM_SCHEMA` types.
        """
        unknown = [name for name in (columns or []) if name not in ITEM_SCHEMA.names]
        unknown += [f[0] for f in (filters or []) if f[0] not in ITEM_SCHEMA.names]
        if unknown:
            raise CatalogError(
                f"unknown catalog column(s) {sorted(set(unknown))!r}; known columns: "
                f"{', '.join(ITEM_SCHEMA.names)}"
            )
        table = self._open(self._items_uri, version)
        try:
            return _scan(table, ITEM_SCHEMA, columns=list(columns) if columns else None, filters=filters)
        finally:
            del table

    def events(self) -> pa.Table:
        """Return every event row, oldest first."""
        table = self._open(self._events_uri)
        try:
            result = _scan(table, EVENT_SCHEMA)
        finally:
            del table
        return result.sort_by([("created_at", "ascending"), ("event_id", "ascending")])

    def append_items(self, rows: pa.Table) -> int:
        """Append item rows in one commit and return the new lake version."""
        return self._append(self._items_uri, rows, ITEM_SCHEMA)

    def append_event(self, row: dict[str, Any]) -> None:
        """Append one event row in its own commit."""
        self._append(self._events_uri, pa.Table.from_pylist([row], schema=EVENT_SCHEMA), EVENT_SCHEMA)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        """Remove the items with these ids in one commit and return the new lake version.

        The predicate names item ids only, so the commit log never records
        another column's values (such as a patient id).
        """
        if not item_ids:
            return self.version()
        predicate = f"item_id IN ({', '.join(_sql_literal(item_id) for item_id in sorted(set(item_ids)))})"
        table = self._open(self._items_uri)
        try:
            table.delete(predicate)
            return int(table.version())
        except DeltaError as error:
            raise CatalogError(f"failed to delete {len(item_ids)} items from {self._items_uri!r}: {error}") from error
        finally:
            del table

    def purge_history(self, *, dry_run: bool = False) -> list[str]:
        """Remove every past version of the items table, keeping only the current one.

        Data files that no longer belong to the current version are deleted,
        then a checkpoint is written and the log files before it are removed.
        Afterwards, reading an older version raises :class:`VersionNotFoundError`.
        The long retention set at creation is restored before returning.

        Args:
            dry_run: Only list the data files that would be deleted.

        Returns:
            The data files deleted (or, with ``dry_run``, that would be).
        """
        table = self._open(self._items_uri)
        try:
            removed = table.vacuum(retention_hours=0, dry_run=dry_run, enforce_retention_duration=False, full=True)
            if dry_run:
                return sorted(removed)
            # cleanup_metadata honours the table's log retention, so it is
            # set to zero for this call and restored afterwards.
            table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 days"})
            table.create_checkpoint()
            table.cleanup_metadata()
            table.alter.set_table_properties(
                {"delta.logRetentionDuration": _TABLE_CONFIGURATION["delta.logRetentionDuration"]}
            )
            return sorted(removed)
        except DeltaError as error:
            raise CatalogError(f"failed to remove the history of {self._items_uri!r}: {error}") from error
        finally:
            del table

    def _append(self, uri: str, rows: pa.Table, schema: pa.Schema) -> int:
        rows = rows.select(schema.names).cast(schema)
        table = self._open(uri)
        try:
            # Writing through the table object leaves it at the version this
            # commit created, even when other writers commit meanwhile.
            write_deltalake(table, rows, mode="append")
            return int(table.version())
        except DeltaError as error:
            raise CatalogError(f"failed to commit {rows.num_rows} rows to {uri!r}: {error}") from error
        finally:
            del table



def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise CatalogError(f"filter value {value!r} is not supported; use a string, a number or a boolean")


_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _where_clause(filters: Sequence[Filter]) -> str:
    conditions = []
    for column, op, value in filters:
        name = '"' + column.replace('"', '""') + '"'
        if op in _OPERATORS:
            conditions.append(f"{name} {_OPERATORS[op]} {_sql_literal(value)}")
        elif op in ("in", "not in"):
            values = ", ".join(_sql_literal(item) for item in value)
            conditions.append(f"{name} {op.upper()} ({values})")
        elif op in ("is null", "is not null"):
            conditions.append(f"{name} {op.upper()}")
        else:
            raise CatalogError(
                f"unknown filter operator {op!r} on column {column!r}; "
                "use =, !=, <, <=, >, >=, in, not in, is null or is not null"
            )
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _scan(
    table: DeltaTable,
    schema: pa.Schema,
    *,
    columns: list[str] | None = None,
    filters: Sequence[Filter] | None = None,
) -> pa.Table:
    """Read a table with column pruning and filter pushdown, through delta-rs's own query engine.

    The result is cast to ``schema``, because the engine returns view types
    (``string_view``) that some pyarrow kernels do not accept.
    """
    selected = ", ".join('"' + name.replace('"', '""') + '"' for name in columns) if columns else "*"
    query = QueryBuilder().register("catalog_table", table)
    try:
        result = pa.table(query.execute(f"SELECT {selected} FROM catalog_table{_where_clause(filters or [])}").read_all())
    finally:
        del query
    if columns and result.num_columns != len(columns):
        raise CatalogError(f"catalog scan returned columns {result.column_names!r}, expected {columns!r}")
    return result.cast(pa.schema([schema.field(name) for name in result.column_names]))
