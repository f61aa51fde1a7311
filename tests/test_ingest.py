"""Ingesting image folders: what lands, what is reported, and what never changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import brainlake as bl
from brainlake.ingest import canonical_label, canonical_split, read_image_folder


def _copy_sample(sample_dir: Path, target: Path, count: int = 3) -> Path:
    """Copy a few images per class of the sample's Training split into ``target``."""
    for class_dir in sorted((sample_dir / "Training").iterdir()):
        for image in sorted(class_dir.glob("*.jpg"))[:count]:
            destination = target / "Training" / class_dir.name / image.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, destination)
    return target


def test_sample_ingest_counts(sample_lake: bl.Datalake) -> None:
    items = sample_lake.items()
    assert items.num_rows == 56
    assert len(set(items.column("sha256").to_pylist())) == 52
    assert set(items.column("label").to_pylist()) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert set(items.column("source_split").to_pylist()) == {"train", "test"}


def test_sample_duplicate_groups(sample_lake: bl.Datalake) -> None:
    groups = sample_lake.duplicates()
    assert len(groups) == 3
    assert sum(group.extra_copies for group in groups) == 4
    assert sum(group.spans_splits for group in groups) == 2
    assert not any(group.conflicting_labels for group in groups)


def test_reingest_adds_nothing(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source")
    lake = bl.Datalake(tmp_path / "lake")
    first = lake.ingest(source, source="s", progress=False)
    version = lake.version
    second = lake.ingest(source, source="s", progress=False)
    assert first.added == 12
    assert second.added == 0
    assert second.already_present == 12
    assert second.new_objects == 0
    assert lake.version == version
    assert lake.items().num_rows == 12


def test_ingest_records_one_event(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=1)
    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(source, source="s", progress=False)
    events = lake.history().to_pylist()
    assert [event["kind"] for event in events] == ["ingest"]
    event = events[0]
    assert event["event_id"] == report.event_id
    assert event["source"] == "s"
    assert event["user"]
    assert event["items_version"] == lake.version
    assert json.loads(event["summary"])["added"] == 4
    assert json.loads(event["parameters"])["label_from"] == "parent"


def test_bad_files_are_reported_and_good_files_land(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=2)
    good = next((source / "Training" / "glioma").glob("*.jpg")).read_bytes()
    (source / "Training" / "glioma" / "cut off.jpg").write_bytes(good[: len(good) // 3])
    (source / "Training" / "glioma" / "zero.jpg").write_bytes(b"")
    (source / "Training" / "glioma" / "notes.jpg").write_text("not an image")
    (source / "Training" / "glioma" / "notes.txt").write_text("a note")
    (source / "Training" / ".DS_Store").write_bytes(b"\x00")
    (source / ".ipynb_checkpoints").mkdir()
    (source / ".ipynb_checkpoints" / "x.jpg").write_bytes(good)

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(source, source="s", progress=False)

    failed = {problem.source_path: problem for problem in report.failed}
    assert set(failed) == {"Training/glioma/cut off.jpg", "Training/glioma/zero.jpg", "Training/glioma/notes.jpg"}
    assert "truncated" in failed["Training/glioma/cut off.jpg"].reason
    assert "empty" in failed["Training/glioma/zero.jpg"].reason
    assert "not an image" in failed["Training/glioma/notes.jpg"].reason
    assert not any(problem.reason.startswith("Training/") for problem in failed.values())
    skipped = {problem.source_path for problem in report.skipped}
    assert skipped == {"Training/glioma/notes.txt", "Training/.DS_Store", ".ipynb_checkpoints/"}
    assert report.added == 8
    assert lake.items().num_rows == 8
    assert ".ipynb_checkpoints" not in set(lake.items(["label"]).column("label").to_pylist())


def test_failed_ingest_leaves_existing_items(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=1)
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(source, source="s", progress=False)
    before = lake.items().sort_by("item_id")
    broken = tmp_path / "broken" / "glioma"
    broken.mkdir(parents=True)
    (broken / "bad.jpg").write_bytes(b"\xff\xd8\xff")
    report = lake.ingest(tmp_path / "broken", source="t", progress=False)
    assert report.added == 0
    assert len(report.failed) == 1
    assert lake.items().sort_by("item_id").equals(before)


def test_unicode_and_spaces_in_names(tmp_path: Path, sample_dir: Path) -> None:
    image = next((sample_dir / "Training" / "pituitary").glob("*.jpg"))
    target = tmp_path / "source" / "Hypophyse Tumor" / "schädel Ä 01.jpg"
    target.parent.mkdir(parents=True)
    shutil.copy(image, target)
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="s", progress=False)
    row = lake.items(["source_path", "label", "extra"]).to_pylist()[0]
    assert row["source_path"] == "Hypophyse Tumor/schädel Ä 01.jpg"
    assert row["label"] == "hypophyse_tumor"
    assert json.loads(row["extra"]) == {"source_label": "Hypophyse Tumor"}


def test_verify_finds_corrupt_and_missing_objects(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=2)
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(source, source="s", progress=False)
    assert lake.verify().ok

    digests = sorted(set(lake.items(["sha256"]).column("sha256").to_pylist()))
    store = lake._objects
    corrupt_path = Path(store.path(digests[0]))
    corrupt_path.write_bytes(corrupt_path.read_bytes()[:-1] + b"\x00")
    Path(store.path(digests[1])).unlink()
    store.put(b"left by an interrupted ingest")

    report = lake.verify()
    assert not report.ok
    assert [digest for _, digest in report.corrupt] == [digests[0]]
    assert [digest for _, digest in report.missing] == [digests[1]]
    assert len(report.orphaned) == 1


def test_open_requires_existing_lake(tmp_path: Path) -> None:
    with pytest.raises(bl.LakeNotFoundError, match="no lake"):
        bl.Datalake.open(tmp_path / "nowhere")


def test_lake_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(bl.LakeFormatError, match="not empty"):
        bl.Datalake(tmp_path)


def test_items_filters_and_time_travel(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=1)
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(source, source="first", progress=False)
    first_version = lake.version
    lake.ingest(source, source="second", progress=False)
    assert lake.items(["item_id"]).num_rows == 8
    assert lake.items(["item_id"], source="second").num_rows == 4
    assert lake.items(["item_id"], label=["glioma", "notumor"]).num_rows == 4
    assert lake.items(["item_id"], version=first_version).num_rows == 4


def test_unknown_column_is_named(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.CatalogError, match="tumour_grade"):
        sample_lake.items(["tumour_grade"])


def test_folder_reader_without_split_level(sample_dir: Path) -> None:
    records = [entry for entry in read_image_folder(sample_dir / "Training") if isinstance(entry, bl.SourceRecord)]
    assert len(records) == 42
    assert {record.source_split for record in records} == {None}
    assert records[0].source_path.count("/") == 1


def test_unknown_reader_lists_known(tmp_path: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    with pytest.raises(bl.UnknownReaderError, match="folder"):
        lake.ingest(tmp_path, source="s", reader="pacs")


def test_duplicate_reader_name_is_rejected() -> None:
    with pytest.raises(bl.DuplicateNameError, match="override"):
        bl.register_reader("folder")(read_image_folder)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("glioma_tumor", "glioma"), ("No Tumor", "notumor"), ("pituitary tumor", "pituitary"),
     ("Meningioma", "meningioma"), ("notumor", "notumor")],
)
def test_canonical_label_known_spellings(name: str, expected: str) -> None:
    assert canonical_label(name) == expected


@given(st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs"]), min_size=1, max_size=20))
def test_canonical_label_is_idempotent(name: str) -> None:
    once = canonical_label(name)
    assert canonical_label(once) == once
    assert once == once.lower()


def test_canonical_split_names() -> None:
    assert [canonical_split(name) for name in ("Training", "Testing", "Validation", "holdout")] == [
        "train", "test", "val", "holdout"]


def test_near_duplicates_join_reencoded_copy(tmp_path: Path, sample_dir: Path) -> None:
    from PIL import Image

    source = tmp_path / "source" / "glioma"
    source.mkdir(parents=True)
    original = sample_dir / "Training" / "glioma" / "Tr-gl_0145.jpg"
    shutil.copy(original, source / "original.jpg")
    Image.open(original).resize((300, 300)).save(source / "smaller.jpg", quality=70)
    shutil.copy(sample_dir / "Training" / "pituitary" / "Tr-pi_0548.jpg", source / "other.jpg")
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="s", progress=False)

    assert lake.duplicates() == []
    groups = lake.duplicates(near=True)
    assert len(groups) == 1
    assert groups[0].source_paths == ("glioma/original.jpg", "glioma/smaller.jpg")
    assert not groups[0].exact


def test_near_duplicates_include_exact_groups(sample_lake: bl.Datalake) -> None:
    exact = sample_lake.duplicates()
    near = sample_lake.duplicates(near=True, max_distance=0)
    exact_members = {frozenset(group.item_ids) for group in exact}
    near_members = [frozenset(group.item_ids) for group in near]
    assert all(any(members <= group for group in near_members) for members in exact_members)


def test_near_duplicates_reject_bad_distance(sample_lake: bl.Datalake) -> None:
    with pytest.raises(ValueError, match="max_distance"):
        sample_lake.duplicates(near=True, max_distance=65)


# Bad and unusual inputs, each written by the test -------------------------------


def _png_declaring(width: int, height: int) -> bytes:
    """Return a small PNG whose header declares ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


def test_unusual_images_land_with_metadata(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "source" / "glioma"
    folder.mkdir(parents=True)
    palette = Image.new("P", (40, 30))
    palette.putpalette([value for index in range(256) for value in (index, index, index)])
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    deep = np.tile(np.arange(0, 64000, 1000, dtype=np.uint16), (32, 1))
    Image.fromarray(deep).save(folder / "deep.png")
    rotated = Image.new("L", (60, 20), color=200)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rotated.jpg", exif=exif)

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(tmp_path / "source", source="s", progress=False)
    rows = {row["source_path"]: row for row in lake.items().to_pylist()}

    assert report.failed == []
    assert rows["glioma/palette.png"]["mode"] == "P"
    assert rows["glioma/deep.png"]["mode"].startswith("I;16")
    assert rows["glioma/deep.png"]["bit_depth"] == 16
    assert (rows["glioma/rotated.jpg"]["width"], rows["glioma/rotated.jpg"]["height"]) == (20, 60)
    assert json.loads(rows["glioma/rotated.jpg"]["extra"]) == {"exif_orientation": 6}
    stored = lake.read_object(rows["glioma/deep.png"]["sha256"])
    assert stored == (folder / "deep.png").read_bytes()


def test_oversized_image_is_rejected_under_cap(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "source" / "glioma"
    folder.mkdir(parents=True)
    (folder / "huge.png").write_bytes(_png_declaring(20000, 20000))
    Image.new("L", (16, 16)).save(folder / "small.png")
    limit_before = Image.MAX_IMAGE_PIXELS

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(tmp_path / "source", source="s", progress=False)

    assert [problem.source_path for problem in report.failed] == ["glioma/huge.png"]
    assert "exceeds the limit" in report.failed[0].reason
    assert report.added == 1
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_empty_class_and_missing_split_are_reported(tmp_path: Path, sample_dir: Path) -> None:
    source = tmp_path / "source"
    for split, classes in (("Training", ["glioma", "pituitary"]), ("Testing", ["glioma"])):
        for name in classes:
            (source / split / name).mkdir(parents=True)
            image = next((sample_dir / "Training" / name).glob("*.jpg"))
            shutil.copy(image, source / split / name / image.name)
    (source / "Testing" / "meningioma").mkdir()

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(source, source="s", split_from="grandparent", progress=False)

    assert "Testing/meningioma/" in {problem.source_path for problem in report.skipped}
    assert len(report.warnings) == 1
    assert "'test'" in report.warnings[0]
    assert "pituitary" in report.warnings[0]
    assert set(lake.items(["label"]).column("label").to_pylist()) == {"glioma", "pituitary"}


def test_labels_from_csv_mapping(tmp_path: Path, sample_dir: Path) -> None:
    source = tmp_path / "flat"
    source.mkdir()
    images = sorted((sample_dir / "Training" / "glioma").glob("*.jpg"))[:3]
    for image in images:
        shutil.copy(image, source / image.name)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,label\n"
        f"{images[0].name},Glioma Tumor\n"
        f"{images[1].name},no tumor\n"
        "missing.jpg,glioma\n"
    )

    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(source, source="s", labels=labels, progress=False)
    rows = {row["source_path"]: row for row in lake.items(["source_path", "label", "extra"]).to_pylist()}

    assert rows[images[0].name]["label"] == "glioma"
    assert json.loads(rows[images[0].name]["extra"]) == {"source_label": "Glioma Tumor"}
    assert rows[images[1].name]["label"] == "notumor"
    failed = {problem.source_path: problem.reason for problem in report.failed}
    skipped = {problem.source_path: problem.reason for problem in report.skipped}
    assert "no label" in failed[images[2].name]
    assert "not found" in skipped["missing.jpg"]
    assert report.added == 2
    assert report.seen == 3


def test_labels_mapping_overrides_folders(tmp_path: Path, sample_dir: Path) -> None:
    source = _copy_sample(sample_dir, tmp_path / "source", count=1)
    mapping = {path.relative_to(source).as_posix(): "pituitary" for path in source.rglob("*.jpg")}
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(source, source="s", labels=mapping, progress=False)
    assert set(lake.items(["label"]).column("label").to_pylist()) == {"pituitary"}


def test_label_csv_without_header_is_rejected(tmp_path: Path, sample_dir: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("a.jpg,glioma\n")
    lake = bl.Datalake(tmp_path / "lake")
    with pytest.raises(bl.IngestError, match="'path' and 'label'"):
        lake.ingest(sample_dir, source="s", labels=labels, progress=False)


def test_label_csv_path_forms_match(tmp_path: Path, sample_dir: Path) -> None:
    source = tmp_path / "flat"
    source.mkdir()
    first, second = sorted((sample_dir / "Training" / "glioma").glob("*.jpg"))[:2]
    shutil.copy(first, source / first.name)
    shutil.copy(second, source / second.name)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n./{first.name},glioma\n{source / second.name},pituitary\n")
    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(source, source="s", labels=labels, progress=False)
    assert report.failed == []
    assert report.skipped == []
    assert sorted(lake.items(["label"]).column("label").to_pylist()) == ["glioma", "pituitary"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [("a.jpg,glioma\na.jpg,notumor\n", "labelled both 'glioma' and 'notumor'"),
     ("a.jpg,\n", "label of 'a.jpg' is empty")],
)
def test_label_csv_conflicts_are_rejected(tmp_path: Path, rows: str, message: str) -> None:
    (tmp_path / "flat").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + rows)
    lake = bl.Datalake(tmp_path / "lake")
    with pytest.raises(bl.IngestError, match=message):
        lake.ingest(tmp_path / "flat", source="s", labels=labels, progress=False)


def test_folder_reader_points_zip_to_zip_reader(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.txt", "x")
    lake = bl.Datalake(tmp_path / "lake")
    with pytest.raises(bl.IngestError, match="reader='zip'"):
        lake.ingest(archive, source="s", progress=False)


def test_invalid_query_raises_query_error(sample_lake: bl.Datalake) -> None:
    with pytest.raises(bl.QueryError, match="max_distance"):
        sample_lake.duplicates(near=True, max_distance=-1)
    with pytest.raises(bl.QueryError, match="isnull"):
        sample_lake.items(patient_id=None)
