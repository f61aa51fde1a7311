"""The DICOM decoder and reader: modality transform, rejected files, metadata, privacy, and ingest into a lake.

The files come from pydicom's own package data, read with ``download=False``
so that a test never fetches anything. A test whose file is not shipped is
skipped. Variants (another rescale, MONOCHROME1, two frames, identifiers) are
written to ``tmp_path`` from those files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.pixels.processing import apply_modality_lut  # noqa: E402

import brainlake as bl  # noqa: E402
from brainlake.imaging import inspect_image, to_uint8_array  # noqa: E402

# Importing the module registers the "DICOM" decoder and the "dicom" reader.
from brainlake.ingest.dicom import decode_dicom_image, is_dicom, read_dicom_folder  # noqa: E402

from entries import split_entries  # noqa: E402

IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19700321",
    "PatientAddress": "12 Elm Street, Springfield",
    "OtherPatientNames": "Roe^Janet",
    "ReferringPhysicianName": "House^Gregory",
    "InstitutionName": "Princeton Plainsboro Hospital",
    "InstitutionAddress": "1 Hospital Road",
}


def _shipped(name: str) -> Path:
    """Return the path of a test file that the installed pydicom ships, or skip."""
    path = get_testdata_file(name, download=False)
    if not isinstance(path, str):
        pytest.skip(f"pydicom does not ship {name!r} in its package data")
    return Path(path)


def _read(name: str) -> Dataset:
    return pydicom.dcmread(_shipped(name))


def _write(dataset: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path)
    return path


def _mr_slice(rotation: int, patient_id: str, instance: int) -> Dataset:
    """Return MR_small with its pixels rotated (so each copy is a different image) and new ids."""
    dataset = _read("MR_small.dcm")
    pixels = np.ascontiguousarray(np.rot90(dataset.pixel_array, rotation))
    dataset.PixelData = pixels.astype("<i2").tobytes()
    dataset.PatientID = patient_id
    dataset.InstanceNumber = instance
    dataset.SOPInstanceUID = pydicom.uid.generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return dataset


# Sniffing ----------------------------------------------------------------------


def test_sniff_accepts_dicm_marker() -> None:
    data = _shipped("MR_small.dcm").read_bytes()
    assert is_dicom(data)
    assert is_dicom(data[:132])


def test_sniff_rejects_other_bytes(sample_dir: Path) -> None:
    jpeg = next(sample_dir.rglob("*.jpg")).read_bytes()
    assert not is_dicom(jpeg)
    assert not is_dicom(b"")
    assert not is_dicom(b"\0" * 131)
    assert not is_dicom(b"DICM" + b"\0" * 200)
    assert not is_dicom(b"\0" * 127 + b"DICM")


# Decoding ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm"])
def test_decode_matches_pydicom_modality_lut(name: str) -> None:
    dataset = _read(name)
    expected = apply_modality_lut(dataset.pixel_array, dataset)

    decoded = decode_dicom_image(_shipped(name).read_bytes())

    assert decoded.ndim == 2
    assert decoded.shape == (dataset.Rows, dataset.Columns)
    assert decoded.dtype.kind == "i"
    np.testing.assert_array_equal(decoded, expected)


def test_decode_ct_rescale_gives_hounsfield_units() -> None:
    dataset = _read("CT_small.dcm")
    assert float(dataset.RescaleIntercept) == -1024.0
    decoded = decode_dicom_image(_shipped("CT_small.dcm").read_bytes())
    np.testing.assert_array_equal(decoded, dataset.pixel_array.astype(np.int64) - 1024)


def test_decode_integral_rescale_keeps_integers(tmp_path: Path) -> None:
    original = decode_dicom_image(_shipped("MR_small.dcm").read_bytes())
    dataset = _read("MR_small.dcm")
    dataset.RescaleSlope = 2
    dataset.RescaleIntercept = -100
    path = _write(dataset, tmp_path / "rescaled.dcm")

    decoded = decode_dicom_image(path.read_bytes())

    assert decoded.dtype.kind == "i"
    np.testing.assert_array_equal(decoded, original.astype(np.int64) * 2 - 100)
    written = pydicom.dcmread(path)
    np.testing.assert_array_equal(decoded, apply_modality_lut(written.pixel_array, written))


def test_decode_fractional_rescale_gives_float32(tmp_path: Path) -> None:
    original = decode_dicom_image(_shipped("MR_small.dcm").read_bytes())
    dataset = _read("MR_small.dcm")
    dataset.RescaleSlope = "0.5"
    dataset.RescaleIntercept = "10.25"
    path = _write(dataset, tmp_path / "fractional.dcm")

    decoded = decode_dicom_image(path.read_bytes())

    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, original * 0.5 + 10.25)


def test_decode_inverts_monochrome1(tmp_path: Path) -> None:
    original = decode_dicom_image(_shipped("MR_small.dcm").read_bytes())
    dataset = _read("MR_small.dcm")
    assert dataset.BitsStored == 16
    assert dataset.PixelRepresentation == 1
    dataset.PhotometricInterpretation = "MONOCHROME1"
    path = _write(dataset, tmp_path / "monochrome1.dcm")

    decoded = decode_dicom_image(path.read_bytes())

    # Inverted within the signed 16-bit stored range: v -> (-32768 + 32767) - v.
    assert decoded.dtype == original.dtype
    np.testing.assert_array_equal(decoded, -1 - original.astype(np.int64))
    assert np.argmax(decoded) == np.argmin(original)


def test_decode_inverts_monochrome1_with_rescale(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = dataset.pixel_array.astype("<u2").tobytes()
    dataset.RescaleSlope = 1
    dataset.RescaleIntercept = -1024
    grayscale = decode_dicom_image(_write(dataset, tmp_path / "monochrome2.dcm").read_bytes())
    dataset.PhotometricInterpretation = "MONOCHROME1"
    inverted = decode_dicom_image(_write(dataset, tmp_path / "monochrome1.dcm").read_bytes())

    # Unsigned 12 bits rescaled by -1024 span -1024..3071, so v -> 2047 - v.
    assert inverted.dtype == np.int16
    np.testing.assert_array_equal(inverted, 2047 - grayscale.astype(np.int64))


def test_decode_big_endian_gives_native_array() -> None:
    little = decode_dicom_image(_shipped("MR_small.dcm").read_bytes())
    big = decode_dicom_image(_shipped("MR_small_bigendian.dcm").read_bytes())
    assert big.dtype == np.dtype(np.int16)
    assert big.dtype.isnative
    np.testing.assert_array_equal(big, little)


def test_decode_rejects_shipped_multi_frame_file() -> None:
    data = _shipped("rtdose.dcm").read_bytes()
    with pytest.raises(ValueError, match=r"contains 15 frames .*only single-frame grayscale slices are supported"):
        decode_dicom_image(data)


def test_decode_rejects_built_multi_frame_file(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    dataset.PixelData = dataset.PixelData * 2
    dataset.NumberOfFrames = 2
    data = _write(dataset, tmp_path / "two-frames.dcm").read_bytes()

    with pytest.raises(ValueError, match=r"contains 2 frames .*split it into one file per frame"):
        decode_dicom_image(data)
    with pytest.raises(bl.ImageDecodeError, match=r"^two-frames\.dcm: .*contains 2 frames"):
        inspect_image(data, name="two-frames.dcm")


def test_decode_rejects_colour() -> None:
    data = _shipped("SC_rgb_small_odd.dcm").read_bytes()
    with pytest.raises(ValueError, match=r"found PhotometricInterpretation 'RGB' with SamplesPerPixel 3"):
        decode_dicom_image(data)


def test_decode_rejects_missing_pixel_data(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    del dataset.PixelData
    data = _write(dataset, tmp_path / "no-pixels.dcm").read_bytes()
    with pytest.raises(ValueError, match=r"no Pixel Data element \(7FE0,0010\)"):
        decode_dicom_image(data)


def test_decode_truncated_header_raises_value_error() -> None:
    # Cut inside the file meta header, where pydicom raises its own exception type.
    data = _shipped("MR_small.dcm").read_bytes()[:142]
    with pytest.raises(ValueError, match="pydicom failed to decode the file"):
        decode_dicom_image(data)
    with pytest.raises(bl.ImageDecodeError, match=r"^cut\.dcm: not a readable DICOM image"):
        inspect_image(data, name="cut.dcm")


def test_decode_compressed_without_plugin_raises_decode_error() -> None:
    plugins = ("pylibjpeg", "gdcm", "jpeg_ls")
    if any(importlib.util.find_spec(plugin) for plugin in plugins):
        pytest.skip("a JPEG-LS plugin for pydicom is installed, so the file decodes")
    data = _shipped("MR_small_jpeg_ls_lossless.dcm").read_bytes()
    with pytest.raises(bl.ImageDecodeError, match=r"^jls\.dcm: .*Unable to decompress 'JPEG-LS"):
        inspect_image(data, name="jls.dcm")


def test_missing_pydicom_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = _shipped("MR_small.dcm").read_bytes()
    # A None entry in sys.modules makes "import pydicom" raise ImportError.
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(bl.MissingDependencyError, match=r"scan\.dcm: .*pip install 'brainlake\[dicom\]'"):
        inspect_image(data, name="scan.dcm")
    with pytest.raises(bl.MissingDependencyError, match=r"pip install 'brainlake\[dicom\]'"):
        list(read_dicom_folder(tmp_path))


def test_imaging_reports_dicom_format_and_size() -> None:
    info = inspect_image(_shipped("MR_small.dcm").read_bytes(), name="MR_small.dcm")
    assert info.format == "DICOM"
    assert (info.width, info.height) == (64, 64)
    assert info.bit_depth == 16
    array = to_uint8_array(_shipped("MR_small.dcm").read_bytes(), size=32)
    assert array.dtype == np.uint8
    assert array.shape == (1, 32, 32)


# Reading a folder --------------------------------------------------------------


def test_reader_yields_metadata(tmp_path: Path) -> None:
    source = _read("MR_small.dcm")
    path = _write(_read("MR_small.dcm"), tmp_path / "glioma" / "slice.dcm")

    records, problems = split_entries(read_dicom_folder(tmp_path))

    assert problems == []
    assert len(records) == 1
    record = records[0]
    assert record.source_path == "glioma/slice.dcm"
    assert record.label == "glioma"
    assert record.source_split is None
    assert record.patient_id == source.PatientID == "4MR1"
    assert record.modality == "MR"
    assert record.extra["StudyInstanceUID"] == source.StudyInstanceUID
    assert record.extra["SeriesInstanceUID"] == source.SeriesInstanceUID
    assert record.extra["SOPInstanceUID"] == source.SOPInstanceUID
    assert record.extra["InstanceNumber"] == int(source.InstanceNumber)
    assert record.extra["PhotometricInterpretation"] == "MONOCHROME2"
    assert record.read() != path.read_bytes()
    kept, _ = split_entries(read_dicom_folder(tmp_path, keep_identifiers=True))
    assert kept[0].read() == path.read_bytes()


def test_reader_stores_no_direct_identifiers(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    for keyword, value in IDENTIFIERS.items():
        setattr(dataset, keyword, value)
    dataset.SeriesDescription = "T1 axial"
    dataset.BodyPartExamined = "HEAD"
    _write(dataset, tmp_path / "glioma" / "named.dcm")

    records, _ = split_entries(read_dicom_folder(tmp_path))

    record = records[0]
    assert record.extra["SeriesDescription"] == "T1 axial"
    assert record.extra["BodyPartExamined"] == "HEAD"
    stored_text = json.dumps(
        [record.source_path, record.label, record.source_split, record.patient_id, record.modality, record.extra]
    )
    for keyword, value in IDENTIFIERS.items():
        assert keyword not in record.extra
        assert value not in stored_text
        assert value.split("^")[0] not in stored_text


def test_reader_empty_patient_id_is_none(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    dataset.PatientID = ""
    _write(dataset, tmp_path / "glioma" / "anonymous.dcm")
    records, _ = split_entries(read_dicom_folder(tmp_path))
    assert records[0].patient_id is None


def test_reader_label_and_split_from_folders(tmp_path: Path) -> None:
    _write(_read("MR_small.dcm"), tmp_path / "Training" / "glioma_tumor" / "a.dcm")

    records, _ = split_entries(read_dicom_folder(tmp_path, label_from="parent", split_from="grandparent"))
    assert records[0].label == "glioma"
    assert records[0].source_split == "train"
    assert records[0].extra["source_label"] == "glioma_tumor"
    assert records[0].extra["source_split"] == "Training"

    unlabelled, _ = split_entries(read_dicom_folder(tmp_path, label_from=None))
    assert unlabelled[0].label is None
    assert unlabelled[0].source_split is None


def test_reader_takes_dicom_names_and_reports_the_rest(tmp_path: Path) -> None:
    mr_bytes = _shipped("MR_small.dcm").read_bytes()
    folder = tmp_path / "glioma"
    folder.mkdir()
    (folder / "IM0001").write_bytes(mr_bytes)
    (folder / "1.2.840.113619.2.55").write_bytes(mr_bytes)
    (folder / "b.DICOM").write_bytes(mr_bytes)
    (folder / "a.dcm").write_bytes(mr_bytes)
    (folder / "README").write_text("not an image")
    (folder / "notes.txt").write_text("not an image")
    (folder / "headerless.dcm").write_bytes(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")
    (folder / "broken.dcm").write_bytes(mr_bytes[:142])
    _write(_read("rtplan.dcm"), folder / "plan.dcm")
    (folder / ".DS_Store").write_bytes(b"\0")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c.dcm").write_bytes(mr_bytes)
    (tmp_path / "empty").mkdir()

    records, problems = split_entries(read_dicom_folder(tmp_path))

    assert [record.source_path for record in records] == [
        "glioma/1.2.840.113619.2.55",
        "glioma/IM0001",
        "glioma/a.dcm",
        "glioma/b.DICOM",
    ]
    reasons = {problem.source_path: problem.reason for problem in problems}
    assert set(reasons) == {
        ".cache/",
        "empty/",
        "glioma/.DS_Store",
        "glioma/README",
        "glioma/broken.dcm",
        "glioma/headerless.dcm",
        "glioma/notes.txt",
        "glioma/plan.dcm",
    }
    assert reasons[".cache/"] == "hidden or system folder skipped"
    assert reasons["glioma/notes.txt"] == "not a DICOM file (extension '.txt')"
    assert "no 'DICM' marker at byte 128" in reasons["glioma/README"]
    assert "no 'DICM' marker at byte 128" in reasons["glioma/headerless.dcm"]
    assert reasons["glioma/broken.dcm"].startswith("failed to parse the DICOM header: ")
    assert reasons["glioma/plan.dcm"] == (
        "DICOM object without an image: no Rows or Columns (SOP class 'RT Plan Storage')"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"label_from": "uncle"}, r"label_from must be 'parent', 'grandparent' or None, got 'uncle'"),
        ({"split_from": 2}, r"split_from must be 'parent', 'grandparent' or None, got 2"),
        ({"recursive": True}, r"the dicom reader does not accept option\(s\) \['recursive'\]"),
    ],
)
def test_reader_rejects_invalid_arguments(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(bl.IngestError, match=message):
        list(read_dicom_folder(tmp_path, **options))


def test_reader_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(bl.IngestError, match=r"source folder '.*missing' does not exist or is not a folder"):
        list(read_dicom_folder(tmp_path / "missing"))


# Ingest into a lake --------------------------------------------------------------


def test_ingest_and_mart_end_to_end(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for index, label in enumerate(["glioma", "glioma", "meningioma", "meningioma"]):
        dataset = _mr_slice(rotation=index, patient_id=f"patient-{index}", instance=index + 1)
        for keyword, value in IDENTIFIERS.items():
            setattr(dataset, keyword, value)
        _write(dataset, source / label / f"slice{index}.dcm")
    (source / "glioma" / "notes.txt").write_text("not an image")
    lake = bl.Datalake(tmp_path / "lake")

    report = lake.ingest(source, source="dicom", reader="dicom", progress=False)

    assert report.ok, str(report)
    assert report.added == 4
    assert [problem.source_path for problem in report.skipped] == ["glioma/notes.txt"]
    items = lake.items().to_pylist()
    assert {item["format"] for item in items} == {"DICOM"}
    assert {(item["width"], item["height"]) for item in items} == {(64, 64)}
    assert {item["modality"] for item in items} == {"MR"}
    assert sorted(item["label"] for item in items) == ["glioma", "glioma", "meningioma", "meningioma"]
    assert all(item["patient_id"] for item in items)
    catalog_text = json.dumps(items, default=str)
    for value in IDENTIFIERS.values():
        assert value not in catalog_text

    mart = lake.mart("d").split(val_fraction=0.0, test_fraction=0.5).preprocess(size=32).build(progress=False)

    assert mart.splits == ["train", "test"]
    assert sum(sum(counts.values()) for counts in mart.counts.values()) == 4
    for split in mart.splits:
        images = mart.dataset(split).images
        assert images.dtype == np.uint8
        assert images.shape[1:] == (1, 32, 32)
        assert images.max() > images.min()


def test_stored_object_is_deidentified(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    for keyword, value in IDENTIFIERS.items():
        setattr(dataset, keyword, value)
    _write(dataset, tmp_path / "source" / "glioma" / "slice.dcm")
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="dicom", reader="dicom", progress=False)

    stored = lake.read_object(lake.items(["sha256"]).column("sha256")[0].as_py())
    for value in IDENTIFIERS.values():
        assert value.encode() not in stored
    assert dataset.PatientID.encode() not in stored
    assert decode_dicom_image(stored).shape == (int(dataset.Rows), int(dataset.Columns))


def test_keep_identifiers_stores_file_unchanged(tmp_path: Path) -> None:
    dataset = _read("MR_small.dcm")
    dataset.PatientName = "Doe^Jane"
    path = _write(dataset, tmp_path / "source" / "glioma" / "slice.dcm")
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="dicom", reader="dicom", keep_identifiers=True, progress=False)

    stored = lake.read_object(lake.items(["sha256"]).column("sha256")[0].as_py())
    assert stored == path.read_bytes()


def test_reingest_of_deidentified_files_adds_nothing(tmp_path: Path) -> None:
    _write(_read("MR_small.dcm"), tmp_path / "source" / "glioma" / "slice.dcm")
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(tmp_path / "source", source="dicom", reader="dicom", progress=False)
    again = lake.ingest(tmp_path / "source", source="dicom", reader="dicom", progress=False)
    assert again.added == 0
    assert again.already_present == 1
