"""The figshare .mat decoder and reader: orientation, dtype, metadata, folds, problems, and ingest into a lake."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

h5py = pytest.importorskip("h5py")
scipy_io = pytest.importorskip("scipy.io")

import brainlake as bl  # noqa: E402
from brainlake.exceptions import ImageDecodeError, IngestError, MissingDependencyError  # noqa: E402
from brainlake.imaging import inspect_image, to_uint8_array  # noqa: E402
from brainlake.ingest import get_reader  # noqa: E402
from brainlake.ingest.figshare import decode_mat_image, is_mat_file, read_figshare_folder  # noqa: E402

from entries import split_entries  # noqa: E402

# Non-square, so a missing or doubled transpose changes the shape.
HEIGHT, WIDTH = 40, 56


def _v73_header() -> bytes:
    """Return the 128-byte text header MATLAB writes at the start of a v7.3 file's user block."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def _write_v73(path: Path, variables: dict[str, dict[str, NDArray[np.generic]] | NDArray[np.generic]]) -> Path:
    """Write ``variables`` as MATLAB does in v7.3: HDF5 after a 512-byte user block, matrices transposed.

    A dict value becomes a struct (an HDF5 group of fields), and an array becomes a dataset.
    """
    with h5py.File(path, "w", userblock_size=512) as file:
        for name, value in variables.items():
            if isinstance(value, dict):
                group = file.create_group(name)
                group.attrs["MATLAB_class"] = np.bytes_("struct")
                for field, array in value.items():
                    group.create_dataset(field, data=np.asarray(array).T)
            else:
                file.create_dataset(name, data=np.asarray(value).T)
    with path.open("r+b") as file:
        file.write(_v73_header())
    return path


def _image(seed: int) -> NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return rng.integers(-200, 1200, size=(HEIGHT, WIDTH), dtype=np.int16)


