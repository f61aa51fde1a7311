"""The zip reader: records, labels and splits, nested archives, hostile members, and ingest into a lake."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import brainlake as bl
from brainlake.ingest import read_image_folder

# Importing the module registers the "zip" reader.
from brainlake.ingest.archive import DEFAULT_MAX_MEMBER_BYTES, MAX_NESTING_DEPTH, read_zip_archive

from entries import split_entries

Members = Iterable[tuple[str | zipfile.ZipInfo, bytes]]


def _sample_members(sample_dir: Path, splits: Iterable[str] = ("Training", "Testing")) -> list[tuple[str, bytes]]:
    """Return (path inside the sample, bytes) for every image of the given split folders, sorted."""
    members = []
    for split in splits:
        for image in sorted((sample_dir / split).rglob("*.jpg")):
            members.append((image.relative_to(sample_dir).as_posix(), image.read_bytes()))
    return members


def _zip_bytes(members: Members, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _write_zip(path: Path, members: Members, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.write_bytes(_zip_bytes(members, compression))
    return path


def _summary(record: bl.SourceRecord) -> tuple[str, str | None, str | None, dict[str, Any], bytes]:
    return record.source_path, record.label, record.source_split, record.extra, record.read()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the encrypted flag of member ``name`` in both its local and its central directory header."""
    patched = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    patched[info.header_offset + 6] |= 0x1
    central = data.index(b"PK\x01\x02")
    encoded = name.encode()
    while True:
        name_length = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + name_length] == encoded:
            patched[central + 8] |= 0x1
            return bytes(patched)
        central = data.index(b"PK\x01\x02", central + 46)


def test_zip_reader_is_registered() -> None:
    assert "zip" in bl.list_readers()


def test_zip_matches_folder_reader(tmp_path: Path, sample_dir: Path) -> None:
    archive = _write_zip(tmp_path / "sample.zip", _sample_members(sample_dir))
    options: dict[str, Any] = {"label_from": "parent", "split_from": "grandparent"}

    from_zip, zip_problems = split_entries(read_zip_archive(archive, **options))
    from_folder, folder_problems = split_entries(read_image_folder(sample_dir, **options))

    assert len(from_zip) == len(from_folder)
    assert [_summary(record) for record in from_zip] == [_summary(record) for record in from_folder]
    assert zip_problems == folder_problems == []


def test_zip_levels_and_defaults(tmp_path: Path, sample_dir: Path) -> None:
    archive = _write_zip(tmp_path / "sample.zip", _sample_members(sample_dir, ["Training"]))

    default, _ = split_entries(read_zip_archive(archive))
    by_grandparent, _ = split_entries(read_zip_archive(archive, label_from="grandparent", split_from=None))
    unlabelled, _ = split_entries(read_zip_archive(archive, label_from=None))

    assert {record.label for record in default} == {"glioma", "meningioma", "notumor", "pituitary"}
    assert {record.source_split for record in default} == {None}
    assert {record.label for record in by_grandparent} == {"training"}
    assert {record.label for record in unlabelled} == {None}


def test_nested_zips_prefix_paths(tmp_path: Path, sample_dir: Path) -> None:
    training = _sample_members(sample_dir, ["Training"])
    testing = _sample_members(sample_dir, ["Testing"])
    # The flat inner archive sits under a split folder of the outer one, which must not count as a level.
    flat = [(name.split("/", 1)[1], data) for name, data in testing]
    outer = _write_zip(
        tmp_path / "outer.zip",
        [("inner.zip", _zip_bytes(training)), ("Testing/flat.zip", _zip_bytes(flat, zipfile.ZIP_STORED))],
    )

    records, problems = split_entries(read_zip_archive(outer, label_from="parent", split_from="grandparent"))
    by_path = {record.source_path: record for record in records}

    assert problems == []
    assert len(records) == len(training) + len(testing)
    for name, data in training:
        record = by_path[f"inner.zip/{name}"]
        assert record.label == name.split("/")[1]
        assert record.source_split == "train"
        assert record.read() == data
    for name, data in flat:
        record = by_path[f"Testing/flat.zip/{name}"]
        assert record.label == name.split("/")[0]
        assert record.source_split is None
        assert record.read() == data


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH, MAX_NESTING_DEPTH + 1])
def test_nesting_depth_limit(tmp_path: Path, sample_dir: Path, levels: int) -> None:
    name, image = _sample_members(sample_dir, ["Training"])[0]
    data = _zip_bytes([(name, image)])
    for level in range(levels):
        data = _zip_bytes([(f"level{level}.zip", data)])
    archive = tmp_path / "deep.zip"
    archive.write_bytes(data)

    records, problems = split_entries(read_zip_archive(archive))

    if levels <= MAX_NESTING_DEPTH:
        assert [record.read() for record in records] == [image]
        assert problems == []
    else:
        assert records == []
        assert len(problems) == 1
        assert problems[0].source_path.count(".zip") == MAX_NESTING_DEPTH + 1
        assert "levels" in problems[0].reason


