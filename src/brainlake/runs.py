"""Run records: what was trained, on which mart of which lake version, and how it scored.

A run is stored under ``runs/<run-id>/run.json`` in the lake, its checkpoint
as an ordinary object (so identical weights are stored once), and a ``run``
event in the lake's history. The record names the mart's recipe hash and
lake version, which lead back to the exact items the model saw.
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
    from .lake import Datalake

__all__ = ["RunRecord", "list_runs", "load_run", "record_run"]

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


def record_run(
    lake: Datalake,
    *,
    model: str,
    hyperparameters: Mapping[str, Any],
    mart: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    evaluation: Mapping[str, Any],
    checkpoint: str | Path | None = None,
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

    Returns:
        The stored record.
    """
    missing = sorted({"name", "recipe_hash", "lake_version"} - set(mart))
    if missing:
        raise LakeError(f"mart description lacks {missing!r}; pass name, recipe_hash and lake_version")
    checkpoint_sha256 = None
    if checkpoint is not None:
        checkpoint_sha256, _ = lake._objects.put(Path(checkpoint).read_bytes())

    record = RunRecord(
        run_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC).isoformat(),
        model=model,
        hyperparameters=dict(hyperparameters),
        mart=dict(mart),
        history=[dict(epoch) for epoch in history],
        evaluation=dict(evaluation),
        checkpoint_sha256=checkpoint_sha256,
        versions={"brainlake": __version__, "torch": torch.__version__, "python": platform.python_version()},
    )
    location = lake.location
    location.fs.makedirs(location.path("runs", record.run_id), exist_ok=True)
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
    return RunRecord(**json.loads(lake.location.fs.cat_file(path)))


def list_runs(lake: Datalake) -> list[RunRecord]:
    """Return every run stored in ``lake``, oldest first."""
    base = lake.location.path("runs")
    fs = lake.location.fs
    if not fs.exists(base):
        return []
    records = []
    for folder in fs.ls(base, detail=False):
        run_id = folder.rstrip("/").rsplit("/", 1)[-1]
        if fs.exists(lake.location.path("runs", run_id, "run.json")):
            records.append(load_run(lake, run_id))
    return sorted(records, key=lambda record: record.created_at)