def _mask() -> NDArray[np.uint8]:
    """Return a mask whose tumor is the top-left corner block, so any transpose or flip moves it."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[2:10, 3:20] = 1
    return mask


def _cjdata(label: float, pid: str, seed: int, border: Sequence[float] = (3.0, 2.0, 19.0, 2.0, 19.0, 9.0)
            ) -> dict[str, NDArray[np.generic]]:
    """Return the cjdata fields in MATLAB's orientation, with MATLAB's dtypes."""
    return {
        "label": np.array([[label]], dtype=np.float64),
        "PID": np.array([[ord(character) for character in pid]], dtype=np.uint16),
        "image": _image(seed),
        "tumorBorder": np.array([list(border)], dtype=np.float64),
        "tumorMask": _mask(),
    }


def _write_slice(path: Path, label: float, pid: str, seed: int) -> Path:
    return _write_v73(path, {"cjdata": _cjdata(label, pid, seed)})


def _write_v5_slice(path: Path, label: float, pid: str, seed: int) -> Path:
    scipy_io.savemat(path, {"cjdata": {
        "label": float(label),
        "PID": pid,
        "image": _image(seed),
        "tumorBorder": np.array([5.0, 6.0, 7.0, 8.0]),
        "tumorMask": _mask(),
    }})
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A folder like the download: slices 1, 2, 3 and 10 as v7.3, slice 5 as v5, a cvind.mat and stray files."""
    folder = tmp_path / "figshare"
    folder.mkdir()
    _write_slice(folder / "1.mat", 1, "100360", seed=1)
    _write_slice(folder / "2.mat", 2, "100360", seed=2)
    _write_slice(folder / "10.mat", 3, "MR0042", seed=10)
    _write_slice(folder / "3.mat", 2, "112649", seed=3)
    _write_v5_slice(folder / "5.mat", 1, "MR0077", seed=5)
    # cvind covers slices 1..5 only, so slice 10 gets no fold.
    _write_v73(folder / "cvind.mat", {"cvind": np.array([[1, 1, 4, 2, 5]], dtype=np.float64)})
    _write_v73(folder / "other.mat", {"results": np.ones((2, 3))})
    (folder / "README.txt").write_text("3064 slices from 233 patients\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return folder


# The decoder ---------------------------------------------------------------------


def test_sniff_recognises_both_versions(tmp_path: Path) -> None:
    v73 = _write_slice(tmp_path / "1.mat", 1, "7", seed=0).read_bytes()
    v5 = _write_v5_slice(tmp_path / "2.mat", 1, "7", seed=0).read_bytes()
    assert is_mat_file(v73)
    assert is_mat_file(v5)


def test_sniff_rejects_other_bytes(tmp_path: Path) -> None:
    plain_hdf5 = tmp_path / "plain.h5"
    with h5py.File(plain_hdf5, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    assert not is_mat_file(plain_hdf5.read_bytes())
    assert not is_mat_file(b"\x89PNG\r\n\x1a\n" + b"\x00" * 600)
    # A v7.3 text header without HDF5 data after it is not a v7.3 file.
    assert not is_mat_file(_v73_header() + b"\x00" * 600)
    assert not is_mat_file(b"")


def test_decode_v73_orientation_and_dtype(tmp_path: Path) -> None:
    data = _write_slice(tmp_path / "1.mat", 1, "7", seed=4).read_bytes()
    image = decode_mat_image(data)
    assert image.shape == (HEIGHT, WIDTH)
    assert image.dtype == np.int16
    np.testing.assert_array_equal(image, _image(4))
    assert image.flags.c_contiguous


def test_decode_v5_orientation_and_dtype(tmp_path: Path) -> None:
    data = _write_v5_slice(tmp_path / "1.mat", 1, "7", seed=4).read_bytes()
    image = decode_mat_image(data)
    assert image.shape == (HEIGHT, WIDTH)
    assert image.dtype == np.int16
    np.testing.assert_array_equal(image, _image(4))


def test_decode_without_cjdata_names_it(tmp_path: Path) -> None:
    data = _write_v73(tmp_path / "other.mat", {"results": np.ones((2, 3))}).read_bytes()
    with pytest.raises(ValueError, match=r"no 'cjdata' struct in the file; its variables are \['results'\]"):
        decode_mat_image(data)


def test_decode_without_image_field_names_it(tmp_path: Path) -> None:
    fields = _cjdata(1, "7", seed=0)
    del fields["image"]
    data = _write_v73(tmp_path / "1.mat", {"cjdata": fields}).read_bytes()
    with pytest.raises(ValueError, match=r"cjdata\.image is missing"):
        decode_mat_image(data)


def test_inspect_image_reports_mat_slice(tmp_path: Path) -> None:
    info = inspect_image(_write_slice(tmp_path / "1.mat", 1, "7", seed=0).read_bytes(), name="1.mat")
    assert info.format == "MAT"
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert info.mode == "I;16S"
    assert info.bit_depth == 16


def test_inspect_image_wraps_missing_cjdata(tmp_path: Path) -> None:
    data = _write_v73(tmp_path / "other.mat", {"results": np.ones((2, 3))}).read_bytes()
    with pytest.raises(ImageDecodeError, match=r"other\.mat: not a readable MAT image .*'cjdata'"):
        inspect_image(data, name="other.mat")


def test_to_uint8_array_keeps_orientation(tmp_path: Path) -> None:
    # A bright top band must still be at the top after stretching to a square, not at the left.
    image = np.zeros((HEIGHT, WIDTH), dtype=np.int16)
    image[:10, :] = 1000
    fields = _cjdata(1, "7", seed=0)
    fields["image"] = image
    data = _write_v73(tmp_path / "1.mat", {"cjdata": fields}).read_bytes()
    array = to_uint8_array(data, size=WIDTH, resize="stretch")
    assert array.shape == (1, WIDTH, WIDTH)
    assert array[0, 0, :].min() == 255
    assert array[0, -1, :].max() == 0


def test_missing_h5py_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _write_slice(tmp_path / "1.mat", 1, "7", seed=0).read_bytes()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'brainlake\[mat\]'"):
        inspect_image(data, name="1.mat")


def test_missing_scipy_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _write_v5_slice(tmp_path / "1.mat", 1, "7", seed=0).read_bytes()
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(MissingDependencyError, match=r"'mat' extra"):
        inspect_image(data, name="1.mat")


# The reader ----------------------------------------------------------------------


def test_figshare_reader_is_registered() -> None:
    assert get_reader("figshare") is read_figshare_folder
    assert "figshare" in bl.list_readers()


def test_reader_records(source: Path) -> None:
    records, _ = split_entries(read_figshare_folder(source))
    by_path = {record.source_path: record for record in records}
    # Slice files come in numeric order, so 10.mat follows 5.mat.
    assert [record.source_path for record in records] == ["1.mat", "2.mat", "3.mat", "5.mat", "10.mat"]
    assert [by_path[name].label for name in ("1.mat", "2.mat", "3.mat", "5.mat", "10.mat")] == [
        "meningioma", "glioma", "glioma", "meningioma", "pituitary"]
    assert [by_path[name].extra["figshare_label"] for name in ("1.mat", "2.mat", "10.mat")] == [1, 2, 3]
    assert by_path["1.mat"].patient_id == "100360"
    assert by_path["10.mat"].patient_id == "MR0042"
    assert by_path["5.mat"].patient_id == "MR0077"
    assert all(record.modality == "MR" for record in records)
    assert all(record.source_split is None for record in records)


def test_reader_extra_values(source: Path) -> None:
    records, _ = split_entries(read_figshare_folder(source))
    by_path = {record.source_path: record for record in records}
    assert by_path["3.mat"].extra["slice"] == 3
    assert by_path["3.mat"].extra["tumor_border"] == [3.0, 2.0, 19.0, 2.0, 19.0, 9.0]
    assert by_path["5.mat"].extra["tumor_border"] == [5.0, 6.0, 7.0, 8.0]
    assert [by_path[name].extra["cv_fold"] for name in ("1.mat", "2.mat", "3.mat", "5.mat")] == [1, 1, 4, 5]
    assert type(by_path["1.mat"].extra["cv_fold"]) is int
    assert "cv_fold" not in by_path["10.mat"].extra
    json.dumps(by_path["1.mat"].extra)  # the extra column is JSON


def test_reader_object_is_original_file(source: Path) -> None:
    records, _ = split_entries(read_figshare_folder(source))
    for record in records:
        assert record.read() == (source / record.source_path).read_bytes()


@pytest.mark.parametrize("name", ["1.mat", "5.mat"])
def test_reader_mask_attachment(source: Path, name: str) -> None:
    records, _ = split_entries(read_figshare_folder(source))
    record = next(record for record in records if record.source_path == name)
    assert sorted(record.attachments) == ["tumor_mask"]
    mask = np.load(io.BytesIO(record.attachments["tumor_mask"]()), allow_pickle=False)
    assert mask.shape == (HEIGHT, WIDTH)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, _mask())


def test_reader_reports_problems_by_name(source: Path) -> None:
    _, problems = split_entries(read_figshare_folder(source))
    reasons = {problem.source_path: problem.reason for problem in problems}
    assert sorted(reasons) == [".DS_Store", "README.txt", "other.mat"]
    assert reasons[".DS_Store"] == "hidden or system file skipped"
    assert reasons["README.txt"] == "not a MATLAB .mat file (extension '.txt')"
    assert reasons["other.mat"].startswith("not a brain tumor slice: no 'cjdata' struct")
    assert "'results'" in reasons["other.mat"]


def test_reader_unknown_label_code(tmp_path: Path) -> None:
    _write_slice(tmp_path / "1.mat", 4, "7", seed=0)
    _write_slice(tmp_path / "2.mat", 1.5, "7", seed=0)
    records, problems = split_entries(read_figshare_folder(tmp_path))
    assert records == []
    assert [problem.source_path for problem in problems] == ["1.mat", "2.mat"]
    assert "unknown label code 4.0 in cjdata.label" in problems[0].reason
    assert "1 (meningioma), 2 (glioma), 3 (pituitary)" in problems[0].reason
    assert "unknown label code 1.5" in problems[1].reason


def test_reader_label_folder_mismatch(tmp_path: Path) -> None:
    (tmp_path / "glioma").mkdir()
    (tmp_path / "batch_1").mkdir()
    _write_slice(tmp_path / "glioma" / "1.mat", 1, "7", seed=0)
    _write_slice(tmp_path / "glioma" / "2.mat", 2, "7", seed=1)
    _write_slice(tmp_path / "batch_1" / "3.mat", 3, "7", seed=2)
    records, problems = split_entries(read_figshare_folder(tmp_path))
    assert [record.source_path for record in records] == ["batch_1/3.mat", "glioma/2.mat"]
    assert [problem.source_path for problem in problems] == ["glioma/1.mat"]
    assert problems[0].reason == (
        "label mismatch: cjdata.label is 1 (meningioma) but the file is in folder 'glioma'")


def test_reader_mask_shape_mismatch(tmp_path: Path) -> None:
    fields = _cjdata(1, "7", seed=0)
    fields["tumorMask"] = np.zeros((WIDTH, HEIGHT), dtype=np.uint8)
    _write_v73(tmp_path / "1.mat", {"cjdata": fields})
    _, problems = split_entries(read_figshare_folder(tmp_path))
    assert [problem.source_path for problem in problems] == ["1.mat"]
    assert "tumorMask has shape (56, 40) but cjdata.image has shape (40, 56)" in problems[0].reason


@pytest.mark.parametrize("write", [_write_slice, _write_v5_slice])
def test_reader_damaged_mat_file(tmp_path: Path, write: Callable[..., Path]) -> None:
    data = write(tmp_path / "1.mat", 1, "7", seed=0).read_bytes()
    (tmp_path / "1.mat").write_bytes(data[:700])
    _, problems = split_entries(read_figshare_folder(tmp_path))
    assert [problem.source_path for problem in problems] == ["1.mat"]
    assert problems[0].reason.startswith("not a readable MATLAB file")


def test_reader_broken_cvind_is_reported(tmp_path: Path) -> None:
    _write_slice(tmp_path / "1.mat", 1, "7", seed=0)
    _write_v73(tmp_path / "cvind.mat", {"folds": np.array([[1.0]])})
    records, problems = split_entries(read_figshare_folder(tmp_path))
    assert [record.source_path for record in records] == ["1.mat"]
    assert "cv_fold" not in records[0].extra
    assert [problem.source_path for problem in problems] == ["cvind.mat"]
    assert "no 'cvind' vector in the file" in problems[0].reason


def test_reader_invalid_fold_numbers(tmp_path: Path) -> None:
    _write_slice(tmp_path / "1.mat", 1, "7", seed=0)
    _write_v73(tmp_path / "cvind.mat", {"cvind": np.array([[1.0, 0.0, 2.5]])})
    records, problems = split_entries(read_figshare_folder(tmp_path))
    assert "cv_fold" not in records[0].extra
    assert [problem.source_path for problem in problems] == ["cvind.mat"]
    assert "cvind contains 2 invalid fold number(s), such as [0.0, 2.5]" in problems[0].reason


def test_reader_reads_v5_cvind(tmp_path: Path) -> None:
    _write_slice(tmp_path / "1.mat", 1, "7", seed=0)
    scipy_io.savemat(tmp_path / "cvind.mat", {"cvind": np.array([[3.0]])})
    records, problems = split_entries(read_figshare_folder(tmp_path))
    assert problems == []
    assert records[0].extra["cv_fold"] == 3


@pytest.mark.parametrize(("argument", "value"), [("label_from", "parent"), ("split_from", "grandparent")])
def test_reader_rejects_folder_options(tmp_path: Path, argument: str, value: str) -> None:
    with pytest.raises(IngestError, match=rf"{argument} must be None, got {value!r}"):
        list(read_figshare_folder(tmp_path, **{argument: value}))


def test_reader_rejects_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"does not accept option\(s\) \['recursive'\]"):
        list(read_figshare_folder(tmp_path, recursive=True))


