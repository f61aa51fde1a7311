"""Run records: what was trained, on which mart of which lake version, and how it scored.

A run is stored under ``runs/<run-id>/run.json`` in the lake, its checkpoint
as an ordinary object (so identical weights are stored once), and a ``run``
event in the lake's history. The record names the mart's recipe hash and
lake version, which lead back to the exact items the model saw:
:func:`run_items` lists them. Report files (see
:func:`brainlake.training.write_report`) are copied to ``runs/<run-id>/report/``.
"""

from __future__ import annotations

import json
import logging
import platform
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._version import __version__
from .exceptions import LakeError

if TYPE_CHECKING:
    import pyarrow as pa

    from .lake import Datalake
    from .models import ModelCard

__all__ = ["RUN_ITEM_COLUMNS", "RunRecord", "list_runs", "load_run", "record_run", "run_items"]

RUN_ITEM_COLUMNS = ("item_id", "sha256", "split", "label", "source_path")
"""The columns of :func:`run_items`."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """One training run as stored in the lake.

    Attributes:
        run_id: A random id naming the run's folder.
        created_at: When the run was recorded (ISO 8601, UTC).
        model: The registry name of the model.
        hyperparameters: Every setting the run was trained with.
        mart: The mart's name, recipe hash and the lake version it was built from.
        history: Per-epoch metrics.
        evaluation: The final evaluation on the test split.
        checkpoint_sha256: The object holding the checkpoint, or ``None``.
        versions: Library, torch and Python versions.
        model_card: The registry's card of the model (``name``, ``description``,
            ``default_input_size``, ``reference``, ``num_parameters``), or empty
            for a model that is not registered.
        report_files: Paths of the stored report files, relative to the run's
            folder (``report/report.json``, ...); empty when none were given.
        affected: Notes of ``forget`` calls that removed items of the run's
            mart, read from ``runs/<run-id>/affected.json``; empty when none did.
    """

    run_id: str
    created_at: str
    model: str
    hyperparameters: Mapping[str, Any]
    mart: Mapping[str, Any]
    history: Sequence[Mapping[str, Any]]
    evaluation: Mapping[str, Any]
    checkpoint_sha256: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    model_card: Mapping[str, Any] = field(default_factory=dict)
    report_files: Sequence[str] = field(default_factory=list)
    affected: Sequence[Mapping[str, Any]] = field(default_factory=list)


def record_run(
    lake: Datalake,
    *,
    model: str,
    hyperparameters: Mapping[str, Any],
    mart: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    evaluation: Mapping[str, Any],
    checkpoint: str | Path | None = None,
    model_card: ModelCard | Mapping[str, Any] | None = None,
    report: str | Path | None = None,
) -> RunRecord:
    """Store a run in ``lake`` and record a ``run`` event.

    Args:
        lake: The lake the mart was built from.
        model: The model's registry name.
        hyperparameters: The training settings.
        mart: At least ``name``, ``recipe_hash`` and ``lake_version`` of the mart.
        history: Per-epoch metrics from the trainer.
        evaluation: The test evaluation as plain values.
        checkpoint: A checkpoint file to store as an object.
        model_card: The model's card. Defaults to
            :func:`brainlake.models.model_card` of ``model`` when it is registered.
        report: A folder written by :func:`brainlake.training.write_report`;
            its files are copied to ``runs/<run-id>/report/``.

    Returns:
        The stored record.
    """
    lake._require_writable("record a run")
    missing = sorted({"name", "recipe_hash", "lake_version"} - set(mart))
    if missing:
        raise LakeError(f"mart description lacks {missing!r}; pass name, recipe_hash and lake_version")
    report_paths = _report_paths(report)
    checkpoint_sha256 = None
    if checkpoint is not None:
        checkpoint_sha256, _ = lake._objects.put(Path(checkpoint).read_bytes())

    run_id = uuid.uuid4().hex
    record = RunRecord(
        run_id=run_id,
        created_at=datetime.now(UTC).isoformat(),
        model=model,
        hyperparameters=dict(hyperparameters),
        mart=dict(mart),
        history=[dict(epoch) for epoch in history],
        evaluation=dict(evaluation),
        checkpoint_sha256=checkpoint_sha256,
        versions={"brainlake": __version__, "torch": torch.__version__, "python": platform.python_version()},
        model_card=_card_values(model, model_card),
        report_files=[f"report/{path.name}" for path in report_paths],
    )
    location = lake.location
    location.fs.makedirs(location.path("runs", record.run_id), exist_ok=True)
    if report_paths:
        location.fs.makedirs(location.path("runs", run_id, "report"), exist_ok=True)
    for path in report_paths:
        location.fs.pipe_file(location.path("runs", run_id, "report", path.name), path.read_bytes())
    location.fs.pipe_file(
        location.path("runs", record.run_id, "run.json"),
        json.dumps(asdict(record), indent=2, sort_keys=True, default=str).encode(),
    )
    lake.record_event(
        "run",
        parameters={"run_id": record.run_id, "model": model, "mart": dict(mart)},
        summary={key: evaluation[key] for key in ("accuracy", "balanced_accuracy", "macro_f1") if key in evaluation},
    )
    logger.info("recorded run %s in %s", record.run_id, lake.url)
    return record


def load_run(lake: Datalake, run_id: str) -> RunRecord:
    """Read a stored run record.

    Raises:
        LakeError: If the lake contains no run with that id.
    """
    path = lake.location.path("runs", run_id, "run.json")
    if not lake.location.fs.exists(path):
        raise LakeError(f"no run {run_id!r} in lake {lake.url!r}; list runs with list_runs(lake)")
    values = json.loads(lake.location.fs.cat_file(path))
    affected_path = lake.location.path("runs", run_id, "affected.json")
    if lake.location.fs.exists(affected_path):
        values["affected"] = json.loads(lake.location.fs.cat_file(affected_path))
        logger.warning("run %s was trained on a mart with items since removed by forget (events %s)", run_id,
                       ", ".join(note.get("forget_event_id", "?") for note in values["affected"]))
    return RunRecord(**values)


def list_runs(lake: Datalake) -> list[RunRecord]:
    """Return every run stored in ``lake``, oldest first."""
    base = lake.location.path("runs")
    fs = lake.location.fs
    # Another process may have recorded runs since this lake object last listed them.
    lake.location.refresh("runs")
    if not fs.exists(base):
        return []
    records = []
    for folder in fs.ls(base, detail=False):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        if fs.exists(lake.location.path("runs", run_id, "run.json")):
            records.append(load_run(lake, run_id))
    return sorted(records, key=lambda record: record.created_at)


def run_items(lake: Datalake, run_id: str, *, split: str | None = None) -> pa.Table:
    """List the items a run trained, validated and was tested on.

    The item lists come from the run's mart (``<split>-items.csv``, in array
    order). Each item is checked against the catalog at the lake version the
    mart pinned, and that catalog version supplies ``sha256`` and ``source_path``.

    Args:
        lake: The lake holding the run.
        run_id: The run's id.
        split: Only this split (``"train"``, ``"val"`` or ``"test"``).

    Returns:
        An Arrow table with the columns :data:`RUN_ITEM_COLUMNS`: ``item_id``,
        ``sha256``, ``split``, ``label`` (the mart's class of the item) and
        ``source_path``, ordered by split and then as in the mart's arrays.

    Raises:
        LakeError: The run does not exist, or an item of its mart is missing
            from the catalog at the pinned version or has other bytes there.
        MartNotFoundError: The run's mart build is no longer in the lake.
        MartError: The mart has no split ``split``.
    """
    import pyarrow as pa

    record = load_run(lake, run_id)
    mart = lake.open_mart(str(record.mart["name"]), str(record.mart["recipe_hash"]))
    version = int(record.mart["lake_version"])
    splits = mart.splits if split is None else [split]

    rows: list[dict[str, str]] = []
    for name in splits:
        rows += [{**item, "split": name} for item in mart.items(name)]
    catalog = _catalog_rows(lake, [row["item_id"] for row in rows], version)

    for row in rows:
        stored = catalog.get(row["item_id"])
        if stored is None:
            raise LakeError(
                f"item {row['item_id']!r} of run {run_id!r} ({row['split']} split) is not in the catalog "
                f"at lake version {version}; the mart's item list and the lake disagree"
            )
        if stored["sha256"] != row["sha256"]:
            raise LakeError(
                f"item {row['item_id']!r} of run {run_id!r} has sha256 {stored['sha256']!r} in the catalog "
                f"at lake version {version} but {row['sha256']!r} in the mart's item list"
            )
        row["source_path"] = stored["source_path"]
    return pa.table({column: pa.array([row[column] for row in rows], pa.string()) for column in RUN_ITEM_COLUMNS})


def _catalog_rows(lake: Datalake, item_ids: Sequence[str], version: int) -> dict[str, dict[str, Any]]:
    if not item_ids:
        return {}
    table = lake.items(["item_id", "sha256", "source_path"], version=version, item_id=list(item_ids))
    return {row["item_id"]: row for row in table.to_pylist()}


def _card_values(model: str, card: ModelCard | Mapping[str, Any] | None) -> dict[str, Any]:
    from .models import is_model, model_card

    if card is None:
        if not is_model(model):
            return {}
        card = model_card(model)
    values = dict(card) if isinstance(card, Mapping) else asdict(card)
    if isinstance(values.get("default_input_size"), tuple):
        values["default_input_size"] = list(values["default_input_size"])
    return values


def _report_paths(report: str | Path | None) -> list[Path]:
    if report is None:
        return []
    folder = Path(report)
    if not folder.is_dir():
        raise LakeError(f"report folder {str(folder)!r} does not exist; pass the folder given to write_report")
    return sorted(path for path in folder.iterdir() if path.is_file())
