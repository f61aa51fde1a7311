"""Reader and decoder for DICOM slices, such as ``glioma/IM0001.dcm``.

Importing this module registers two things:

- the ``"DICOM"`` :class:`~brainlake.imaging.ArrayDecoder`, which recognises a
  DICOM Part 10 file by the ``DICM`` marker at byte 128 and decodes a
  single-frame grayscale slice with the modality transform applied
  (:func:`decode_dicom_image`);
- the ``"dicom"`` reader, which walks a folder of DICOM files and takes the
  class and source split from folder names, like the ``folder`` reader
  (:func:`read_dicom_folder`).

Privacy rule: the reader copies into the record only the attributes named in
:data:`STORED_ATTRIBUTES`, plus PatientID (as ``patient_id``) and Modality. It
never copies names, birth dates, addresses or other direct identifiers, such
as PatientName, PatientBirthDate, PatientAddress, OtherPatientNames,
ReferringPhysicianName, InstitutionName or InstitutionAddress, so the reader
never brings them into the catalog. The stored object is de-identified too:
unless the ingest passes ``keep_identifiers=True``, the reader removes the
attributes of :data:`IDENTIFYING_ATTRIBUTES` (PatientID included, since the
catalog keeps its pseudonym) and all private tags from the file before the
lake stores it. Two limits remain: identifiers burnt into the pixels stay, and
SeriesDescription is free text typed at the scanner and can contain whatever
an operator wrote into it.

Both parts need the ``dicom`` extra (pydicom 3.0 or later), imported only
when a DICOM file is read, so importing this module works without it.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import IngestError, MissingDependencyError
from ..imaging import ArrayDecoder, register_decoder
from ._base import (
    FolderLevel,
    SourceProblem,
    SourceRecord,
    check_folder_levels,
    labels_from_folders,
    register_reader,
    walk_folder,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from pydicom.dataset import Dataset

    ModalityTransform = Callable[[NDArray[Any], Dataset], NDArray[Any]]

__all__ = [
    "DICOM_DECODER",
    "IDENTIFYING_ATTRIBUTES",
    "deidentified_bytes",
    "DICOM_EXTENSIONS",
    "STORED_ATTRIBUTES",
    "decode_dicom_image",
    "is_dicom",
    "read_dicom_folder",
]

DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
"""File name extensions the ``dicom`` reader takes (case-insensitive).

Files with no extension are taken too when they start like a DICOM file, and so
are names whose last dot-separated part is all digits, because exports often
name files by their SOP Instance UID (``1.2.840.113619.2.55.3.7``).
"""

STORED_ATTRIBUTES = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SeriesDescription",
    "BodyPartExamined",
    "InstanceNumber",
    "PhotometricInterpretation",
)
"""DICOM keywords the reader copies into a record's ``extra`` when present.

