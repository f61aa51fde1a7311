"""Patient identifiers at ingest: pseudonymised by default, and attachments stored as objects."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import brainlake as bl

PATIENT = "100360"


def _mask_bytes(index: int) -> bytes:
    return f"mask {index}".encode()


@bl.register_reader("patients-for-tests", override=True)
def read_with_patients(
    root: str | os.PathLike[str], /, **options: Any
) -> Iterator[bl.SourceRecord | bl.SourceProblem]:
    """Yield the sample's glioma slices as two patients' images, each with a small mask."""
    for index, path in enumerate(sorted((Path(root) / "Training" / "glioma").glob("*.jpg"))[:4]):
        yield bl.SourceRecord(
            source_path=path.name,
            read=path.read_bytes,
            label="glioma",
            patient_id=PATIENT if index < 2 else "200417",
            attachments={"tumor_mask": partial(_mask_bytes, index)},
        )


def _ingest(lake: bl.Datalake, source: str, **options: Any) -> bl.IngestReport:
    return lake.ingest(bl.datasets.sample_path(), source=source, reader="patients-for-tests", progress=False,
                       **options)


def test_patient_ids_are_pseudonymised(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    _ingest(lake, "a")
    _ingest(lake, "b")
    rows = lake.items(["source", "source_path", "patient_id"]).to_pylist()
    pseudonyms = {(row["source"], row["source_path"]): row["patient_id"] for row in rows}

    assert all(value.startswith("p-") for value in pseudonyms.values())
    assert PATIENT not in pseudonyms.values()
    assert len(set(pseudonyms.values())) == 2
    first_path = sorted(path for _, path in pseudonyms)[0]
    assert pseudonyms[("a", first_path)] == pseudonyms[("b", first_path)]


def test_identifier_never_reaches_the_catalog(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    _ingest(lake, "a")
    catalog_bytes = b"".join(path.read_bytes() for path in (tmp_path / "lake" / "catalog").rglob("*") if path.is_file())
    key = (tmp_path / "lake" / "secrets" / "pseudonym.key").read_bytes()
    assert PATIENT.encode() not in catalog_bytes
    assert key not in catalog_bytes
    assert len(key) == 32


def test_pseudonyms_differ_between_lakes(tmp_path: Path) -> None:
    first, second = bl.Datalake(tmp_path / "one"), bl.Datalake(tmp_path / "two")
    _ingest(first, "a")
    _ingest(second, "a")
    assert set(first.items(["patient_id"]).column("patient_id").to_pylist()).isdisjoint(
        second.items(["patient_id"]).column("patient_id").to_pylist())


def test_keep_identifiers_stores_raw_ids(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    _ingest(lake, "a", keep_identifiers=True)
    assert set(lake.items(["patient_id"]).column("patient_id").to_pylist()) == {PATIENT, "200417"}
    event = lake.history().to_pylist()[-1]
    assert json.loads(event["parameters"])["keep_identifiers"] is True


def test_attachments_are_objects_referenced_by_items(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    report = _ingest(lake, "a")
    extras = [json.loads(value) for value in lake.items(["extra"]).column("extra").to_pylist()]
    digests = [extra["tumor_mask_sha256"] for extra in extras]

    assert report.new_objects == 8
    assert lake.read_object(digests[0]) == b"mask 0"
    verified = lake.verify()
    assert verified.ok
    assert verified.orphaned == []
    assert verified.objects_checked == 8


@pytest.mark.parametrize("option", ["label_from", "split_from"])
def test_folder_options_reach_the_event(tmp_path: Path, option: str) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(bl.datasets.sample_path() / "Training", source="s", progress=False)
    parameters = json.loads(lake.history().to_pylist()[-1]["parameters"])
    assert parameters["label_from"] == "parent"
    assert option in parameters


def test_pseudonyms_survive_reopening(tmp_path: Path) -> None:
    _ingest(bl.Datalake(tmp_path / "lake"), "a")
    reopened = bl.Datalake.open(tmp_path / "lake")
    _ingest(reopened, "b")
    rows = reopened.items(["source", "source_path", "patient_id"]).to_pylist()
    by_source = {source: {row["source_path"]: row["patient_id"] for row in rows if row["source"] == source}
                 for source in ("a", "b")}
    assert by_source["a"] == by_source["b"]
    assert PATIENT not in by_source["a"].values()


def test_read_only_open_creates_no_key(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(bl.datasets.sample_path() / "Testing", source="no-patients", progress=False)
    assert not (tmp_path / "lake" / "secrets").exists()

    reader = bl.Datalake.open(tmp_path / "lake", read_only=True)
    reader.items()
    reader.verify()
    with pytest.raises(bl.LakeError, match="read-only"):
        _ingest(reader, "a")
    assert not (tmp_path / "lake" / "secrets").exists()