def test_reader_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"does not exist or is not a folder"):
        list(read_figshare_folder(tmp_path / "absent"))


def test_reader_without_h5py_names_the_extra(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'brainlake\[mat\]'"):
        list(read_figshare_folder(source))


# Ingest into a lake --------------------------------------------------------------


@pytest.fixture
def lake_source(tmp_path: Path) -> Path:
    """Twelve patients with two slices each, four patients per class, so a patient-grouped split has room."""
    folder = tmp_path / "slices"
    folder.mkdir()
    number = 0
    folds = []
    for patient in range(12):
        for _ in range(2):
            number += 1
            _write_slice(folder / f"{number}.mat", patient % 3 + 1, f"P{patient:04d}", seed=number)
            folds.append(patient % 5 + 1)
    _write_v73(folder / "cvind.mat", {"cvind": np.array([folds], dtype=np.float64)})
    return folder


def test_ingest_into_lake(tmp_path: Path, lake_source: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    report = lake.ingest(lake_source, source="figshare", reader="figshare", progress=False)
    assert report.ok, report
    assert report.added == 24
    assert report.skipped == []

    items = lake.items().to_pylist()
    assert {item["format"] for item in items} == {"MAT"}
    assert {item["mode"] for item in items} == {"I;16S"}
    assert {item["bit_depth"] for item in items} == {16}
    assert {(item["width"], item["height"]) for item in items} == {(WIDTH, HEIGHT)}
    assert {item["modality"] for item in items} == {"MR"}
    assert {item["label"] for item in items} == {"meningioma", "glioma", "pituitary"}
    # Patient ids are pseudonymised by default, but slices of one patient still share one.
    assert len({item["patient_id"] for item in items}) == 12
    assert not any(item["patient_id"].startswith("P00") for item in items)

    first = next(item for item in items if item["source_path"] == "1.mat")
    extra = json.loads(first["extra"])
    assert (extra["slice"], extra["figshare_label"], extra["cv_fold"]) == (1, 1, 1)
    mask = np.load(io.BytesIO(lake.read_object(extra["tumor_mask_sha256"])), allow_pickle=False)
    np.testing.assert_array_equal(mask, _mask())
    assert lake.read_object(first["sha256"]) == (lake_source / "1.mat").read_bytes()

    again = lake.ingest(lake_source, source="figshare", reader="figshare", progress=False)
    assert again.added == 0


def test_mart_from_figshare_items(tmp_path: Path, lake_source: Path) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(lake_source, source="figshare", reader="figshare", progress=False)
    built = lake.mart("f").split(val_fraction=0.2, test_fraction=0.2).preprocess(size=32).build(progress=False)
    total = 0
    for split in built.splits:
        images = built.dataset(split, normalize=False).images
        assert images.dtype == np.uint8
        assert images.shape[1:] == (1, 32, 32)
        assert images.max() > 0
        total += images.shape[0]
    assert total == 24
    assert built.leakage["groups"] == 12


# The zip download ----------------------------------------------------------------


def _zip_bytes(members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _zip_like_download(folder: Path, target: Path, inner: dict[str, list[str]]) -> Path:
    """Zip ``folder`` as the download is laid out: a zip of inner zips and of the files left over.

    Each key of ``inner`` names an inner zip holding the listed files of
    ``folder``. The other files of ``folder`` (cvind.mat, README.txt) go into
    the outer zip beside the inner zips.
    """
    packed = {name for names in inner.values() for name in names}
    members = [
        (zip_name, _zip_bytes((name, (folder / name).read_bytes()) for name in names))
        for zip_name, names in inner.items()
    ]
    members += [(path.name, path.read_bytes()) for path in sorted(folder.iterdir()) if path.name not in packed]
    target.write_bytes(_zip_bytes(members))
    return target


@pytest.fixture
def source_zip(source: Path, tmp_path: Path) -> Path:
    """The files of ``source`` in two inner zips, with cvind.mat and README.txt in the outer zip."""
    return _zip_like_download(source, tmp_path / "figshare.zip", {
        "brainTumorDataPublic_1-3.zip": ["1.mat", "2.mat", "3.mat", "other.mat", ".DS_Store"],
        "brainTumorDataPublic_5-10.zip": ["5.mat", "10.mat"],
    })


def _by_slice(records: Iterable[bl.SourceRecord]) -> dict[int, tuple[object, ...]]:
    return {
        record.extra["slice"]: (record.label, record.patient_id, record.modality, record.extra, record.read(),
                                record.attachments["tumor_mask"]())
        for record in records
    }


def test_zip_source_paths(source_zip: Path) -> None:
    records, _ = split_entries(read_figshare_folder(source_zip))
    assert [record.source_path for record in records] == [
        "brainTumorDataPublic_1-3.zip/1.mat",
        "brainTumorDataPublic_1-3.zip/2.mat",
        "brainTumorDataPublic_1-3.zip/3.mat",
        "brainTumorDataPublic_5-10.zip/10.mat",
        "brainTumorDataPublic_5-10.zip/5.mat",
    ]


def test_zip_records_match_folder(source: Path, source_zip: Path) -> None:
    from_folder, _ = split_entries(read_figshare_folder(source))
    from_zip, _ = split_entries(read_figshare_folder(source_zip))
    assert sorted(_by_slice(from_zip)) == [1, 2, 3, 5, 10]
    assert _by_slice(from_zip) == _by_slice(from_folder)


def test_zip_problems_match_folder(source: Path, source_zip: Path) -> None:
    _, folder_problems = split_entries(read_figshare_folder(source))
    _, zip_problems = split_entries(read_figshare_folder(source_zip))
    from_folder = {problem.source_path: (problem.reason, problem.hint) for problem in folder_problems}
    from_zip = {problem.source_path: (problem.reason, problem.hint) for problem in zip_problems}
    assert sorted(from_zip) == [
        "README.txt", "brainTumorDataPublic_1-3.zip/.DS_Store", "brainTumorDataPublic_1-3.zip/other.mat"]
    assert {path.rsplit("/", 1)[-1]: outcome for path, outcome in from_zip.items()} == from_folder


def test_zip_cvind_in_nested_archive(source: Path, tmp_path: Path) -> None:
    archive = _zip_like_download(source, tmp_path / "figshare.zip", {
        "brainTumorDataPublic_1-3.zip": ["1.mat", "2.mat", "3.mat"],
        "brainTumorDataPublic_5-10.zip": ["5.mat", "10.mat", "cvind.mat"],
    })
    records, problems = split_entries(read_figshare_folder(archive))
    folds = {record.extra["slice"]: record.extra.get("cv_fold") for record in records}
    assert folds == {1: 1, 2: 1, 3: 4, 5: 5, 10: None}
    assert "brainTumorDataPublic_5-10.zip/cvind.mat" not in {problem.source_path for problem in problems}


def test_zip_hostile_member_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _write_slice(tmp_path / "1.mat", 1, "100360", seed=1).read_bytes()
    inner = _zip_bytes([("1.mat", data), (zipfile.ZipInfo("../x.mat"), data)])
    archive = tmp_path / "figshare.zip"
    archive.write_bytes(_zip_bytes([("brainTumorDataPublic_1-766.zip", inner)]))

    opened: list[str] = []
    original_open = zipfile.ZipFile.open

    def recording_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    with caplog.at_level("WARNING", logger="brainlake.ingest.archive"):
        records, problems = split_entries(read_figshare_folder(archive))
        masks = [record.attachments["tumor_mask"]() for record in records]

    assert [record.source_path for record in records] == ["brainTumorDataPublic_1-766.zip/1.mat"]
    assert len(masks) == 1
    assert [problem.source_path for problem in problems] == ["brainTumorDataPublic_1-766.zip/../x.mat"]
    assert "'..' segment" in problems[0].reason
    assert "1.mat" in opened
    assert "../x.mat" not in opened
    # The reader walks the archive twice, but warns about the hostile member once.
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "1 member(s)" in warnings[0]


def test_zip_oversized_members_reported(source_zip: Path) -> None:
    # README.txt is under 64 bytes, so only the inner zips and cvind.mat exceed the cap.
    records, problems = split_entries(read_figshare_folder(source_zip, max_member_bytes=64))
    reasons = {problem.source_path: problem.reason for problem in problems}
    assert records == []
    assert sorted(reasons) == [
        "README.txt", "brainTumorDataPublic_1-3.zip", "brainTumorDataPublic_5-10.zip", "cvind.mat"]
    for name in ("brainTumorDataPublic_1-3.zip", "brainTumorDataPublic_5-10.zip", "cvind.mat"):
        assert "exceeds max_member_bytes=64" in reasons[name]
    assert reasons["README.txt"] == "not a MATLAB .mat file (extension '.txt')"


def test_folder_rejects_max_member_bytes(source: Path) -> None:
    with pytest.raises(IngestError, match=r"max_member_bytes applies only to a zip archive"):
        list(read_figshare_folder(source, max_member_bytes=1024))


def test_reader_rejects_other_file(tmp_path: Path) -> None:
    text = tmp_path / "slices.txt"
    text.write_text("not an archive")
    with pytest.raises(IngestError, match=r"slices\.txt' does not exist or is not a folder or a zip archive"):
        list(read_figshare_folder(text))


def test_zip_ingest_matches_folder_ingest(tmp_path: Path, lake_source: Path) -> None:
    archive = _zip_like_download(lake_source, tmp_path / "figshare.zip", {
        "brainTumorDataPublic_1-12.zip": [f"{number}.mat" for number in range(1, 13)],
        "brainTumorDataPublic_13-24.zip": [f"{number}.mat" for number in range(13, 25)],
    })
    # One lake for both sources, so both get the same patient pseudonyms.
    lake = bl.Datalake(tmp_path / "lake")
    from_folder = lake.ingest(lake_source, source="figshare-folder", reader="figshare", progress=False)
    from_zip = lake.ingest(archive, source="figshare-zip", reader="figshare", progress=False)
    again = lake.ingest(archive, source="figshare-zip", reader="figshare", progress=False)

    assert from_folder.added == 24
    assert from_zip.added == 24
    assert from_zip.failed == []
    assert from_zip.skipped == []
    assert again.added == 0
    assert again.already_present == 24

    rows = lake.items().to_pylist()
    folder_rows = {json.loads(row["extra"])["slice"]: row for row in rows if row["source"] == "figshare-folder"}
    zip_rows = {json.loads(row["extra"])["slice"]: row for row in rows if row["source"] == "figshare-zip"}
    assert sorted(zip_rows) == list(range(1, 25))
    assert zip_rows[13]["source_path"] == "brainTumorDataPublic_13-24.zip/13.mat"
    for column in ("label", "patient_id", "sha256", "format", "width", "height"):
        assert {number: row[column] for number, row in zip_rows.items()} == {
            number: row[column] for number, row in folder_rows.items()}, column
    for key in ("figshare_label", "cv_fold", "tumor_border", "tumor_mask_sha256"):
        assert {number: json.loads(row["extra"])[key] for number, row in zip_rows.items()} == {
            number: json.loads(row["extra"])[key] for number, row in folder_rows.items()}, key