This is an allow-list: no other attribute of the header reaches the catalog.
"""

# A DICOM Part 10 file starts with a 128-byte preamble followed by "DICM".
_MARKER = b"DICM"
_MARKER_OFFSET = 128
_SNIFF_BYTES = _MARKER_OFFSET + len(_MARKER)

_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_INTEGER_CANDIDATES = (np.int16, np.uint16, np.int32, np.int64)
# The modality transform's output range is found by mapping every stored value
# when the stored range has at most this many values, else only its two ends.
_FULL_RANGE_LIMIT = 1 << 16


def is_dicom(data: bytes) -> bool:
    """Return whether ``data`` starts like a DICOM Part 10 file (``DICM`` at byte 128)."""
    return data[_MARKER_OFFSET:_SNIFF_BYTES] == _MARKER


def decode_dicom_image(data: bytes) -> NDArray[Any]:
    """Decode a single-frame grayscale DICOM slice into real-world values.

    The modality transform is applied: the Modality LUT when the file has one,
    else Rescale Slope and Rescale Intercept (CT slices become Hounsfield
    units). A MONOCHROME1 image, in which the lowest value is displayed white,
    is inverted within the output range of that transform so that higher
    values are brighter, as in MONOCHROME2. The range comes from Bits Stored
    and Pixel Representation, not from this image's pixels, so every slice of
    a series is inverted alike.

    The result keeps an integer dtype when the transform maps integers to
    integers (no rescale, a Modality LUT, or an integral slope and intercept):
    the first of the stored dtype, int16, uint16, int32 and int64 that can
    represent the transform's whole output range. Otherwise it is float32.

    Args:
        data: The bytes of a DICOM Part 10 file.

    Returns:
        The slice as a 2-D ``(rows, columns)`` array.

    Raises:
        ImportError: If pydicom is not installed.
        ValueError: If the file has no pixel data, has more than one frame, is
            not grayscale, or cannot be parsed or decompressed.
    """
    import pydicom
    from pydicom.pixels.processing import apply_modality_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        _require_single_grayscale_slice(dataset)
        return _display_values(dataset, dataset.pixel_array, apply_modality_lut)
    except _pydicom_failures() as error:
        raise ValueError(f"pydicom failed to decode the file: {error}") from error


def _pydicom_failures() -> tuple[type[Exception], ...]:
    """Return the exception types pydicom raises for bad files, beyond those callers already catch.

    Callers already catch ValueError, KeyError, IndexError, TypeError and
    OSError. The others are the types that pydicom 3.0.2 raised when its own
    sample files were truncated or corrupted at random. RuntimeError also means
    that no installed plugin can decompress the transfer syntax.
    """
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, AttributeError, NotImplementedError, RuntimeError,
            EOFError, struct.error)


def _require_single_grayscale_slice(dataset: Dataset) -> None:
    if not any(keyword in dataset for keyword in _PIXEL_DATA_KEYWORDS):
        raise ValueError(
            "the file has no Pixel Data element (7FE0,0010), so it contains no image. "
            "Only DICOM image files can be ingested"
        )
    frames = int(dataset.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ValueError(
            f"the file contains {frames} frames (NumberOfFrames), but only single-frame grayscale "
            "slices are supported; split it into one file per frame before ingesting"
        )
    interpretation = str(dataset.get("PhotometricInterpretation", "")).strip()
    samples = int(dataset.get("SamplesPerPixel") or 1)
    if samples != 1 or interpretation not in _GRAYSCALE:
        raise ValueError(
            f"found PhotometricInterpretation {interpretation!r} with SamplesPerPixel {samples}, but only "
            "single-frame grayscale slices (MONOCHROME1 or MONOCHROME2) are supported; convert "
            "the image to grayscale before ingesting"
        )


def _display_values(dataset: Dataset, stored: NDArray[Any], apply_modality_lut: ModalityTransform) -> NDArray[Any]:
    values = apply_modality_lut(stored, dataset)
    inverted = str(dataset.PhotometricInterpretation).strip() == "MONOCHROME1"
    if stored.dtype.kind == "f":
        # Float Pixel Data has no Bits Stored range to invert within. Negation
        # reverses the order in the same way for every slice.
        return np.asarray(-values if inverted else values, dtype=np.float32)

    low, high = _modality_range(dataset, apply_modality_lut)
    if values.dtype.kind not in "iu" and not _integral_rescale(dataset):
        result = (low + high) - values if inverted else values
        return np.asarray(result, dtype=np.float32)

    integers = np.rint(values).astype(np.int64)
    integer_low, integer_high = round(low), round(high)
    if inverted:
        integers = (integer_low + integer_high) - integers
    # A malformed file can contain values outside the Bits Stored range. They
    # widen the dtype instead of wrapping around.
    if integers.size:
        integer_low = min(integer_low, int(integers.min()))
        integer_high = max(integer_high, int(integers.max()))
    # Big-endian files decode to big-endian arrays; callers expect native byte order.
    native = stored.dtype.newbyteorder("=")
    return integers.astype(_integer_dtype(integer_low, integer_high, native))


def _stored_range(dataset: Dataset) -> tuple[int, int]:
    bits = int(dataset.BitsStored)
    if int(dataset.get("PixelRepresentation") or 0) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _modality_range(dataset: Dataset, apply_modality_lut: ModalityTransform) -> tuple[float, float]:
    """Return the lowest and highest value the modality transform can output."""
    low, high = _stored_range(dataset)
    # A linear rescale reaches its extremes at the two ends of the stored range,
    # but a Modality LUT need not be monotonic, so every value is mapped.
    if high - low < _FULL_RANGE_LIMIT:
        domain = np.arange(low, high + 1, dtype=np.int64)
    else:
        # NOTE: with a Modality LUT on more than 16 stored bits, only the two
        # ends are mapped, so MONOCHROME1 inversion can use too narrow a range.
        domain = np.array([low, high], dtype=np.int64)
    mapped = apply_modality_lut(domain, dataset)
    return float(mapped.min()), float(mapped.max())


def _integral_rescale(dataset: Dataset) -> bool:
    if "RescaleSlope" not in dataset or "RescaleIntercept" not in dataset:
        return False
    return float(dataset.RescaleSlope).is_integer() and float(dataset.RescaleIntercept).is_integer()


def _integer_dtype(low: int, high: int, stored: np.dtype[Any]) -> np.dtype[Any]:
    for candidate in (stored, *(np.dtype(kind) for kind in _INTEGER_CANDIDATES)):
        limits = np.iinfo(candidate)
        if limits.min <= low and high <= limits.max:
            return np.dtype(candidate)
    raise ValueError(f"the modality transform's output range {low}..{high} does not fit in 64-bit integers")


DICOM_DECODER = register_decoder(
    ArrayDecoder(format="DICOM", sniff=is_dicom, decode=decode_dicom_image, extra="dicom")
)
"""The registered decoder of DICOM slices (format name ``"DICOM"``)."""


@register_reader("dicom")
def read_dicom_folder(
    root: str | os.PathLike[str],
    /,
    *,
    label_from: FolderLevel | None = "parent",
    split_from: FolderLevel | None = None,
    keep_identifiers: bool = False,
    **options: Any,
) -> Iterator[SourceRecord | SourceProblem]:
    """Walk a folder of DICOM files in sorted order and yield one record per file.

    A file is taken when its name ends in ``.dcm`` or ``.dicom``, has no
    extension, or ends in an all-digit part (a UID used as the name), and its
    first 132 bytes carry the ``DICM`` marker. The reader parses only the
    header, up to the pixel data. The lake decodes the pixels at ingest, so a
    multi-frame or colour file fails there, with the reason in the report.

    Each record gets PatientID as ``patient_id`` (``None`` when empty),
    Modality as ``modality``, and the attributes of :data:`STORED_ATTRIBUTES`
    that the file has in ``extra``. No other attribute is copied (see the
    privacy rule in this module's docstring).

    Skipped and reported: hidden or system files and folders (``.DS_Store``,
    ``__MACOSX``), empty folders, files with another extension, files without
    the ``DICM`` marker, files whose header pydicom cannot parse, and DICOM
    objects without an image (DICOMDIR indexes, structured reports, RT plans).

    Args:
        root: The folder to walk.
        label_from: Which folder level names the class: ``"parent"`` (the
            folder holding the file) or ``"grandparent"``; ``None`` for no label.
        split_from: Which folder level names the source split
            (``Training``/``Testing``), or ``None``.
        keep_identifiers: Store each file as it is; by default the
            attributes of :data:`IDENTIFYING_ATTRIBUTES` and private tags are
            removed from the stored copy.
        **options: Not accepted; present so every reader has one signature.

    Yields:
        A :class:`SourceRecord` per DICOM image and a :class:`SourceProblem`
        per skipped entry.

    Raises:
        IngestError: If ``root`` is not a folder or an argument is invalid.
        MissingDependencyError: If pydicom is not installed.
    """
    if options:
        raise IngestError(f"the dicom reader does not accept option(s) {sorted(options)!r}")
    check_folder_levels(label_from, split_from)
    base = Path(root)
    if not base.is_dir():
        raise IngestError(f"source folder {os.fspath(root)!r} does not exist or is not a folder")
    pydicom = _import_pydicom()

    walk = walk_folder(
        base,
        empty_reason="empty folder: no DICOM files in it",
        empty_hint="add its files or remove the folder; no class is created for it",
    )
    for item in walk:
        if isinstance(item, SourceProblem):
            yield item
            continue
        path, relative = item
        if not _may_be_dicom(path):
            yield SourceProblem(
                relative.as_posix(),
                f"not a DICOM file (extension {path.suffix!r})",
                "if it is a DICOM file, rename it to end in .dcm",
            )
            continue
        entry = _dicom_entry(path, relative, label_from, split_from, pydicom)
        if isinstance(entry, SourceRecord) and not keep_identifiers:
            entry = replace(entry, read=partial(deidentified_bytes, path))
        yield entry


IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime",
    "PatientAddress", "PatientTelephoneNumbers", "PatientComments", "MilitaryRank", "Occupation",
    "ResponsiblePerson", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "OperatorsName", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "AccessionNumber",
    "DeviceSerialNumber", "StudyID",
)
"""Attributes removed from a DICOM file before it is stored, unless identifiers are kept."""


def deidentified_bytes(path: Path) -> bytes:
    """Return the file at ``path`` without :data:`IDENTIFYING_ATTRIBUTES` and private tags.

    The output is the same for the same input, so ingesting a folder again
    finds the same objects and adds nothing.
    """
    pydicom = _import_pydicom()
    dataset = pydicom.dcmread(path)
    for keyword in IDENTIFYING_ATTRIBUTES:
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.remove_private_tags()
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _import_pydicom() -> ModuleType:
    try:
        import pydicom
    except ImportError as error:
        raise MissingDependencyError(
            "reading DICOM files needs the 'dicom' extra; install it with: pip install 'brainlake[dicom]'"
        ) from error
    return pydicom


def _may_be_dicom(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in DICOM_EXTENSIONS or suffix == "" or suffix[1:].isdigit()


def _dicom_entry(
    path: Path, relative: Path, label_from: FolderLevel | None, split_from: FolderLevel | None, pydicom: ModuleType
) -> SourceRecord | SourceProblem:
    source_path = relative.as_posix()
    try:
        with path.open("rb") as file:
            head = file.read(_SNIFF_BYTES)
    except OSError as error:
        return SourceProblem(source_path, f"cannot be read: {error}", "check the file's permissions")
    if not is_dicom(head):
        return SourceProblem(
            source_path,
            f"not a DICOM Part 10 file (no {_MARKER.decode()!r} marker at byte {_MARKER_OFFSET})",
            "if it is DICOM without the file meta header, re-export it as a DICOM Part 10 file",
        )

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if "Rows" not in dataset or "Columns" not in dataset:
            return SourceProblem(
                source_path,
                f"DICOM object without an image: no Rows or Columns (SOP class {_sop_class_name(dataset)!r})",
                "only DICOM images are ingested; indexes, reports and RT objects are skipped",
            )
        patient_id = _text(dataset, "PatientID")
        modality = _text(dataset, "Modality")
        extra = _stored_attributes(dataset)
    except (OSError, ValueError, KeyError, IndexError, TypeError) + _pydicom_failures() as error:
        # pydicom converts elements lazily, so reading a value can fail as well as dcmread.
        return SourceProblem(
            source_path,
            f"failed to parse the DICOM header: {type(error).__name__}: {error}",
            "the file is truncated or corrupt; re-export it or remove it",
        )

    label, split, folder_extra = labels_from_folders(relative.parts[:-1], label_from, split_from)
    return SourceRecord(
        source_path=source_path,
        read=path.read_bytes,
        label=label,
        source_split=split,
        patient_id=patient_id,
        modality=modality,
        extra={**folder_extra, **extra},
    )


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None:
        return None
    text = str(value).strip(" \x00")
    return text or None


def _stored_attributes(dataset: Dataset) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for keyword in STORED_ATTRIBUTES:
        text = _text(dataset, keyword)
        if text is None:
            continue
        values[keyword] = _instance_number(text) if keyword == "InstanceNumber" else text
    return values


def _instance_number(text: str) -> int | str:
    # An Integer String that is not a valid integer is kept as written, so a
    # malformed number does not cost the whole file.
    try:
        return int(text)
    except ValueError:
        return text


def _sop_class_name(dataset: Dataset) -> str:
    uid = dataset.get("SOPClassUID")
    if uid is None and "MediaStorageSOPClassUID" in dataset.file_meta:
        uid = dataset.file_meta.MediaStorageSOPClassUID
    return str(uid.name) if uid is not None else "unknown"