def test_unsafe_members_reported_never_read(
    tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _sample_members(sample_dir, ["Training"])[:3]
    image = good[0][1]
    unsafe = {
        "../evil.jpg": "'..'",
        "Training/../../up.jpg": "'..'",
        "/abs.jpg": "absolute",
        "C:/drive.jpg": "drive letter",
        "C:relative.jpg": "drive letter",
        "..\\backslash.jpg": "backslash",
        "Training\\glioma\\windows.jpg": "backslash",
    }
    link = "Training/glioma/link.jpg"
    members: list[tuple[str | zipfile.ZipInfo, bytes]] = [(zipfile.ZipInfo(name), image) for name in unsafe]
    members += [(_symlink(link), b"Tr-gl_0145.jpg"), *good]
    archive = _write_zip(tmp_path / "hostile.zip", members)

    opened: list[str] = []
    original_open = zipfile.ZipFile.open

    def recording_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    records, problems = split_entries(read_zip_archive(archive))
    contents = [record.read() for record in records]

    reasons = {problem.source_path: problem.reason for problem in problems}
    assert set(reasons) == {*unsafe, link}
    for name, expected in unsafe.items():
        assert expected in reasons[name]
    assert "symbolic link" in reasons[link]
    assert all(problem.hint for problem in problems)
    assert [record.source_path for record in records] == [name for name, _ in good]
    assert contents == [data for _, data in good]
    assert set(opened) == {name for name, _ in good}


def test_unsafe_members_logged_once(tmp_path: Path, sample_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = _sample_members(sample_dir, ["Training"])[0][1]
    members = [(zipfile.ZipInfo(f"../evil{index}.jpg"), image) for index in range(5)]
    archive = _write_zip(tmp_path / "hostile.zip", members)

    with caplog.at_level("WARNING", logger="brainlake.ingest.archive"):
        list(read_zip_archive(archive))

    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "5 member(s)" in warnings[0]


def test_hidden_and_other_entries_reported(tmp_path: Path, sample_dir: Path) -> None:
    good = _sample_members(sample_dir, ["Training"])[:2]
    image = good[0][1]
    members = [
        ("__MACOSX/Training/glioma/._a.jpg", b"\x00\x05\x16\x07"),
        ("__MACOSX/._inner.zip", b"\x00\x05\x16\x07"),
        ("Training/glioma/.DS_Store", b"\x00"),
        ("Training/.cache/", b""),
        ("Training/.cache/copy.jpg", image),
        ("Thumbs.db", b"\x00"),
        ("Training/notes.txt", b"a note"),
        ("Training/scan.dcm", b"DICM"),
        ("Training/glioma/", b""),
        *good,
    ]
    archive = _write_zip(tmp_path / "mixed.zip", members)

    records, problems = split_entries(read_zip_archive(archive))
    reasons = {problem.source_path: problem.reason for problem in problems}

    assert [record.source_path for record in records] == [name for name, _ in good]
    assert set(reasons) == {
        "__MACOSX/", "Training/glioma/.DS_Store", "Training/.cache/", "Thumbs.db",
        "Training/notes.txt", "Training/scan.dcm",
    }
    assert reasons["__MACOSX/"] == "hidden or system folder skipped"
    assert reasons["Training/.cache/"] == "hidden or system folder skipped"
    assert reasons["Thumbs.db"] == "hidden or system file skipped"
    assert "'.dcm'" in reasons["Training/scan.dcm"]


def test_large_members_reported(tmp_path: Path, sample_dir: Path) -> None:
    members = _sample_members(sample_dir, ["Training"])[:8]
    limit = sorted(len(data) for _, data in members)[len(members) // 2]
    nested = _zip_bytes(members[:1], zipfile.ZIP_STORED)
    archive = _write_zip(tmp_path / "sizes.zip", [*members, ("nested.zip", nested)])

    records, problems = split_entries(read_zip_archive(archive, max_member_bytes=limit))

    too_large = {name for name, data in members if len(data) > limit}
    assert too_large
    assert {record.source_path for record in records} == {name for name, data in members if len(data) <= limit}
    assert {problem.source_path for problem in problems} == too_large | {"nested.zip"}
    assert all("max_member_bytes" in problem.reason for problem in problems)


def test_encrypted_member_reported(tmp_path: Path, sample_dir: Path) -> None:
    members = _sample_members(sample_dir, ["Training"])[:2]
    locked_name = members[0][0]
    archive = tmp_path / "locked.zip"
    archive.write_bytes(_mark_encrypted(_zip_bytes(members), locked_name))

    records, problems = split_entries(read_zip_archive(archive))

    assert [record.source_path for record in records] == [members[1][0]]
    assert [problem.source_path for problem in problems] == [locked_name]
    assert "encrypted" in problems[0].reason


def test_corrupt_member_read_fails(tmp_path: Path, sample_dir: Path) -> None:
    name, data = _sample_members(sample_dir, ["Training"])[0]
    stored = bytearray(_zip_bytes([(name, data)], zipfile.ZIP_STORED))
    middle = stored.index(data) + len(data) // 2
    stored[middle] ^= 0xFF
    archive = tmp_path / "corrupt.zip"
    archive.write_bytes(bytes(stored))

    records, _ = split_entries(read_zip_archive(archive))

    assert len(records) == 1
    with pytest.raises(bl.StorageError, match="CRC"):
        records[0].read()


def test_invalid_nested_zip_reported(tmp_path: Path, sample_dir: Path) -> None:
    good = _sample_members(sample_dir, ["Training"])[:1]
    archive = _write_zip(tmp_path / "outer.zip", [("broken.zip", b"this is not a zip archive"), *good])

    records, problems = split_entries(read_zip_archive(archive))

    assert [record.source_path for record in records] == [good[0][0]]
    assert [problem.source_path for problem in problems] == ["broken.zip"]
    assert "nested archive cannot be read" in problems[0].reason


def test_archive_argument_errors(tmp_path: Path, sample_dir: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    archive = _write_zip(tmp_path / "ok.zip", _sample_members(sample_dir, ["Training"])[:1])

    with pytest.raises(bl.IngestError, match="missing.zip' does not exist"):
        read_zip_archive(tmp_path / "missing.zip")
    with pytest.raises(bl.IngestError, match="is not a file"):
        read_zip_archive(tmp_path)
    with pytest.raises(bl.IngestError, match="notes.txt' is not a zip archive"):
        read_zip_archive(text)
    with pytest.raises(bl.IngestError, match="label_from must be"):
        read_zip_archive(archive, label_from="folder")
    with pytest.raises(bl.IngestError, match="max_member_bytes must be a positive"):
        read_zip_archive(archive, max_member_bytes=0)
    with pytest.raises(bl.IngestError, match="max_member_bytes must be a positive"):
        read_zip_archive(archive, max_member_bytes=True)
    with pytest.raises(bl.IngestError, match="does not accept option"):
        read_zip_archive(archive, recursive=True)


def test_zip_lands_in_lake(tmp_path: Path, sample_dir: Path) -> None:
    good = _sample_members(sample_dir)
    image = good[0][1]
    members: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        ("inner.zip", _zip_bytes(good[:4])),
        (zipfile.ZipInfo("../evil.jpg"), image),
        (_symlink("Training/glioma/link.jpg"), b"Tr-gl_0145.jpg"),
        ("__MACOSX/Training/._x.jpg", b"\x00"),
        ("Training/.DS_Store", b"\x00"),
        *good,
    ]
    archive = _write_zip(tmp_path / "download.zip", members)
    lake = bl.Datalake(tmp_path / "lake")

    report = lake.ingest(archive, source="zip-sample", reader="zip", split_from="grandparent", workers=4,
                         progress=False)
    again = lake.ingest(archive, source="zip-sample", reader="zip", split_from="grandparent", progress=False)

    expected = {name for name, _ in good} | {f"inner.zip/{name}" for name, _ in good[:4]}
    rows = lake.items(["source_path", "label", "source_split", "sha256"]).to_pylist()
    splits = {"Training": "train", "Testing": "test"}
    assert report.failed == []
    assert report.added == len(expected)
    assert {problem.source_path for problem in report.skipped} == {
        "../evil.jpg", "Training/glioma/link.jpg", "__MACOSX/", "Training/.DS_Store",
    }
    assert {row["source_path"] for row in rows} == expected
    assert all(row["label"] == row["source_path"].split("/")[-2] for row in rows)
    assert all(row["source_split"] == splits[row["source_path"].split("/")[-3]] for row in rows)
    by_path = {row["source_path"]: row["sha256"] for row in rows}
    assert lake.read_object(by_path[good[0][0]]) == good[0][1]
    assert again.added == 0
    assert again.already_present == len(expected)
    parameters = json.loads(lake.history().to_pylist()[0]["parameters"])
    assert parameters["split_from"] == "grandparent"
    assert parameters["max_member_bytes"] == DEFAULT_MAX_MEMBER_BYTES
