"""forget: a patient's (or items', or a source's) data leaves the lake, and what was built from it is marked."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

import brainlake as bl

WITHDRAWN = "100360"
# (sample image index, patient): patient 200417 also has an exact copy of image 0.
RECORDS = [(0, WITHDRAWN), (1, WITHDRAWN), (2, WITHDRAWN), (3, "200417"), (4, "200417"), (5, "300512"),
           (6, "300512"), (7, "300512"), (0, "200417")]


def _bytes_of(path: Path) -> bytes:
    return path.read_bytes()


def _mask(index: int) -> bytes:
    return f"mask {index}".encode()


@bl.register_reader("patients-for-forget", override=True)
def read_patients(root: str | os.PathLike[str], /, **options: Any) -> Iterator[bl.SourceRecord | bl.SourceProblem]:
    """Yield sample slices as the images of three patients, each with a mask."""
    paths = sorted((Path(root) / "Training" / "glioma").glob("*.jpg"))
    for position, (index, patient) in enumerate(RECORDS):
        yield bl.SourceRecord(
            source_path=f"{patient}/slice-{position}.jpg",
            read=partial(_bytes_of, paths[index]),
            label="glioma" if position % 2 else "meningioma",
            patient_id=patient,
            attachments={"tumor_mask": partial(_mask, position)},
        )


def object_file(root: Path, digest: str) -> Path:
    return root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest


def files_containing(root: Path, needle: bytes) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes())


def catalog_cells_containing(root: Path, value: str) -> int:
    """Count cells equal to ``value`` in every parquet file of the catalog, past versions included."""
    count = 0
    for path in (root / "catalog").rglob("*.parquet"):
        table = pq.read_table(path)
        for column in table.columns:
            count += sum(1 for cell in column.to_pylist() if cell == value)
    return count


@pytest.fixture()
def hospital(tmp_path: Path, sample_dir: Path) -> tuple[bl.Datalake, Path]:
    root = tmp_path / "lake"
    lake = bl.Datalake(root)
    lake.ingest(sample_dir, source="hospital", reader="patients-for-forget", progress=False)
    lake.ingest(sample_dir / "Testing", source="public", progress=False)
    return lake, root


def _withdrawn_rows(lake: bl.Datalake) -> list[dict[str, Any]]:
    rows = lake.items(["item_id", "sha256", "patient_id", "source_path", "extra"], source="hospital").to_pylist()
    return [row for row in rows if row["source_path"].startswith(WITHDRAWN + "/")]


def _record_run(lake: bl.Datalake, mart: bl.BuiltMart, tmp_path: Path) -> bl.RunRecord:
    checkpoint = tmp_path / "best.pt"
    torch.save({"weights": torch.ones(2)}, checkpoint)
    return bl.record_run(lake, model="fc", hyperparameters={}, history=[], evaluation={"accuracy": 0.5},
                         mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
                         checkpoint=checkpoint)


def test_forget_patient_leaves_no_trace(hospital: tuple[bl.Datalake, Path], tmp_path: Path) -> None:
    lake, root = hospital
    withdrawn = _withdrawn_rows(lake)
    pseudonym = withdrawn[0]["patient_id"]
    kept_image = withdrawn[0]["sha256"]  # patient 200417 has an identical copy
    gone_images = {row["sha256"] for row in withdrawn} - {kept_image}
    masks = {json.loads(row["extra"])["tumor_mask_sha256"] for row in withdrawn}
    mart = lake.mart("hospital").where(source="hospital").split(seed=0, test_fraction=0.3).preprocess(size=16).build(
        progress=False)
    run = _record_run(lake, mart, tmp_path)
    version_before = lake.version
    # The control: before forget the pseudonym can be found in the lake's files.
    assert files_containing(root, pseudonym.encode())
    assert catalog_cells_containing(root, pseudonym) == 3

    report = lake.forget(patient_id=WITHDRAWN, delete_marts=True, purge_history=True)

    # 1. The items and their unshared objects are gone; everything else stays.
    assert report.items_removed == 3
    assert report.objects_removed == len(gone_images) + len(masks)
    assert _withdrawn_rows(lake) == []
    assert lake.items(source="hospital").num_rows == len(RECORDS) - 3
    assert lake.items(source="public").num_rows == 14
    for digest in gone_images | masks:
        assert not object_file(root, digest).exists()
    assert object_file(root, kept_image).exists()
    verified = lake.verify()
    assert verified.ok
    assert verified.orphaned == []

    # 2. The event records who, when, how many and what was affected, never who was forgotten.
    event = lake.history().to_pylist()[-1]
    assert event["kind"] == "forget"
    assert event["user"]
    summary = json.loads(event["summary"])
    assert summary["items_removed"] == 3
    assert summary["objects_removed"] == report.objects_removed
    assert summary["affected_marts"] == [{"name": "hospital", "recipe_hash": mart.recipe_hash}]
    assert summary["affected_runs"] == [run.run_id]
    assert json.loads(event["parameters"])["by"] == "patient_id"

    # 3. Neither the identifier nor its pseudonym is left in any file of the lake.
    assert files_containing(root, WITHDRAWN.encode()) == []
    assert files_containing(root, pseudonym.encode()) == []
    assert catalog_cells_containing(root, pseudonym) == 0
    assert not mart.path.exists()

    # 4. Past versions that held the rows can no longer be read.
    with pytest.raises(bl.VersionNotFoundError):
        lake.items(version=version_before)
    assert lake.items().num_rows == len(RECORDS) - 3 + 14


def test_forget_marks_marts_and_runs(
    hospital: tuple[bl.Datalake, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lake, root = hospital
    affected = lake.mart("hospital").where(source="hospital").split(seed=0, test_fraction=0.3).preprocess(
        size=16).build(progress=False)
    untouched = lake.mart("public").where(source="public").split(seed=0, test_fraction=0.3).preprocess(
        size=16).build(progress=False)
    run = _record_run(lake, affected, tmp_path)
    other_run = _record_run(lake, untouched, tmp_path)

    report = lake.forget(patient_id=WITHDRAWN)

    assert report.affected_marts == [{"name": "hospital", "recipe_hash": affected.recipe_hash}]
    assert report.affected_runs == [run.run_id]
    with caplog.at_level(logging.WARNING, logger="brainlake"):
        reopened = lake.open_mart("hospital")
    assert reopened.affected == [{"forget_event_id": report.event_id, "items_removed": 3}]
    assert "removed from the lake by forget" in caplog.text
    assert lake.open_mart("public").affected == []
    assert [note["forget_event_id"] for note in bl.load_run(lake, run.run_id).affected] == [report.event_id]
    assert bl.load_run(lake, other_run.run_id).affected == []
    # Without purge_history the old version still contains the rows, as documented.
    assert lake.items(version=report.lake_version - 1, source="hospital").num_rows == len(RECORDS)
    lake.vacuum(history=True)
    with pytest.raises(bl.VersionNotFoundError):
        lake.items(version=report.lake_version - 1)


def test_forget_by_item_ids_and_source(hospital: tuple[bl.Datalake, Path]) -> None:
    lake, root = hospital
    public = lake.items(["item_id", "sha256"], source="public").to_pylist()
    shared = lake.items(["sha256"], source="hospital").column("sha256").to_pylist()

    by_ids = lake.forget(item_ids=[public[0]["item_id"], public[1]["item_id"]])
    assert by_ids.items_removed == 2
    assert lake.items(source="public").num_rows == 12
    assert json.loads(lake.history().to_pylist()[-1]["parameters"])["by"] == "item_ids"

    by_source = lake.forget(source="hospital")
    assert by_source.items_removed == len(RECORDS)
    assert lake.items(source="hospital").num_rows == 0
    assert all(not object_file(root, digest).exists() for digest in shared)
    assert lake.verify().ok


def test_forget_keeps_shared_objects(tmp_path: Path, sample_dir: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(sample_dir / "Training", source="first", progress=False)
    lake.ingest(sample_dir / "Training", source="second", progress=False)
    digests = set(lake.items(["sha256"], source="first").column("sha256").to_pylist())

    report = lake.forget(source="first")

    assert report.objects_removed == 0
    assert all(object_file(tmp_path / "lake", digest).exists() for digest in digests)


def test_forget_matches_kept_identifiers(tmp_path: Path, sample_dir: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(sample_dir, source="raw", reader="patients-for-forget", keep_identifiers=True, progress=False)
    assert lake.forget(patient_id=WITHDRAWN).items_removed == 3
    assert WITHDRAWN not in lake.items(["patient_id"]).column("patient_id").to_pylist()


def test_forget_without_match_changes_nothing(hospital: tuple[bl.Datalake, Path]) -> None:
    lake, _ = hospital
    version, events = lake.version, lake.history().num_rows

    report = lake.forget(patient_id="999999")

    assert report.items_removed == 0
    assert report.event_id is None
    assert lake.version == version
    assert lake.history().num_rows == events


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one"),
        ({"patient_id": "1", "source": "s"}, "exactly one"),
        ({"item_ids": []}, "empty"),
        ({"item_ids": "abc"}, "list of ids"),
        ({"patient_id": "  "}, "non-empty"),
        ({"source": ""}, "non-empty"),
    ],
)
def test_forget_rejects_bad_selectors(
    hospital: tuple[bl.Datalake, Path], arguments: dict[str, Any], message: str
) -> None:
    lake, _ = hospital
    with pytest.raises(bl.QueryError, match=message):
        lake.forget(**arguments)
    assert lake.items().num_rows == len(RECORDS) + 14


def test_forget_vacuum_and_repair_on_s3(
    s3_server: Any, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINLAKE_CACHE", str(tmp_path / "cache"))
    options = s3_server.storage_options()
    url = f"s3://{s3_server.new_bucket()}/lake"
    lake = bl.Datalake(url, storage_options=options)
    lake.ingest(sample_dir, source="hospital", reader="patients-for-forget", progress=False)
    mart = lake.mart("hospital").where(source="hospital").split(seed=0, test_fraction=0.3).preprocess(
        size=16).build(progress=False)
    version_before = lake.version

    report = lake.forget(patient_id=WITHDRAWN, purge_history=True)

    assert report.items_removed == 3
    assert report.affected_marts == [{"name": "hospital", "recipe_hash": mart.recipe_hash}]
    assert lake.open_mart("hospital").affected[0]["forget_event_id"] == report.event_id
    with pytest.raises(bl.VersionNotFoundError):
        lake.items(version=version_before)
    verified = lake.verify()
    assert verified.ok
    assert verified.orphaned == []

    # An orphan is removed by vacuum, and a deleted object is restored from a local backup.
    fs = lake.location.fs
    orphan = "ef" * 32
    fs.pipe_file(lake.location.path("objects", "sha256", "ef", "ef", orphan), b"orphan")
    assert lake.vacuum(grace_period=timedelta(0)).objects_removed == [orphan]
    backup = bl.Datalake(tmp_path / "backup")
    backup.ingest(sample_dir, source="hospital", reader="patients-for-forget", progress=False)
    digest = lake.items(["sha256"]).column("sha256")[0].as_py()
    fs.rm_file(lake.location.path("objects", "sha256", digest[:2], digest[2:4], digest))
    repaired = lake.verify(repair_from=backup)
    assert repaired.repaired == [digest]
    assert lake.verify().ok
