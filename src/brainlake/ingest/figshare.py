"""Reader and decoder for the figshare brain tumor dataset's MATLAB ``.mat`` slices.

The dataset (Jun Cheng et al., doi:10.6084/m9.figshare.1512427) stores each
MRI slice as ``N.mat``, a MATLAB v7.3 file: HDF5 behind a 512-byte text
header. Each file contains one struct ``cjdata`` with the fields ``image``
(int16), ``label`` (1 meningioma, 2 glioma, 3 pituitary), ``PID`` (the patient
id as character codes), ``tumorBorder`` and ``tumorMask``. A ``cvind.mat`` beside the
slices assigns each slice number a patient-disjoint cross-validation fold 1..5.
Files saved as MATLAB v5 (not HDF5) with the same struct are read as well.

Importing this module registers two things:

* the ``MAT`` array decoder, so the lake decodes stored ``.mat`` objects into
  their int16 slice at ingest and when a mart is built;
* the ``figshare`` reader, which yields one record per slice with the label,
  patient id, tumor border, fold and the tumor mask as an attachment. It reads
  an unpacked folder, or the download's zip of zips in memory.

Both need the ``mat`` extra (h5py for v7.3, scipy for v5), imported only when a
file is read.

MATLAB stores arrays column-major, so h5py returns every v7.3 matrix
transposed. Values returned here are transposed back to the orientation that
MATLAB shows, and scipy already returns v5 arrays in that orientation.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..exceptions import IngestError, MissingDependencyError
from ..imaging import ArrayDecoder, register_decoder
from ._base import SourceProblem, SourceRecord, canonical_label, is_hidden, register_reader
from .archive import DEFAULT_MAX_MEMBER_BYTES, ZipMember, ZipMembers

__all__ = [
    "FIGSHARE_LABELS",
    "MAT_DECODER",
    "decode_mat_image",
    "is_mat_file",
    "read_figshare_folder",
]

logger = logging.getLogger(__name__)

FIGSHARE_LABELS: dict[int, str] = {1: "meningioma", 2: "glioma", 3: "pituitary"}
"""The dataset's label codes and the canonical labels they map to."""

_V73_HEADER = b"MATLAB 7.3 MAT-file"
_V5_HEADER = b"MATLAB 5.0 MAT-file"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# MATLAB writes v7.3 files with a 512-byte HDF5 user block whose first 128
# bytes are the text header, so the HDF5 superblock starts at offset 512.
_HDF5_OFFSET = 512
_SNIFF_BYTES = _HDF5_OFFSET + len(_HDF5_SIGNATURE)

_STRUCT = "cjdata"
_CVIND_NAME = "cvind.mat"
_CODES = ", ".join(f"{code} ({name})" for code, name in FIGSHARE_LABELS.items())
# Folder names that mean a class. A slice inside such a folder must carry that class.
_CLASS_NAMES = frozenset({*FIGSHARE_LABELS.values(), "notumor"})
_NOT_A_SLICE_HINT = (
    "this reader only ingests slices of the figshare brain tumor dataset; "
    "move other .mat files out of the folder"
)


class _NotASliceError(ValueError):
    """A readable MATLAB file that lacks the ``cjdata`` struct or one of its fields."""


class _InvalidLabelError(ValueError):
    """A slice whose ``cjdata.label`` is not one of the dataset's label codes."""


# Detecting and opening MATLAB files ----------------------------------------------


def _is_v73(head: bytes) -> bool:
    return head.startswith(_V73_HEADER) and head[_HDF5_OFFSET:_SNIFF_BYTES] == _HDF5_SIGNATURE


def _is_v5(head: bytes) -> bool:
    return head.startswith(_V5_HEADER)


def is_mat_file(data: bytes) -> bool:
    """Return whether ``data`` starts like a MATLAB v7.3 or v5 ``.mat`` file.

    Only the header is checked: the ``MATLAB 7.3 MAT-file`` text followed by the
    HDF5 signature at byte 512, or the ``MATLAB 5.0 MAT-file`` text.
    """
    return _is_v73(data) or _is_v5(data)


def _head_of(source: bytes | Path) -> bytes:
    if isinstance(source, bytes):
        return source[:_SNIFF_BYTES]
    with source.open("rb") as file:
        return file.read(_SNIFF_BYTES)


def _file_like(source: bytes | Path) -> str | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)


# h5py and scipy are the optional ``mat`` extra and ship no type information,
# so they are imported here, on first use, as untyped modules.
def _import_h5py() -> Any:
    import h5py  # type: ignore[import-untyped, unused-ignore]

    return h5py


def _import_scipy_io() -> Any:
    import scipy.io  # type: ignore[import-untyped, unused-ignore]

    return scipy.io


class _Struct(Protocol):
    """The fields of one MATLAB struct, in MATLAB's orientation."""

    def value(self, field: str) -> Any:
        """Return the field's value (an array, or a str for v5 char arrays)."""
        ...

    def shape(self, field: str) -> tuple[int, ...]:
        """Return the field's shape without reading its data where the format allows."""
        ...


class _HDF5Struct:
    """A v7.3 struct: an HDF5 group with one dataset per field."""

    def __init__(self, group: Any) -> None:
        self._group = group

    def _dataset(self, field: str) -> Any:
        dataset = self._group.get(field)
        if dataset is None or not hasattr(dataset, "shape"):
            raise _NotASliceError(
                f"{_STRUCT}.{field} is missing; the struct has the fields {sorted(self._group.keys())!r}"
            )
        return dataset

    def value(self, field: str) -> Any:
        dataset = self._dataset(field)
        # MATLAB stores an empty array as a vector of its dimensions, marked
        # with the MATLAB_empty attribute.
        if dataset.attrs.get("MATLAB_empty", 0):
            return np.zeros((0,), dtype=dataset.dtype)
        return np.asarray(dataset[()]).T

    def shape(self, field: str) -> tuple[int, ...]:
        dataset = self._dataset(field)
        if dataset.attrs.get("MATLAB_empty", 0):
            return (0,)
        return tuple(reversed(dataset.shape))


class _V5Struct:
    """A v5 struct as ``scipy.io.loadmat(..., struct_as_record=False, squeeze_me=True)`` returns it."""

    def __init__(self, struct: Any) -> None:
        self._struct = struct

    def value(self, field: str) -> Any:
        if field not in self._struct._fieldnames:
            raise _NotASliceError(
                f"{_STRUCT}.{field} is missing; the struct has the fields {sorted(self._struct._fieldnames)!r}"
            )
        return getattr(self._struct, field)

    def shape(self, field: str) -> tuple[int, ...]:
        return tuple(np.shape(self.value(field)))


@contextmanager
def _open_cjdata(source: bytes | Path) -> Iterator[_Struct]:
    """Open the ``cjdata`` struct of a v7.3 or v5 file given as bytes or a path.

    Raises:
        ImportError: If h5py (v7.3) or scipy (v5) is not installed.
        ValueError: If the file is not a MATLAB file, or has no ``cjdata`` struct.
        OSError: If the file cannot be read.
    """
    head = _head_of(source)
    if _is_v73(head):
        h5py = _import_h5py()
        with h5py.File(_file_like(source), "r") as file:
            group = file.get(_STRUCT)
            if not isinstance(group, h5py.Group):
                raise _NotASliceError(
                    f"no {_STRUCT!r} struct in the file; its variables are {sorted(file.keys())!r}"
                )
            yield _HDF5Struct(group)
        return

    if _is_v5(head):
        scipy_io = _import_scipy_io()
        try:
            variables = scipy_io.loadmat(
                _file_like(source), struct_as_record=False, squeeze_me=True, variable_names=[_STRUCT]
            )
        except scipy_io.matlab.MatReadError as error:
            # MatReadError derives from Exception only, and callers expect ValueError for a damaged file.
            raise ValueError(f"damaged MATLAB v5 file ({error})") from error
        struct = variables.get(_STRUCT)
        if struct is None:
            names = [name for name, _, _ in scipy_io.whosmat(_file_like(source))]
            raise _NotASliceError(f"no {_STRUCT!r} struct in the file; its variables are {sorted(names)!r}")
        if not hasattr(struct, "_fieldnames"):
            raise _NotASliceError(
                f"{_STRUCT!r} is a {type(struct).__name__}, not a single struct; expected one slice per file"
            )
        yield _V5Struct(struct)
        return

    raise ValueError(f"not a MATLAB v7.3 or v5 file (header {head[:20]!r})")


def _numeric(field: str, value: Any) -> NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise _NotASliceError(f"{_STRUCT}.{field} has dtype {array.dtype}; expected a numeric array")
    return array


# The decoder ---------------------------------------------------------------------


def decode_mat_image(data: bytes) -> NDArray[Any]:
    """Decode the ``cjdata.image`` slice of a MATLAB v7.3 or v5 file.

    Args:
        data: The bytes of the ``.mat`` file.

    Returns:
        The slice as a C-contiguous 2-D array in the orientation MATLAB shows
        it, in its stored dtype (int16 for the figshare dataset).

    Raises:
        ImportError: If h5py (v7.3) or scipy (v5) is not installed.
        ValueError: If the file has no ``cjdata`` struct, no ``image`` field,
            or an image that is not numeric.
    """
    with _open_cjdata(data) as struct:
        image = _numeric("image", struct.value("image"))
    return np.ascontiguousarray(image)


MAT_DECODER = register_decoder(
    ArrayDecoder(format="MAT", sniff=is_mat_file, decode=decode_mat_image, extra="mat")
)
"""The registered decoder of MATLAB ``.mat`` slices (format name ``"MAT"``)."""


# The reader ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Slice:
    label_code: int
    patient_id: str | None
    border: list[float]


@dataclass(frozen=True)
class _SourceFile:
    """A file of the source: a file under the folder, or a member of the zip archive.

    Attributes:
        source_path: The path relative to the folder, or inside the archive
            chain (``brainTumorDataPublic_1-766.zip/1.mat``).
        folder: The name of the folder that contains the file, or ``None`` at
            the top of the folder or of the file's innermost archive.
        location: Where the bytes are read from.
    """

    source_path: str
    folder: str | None
    location: Path | ZipMember

    @property
    def name(self) -> str:
        return PurePosixPath(self.source_path).name

    def is_cvind(self) -> bool:
        return self.name.lower() == _CVIND_NAME

    def read(self) -> bytes:
        if isinstance(self.location, Path):
            return self.location.read_bytes()
        return self.location.read()

    def mat(self) -> bytes | Path:
        # h5py and scipy open a path themselves, but a zip member must be decompressed into memory first.
        return self.location if isinstance(self.location, Path) else self.location.read()


def _folder_file(path: Path, base: Path) -> _SourceFile:
    folder = path.parent.name if path.parent != base else None
    return _SourceFile(path.relative_to(base).as_posix(), folder, path)


def _zip_file(member: ZipMember) -> _SourceFile:
    folders = member.name.split("/")[:-1]
    return _SourceFile(member.path, folders[-1] if folders else None, member)


def _label_code(value: Any) -> int:
    values = np.asarray(value).ravel()
    if values.size != 1 or values.dtype.kind not in "biuf":
        raise _InvalidLabelError(f"{_STRUCT}.label is {values.tolist()!r}; expected one label code, {_CODES}")
    number = float(values[0])
    if not number.is_integer() or int(number) not in FIGSHARE_LABELS:
        raise _InvalidLabelError(f"unknown label code {values[0].item()!r} in {_STRUCT}.label; expected {_CODES}")
    return int(number)


def _patient_id(value: Any) -> str | None:
    if isinstance(value, str):
        text = value
    else:
        codes = np.asarray(value)
        if codes.dtype.kind == "U":
            text = "".join(codes.ravel().tolist())
        else:
            # v7.3 stores a MATLAB char array as its UTF-16 code units.
            text = "".join(map(chr, codes.ravel().tolist()))
    return text.strip() or None


def _read_slice(file: _SourceFile) -> _Slice:
    with _open_cjdata(file.mat()) as struct:
        image_shape = struct.shape("image")
        mask_shape = struct.shape("tumorMask")
        if mask_shape != image_shape:
            raise _NotASliceError(
                f"{_STRUCT}.tumorMask has shape {mask_shape} but {_STRUCT}.image has shape {image_shape}"
            )
        border = _numeric("tumorBorder", struct.value("tumorBorder")).ravel()
        return _Slice(
            label_code=_label_code(struct.value("label")),
            patient_id=_patient_id(struct.value("PID")),
            border=[float(value) for value in border],
        )


def _mask_npy(file: _SourceFile) -> bytes:
    """Read a slice's ``tumorMask`` and return it as ``.npy`` bytes (uint8, MATLAB orientation).

    Raises:
        OSError: If the file cannot be read or no longer contains a numeric mask,
            which the ingest pipeline reports as a failed item.
    """
    try:
        with _open_cjdata(file.mat()) as struct:
            mask = _numeric("tumorMask", struct.value("tumorMask"))
    except (ValueError, KeyError) as error:
        # The reader checked the mask when it listed the file, so this means the file changed since.
        raise OSError(f"{file.source_path}: cjdata.tumorMask is not readable ({error})") from error
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(mask, dtype=np.uint8), allow_pickle=False)
    return buffer.getvalue()


def _read_cv_folds(source: bytes | Path) -> list[int]:
    """Read the fold (1..5) of each slice number from ``cvind.mat``, index 0 being slice 1.

    Args:
        source: The file's path, or its bytes.

    Raises:
        ValueError: If the file has no numeric ``cvind`` vector of whole numbers.
    """
    head = _head_of(source)
    if _is_v73(head):
        h5py = _import_h5py()
        with h5py.File(_file_like(source), "r") as file:
            dataset = file.get("cvind")
            if not isinstance(dataset, h5py.Dataset):
                raise ValueError(f"no 'cvind' vector in the file; its variables are {sorted(file.keys())!r}")
            values = np.asarray(dataset[()])
    elif _is_v5(head):
        scipy_io = _import_scipy_io()
        try:
            variables = scipy_io.loadmat(_file_like(source), squeeze_me=True, variable_names=["cvind"])
        except scipy_io.matlab.MatReadError as error:
            raise ValueError(f"damaged MATLAB v5 file ({error})") from error
        if "cvind" not in variables:
            raise ValueError("no 'cvind' vector in the file")
        values = np.asarray(variables["cvind"])
    else:
        raise ValueError(f"not a MATLAB v7.3 or v5 file (header {head[:20]!r})")

    if values.dtype.kind not in "iuf" or values.ndim > 2 or (values.ndim == 2 and min(values.shape) != 1):
        raise ValueError(f"cvind has dtype {values.dtype} and shape {values.shape}; expected a numeric vector")
    folds = values.ravel().astype(np.float64)
    invalid = folds[~(np.isfinite(folds) & (folds == np.round(folds)) & (folds >= 1))]
    if invalid.size:
        raise ValueError(
            f"cvind contains {invalid.size} invalid fold number(s), such as {invalid[:5].tolist()!r}; "
            "expected whole numbers from 1 upward"
        )
    return [int(fold) for fold in folds]


def _slice_number(name: str) -> int | None:
    stem = PurePosixPath(name).stem
    return int(stem) if stem.isdigit() and int(stem) > 0 else None


def _walk_order(name: str) -> tuple[int, int, str]:
    # Slice files in numeric order (2.mat before 10.mat), everything else after them by name.
    number = _slice_number(name)
    return (0, number, name) if number is not None else (1, 0, name)


def _list_files(base: Path) -> Iterator[_SourceFile | SourceProblem]:
    """Yield the files under ``base`` in walk order, and a problem for each hidden entry."""
    for directory, folders, files in os.walk(base):
        current = Path(directory)
        for name in sorted(folders):
            if is_hidden(name):
                yield SourceProblem((current / name).relative_to(base).as_posix() + "/",
                                    "hidden or system folder skipped")
        folders[:] = sorted(name for name in folders if not is_hidden(name))
        for name in sorted(files, key=_walk_order):
            path = current / name
            if is_hidden(name):
                yield SourceProblem(path.relative_to(base).as_posix(), "hidden or system file skipped")
                continue
            yield _folder_file(path, base)


def _zip_entries(members: ZipMembers) -> Iterator[_SourceFile | SourceProblem]:
    for entry in members:
        yield _zip_file(entry) if isinstance(entry, ZipMember) else entry


@register_reader("figshare")
def read_figshare_folder(
    root: str | os.PathLike[str],
    /,
    *,
    label_from: str | None = None,
    split_from: str | None = None,
    max_member_bytes: int | None = None,
    **options: Any,
) -> Iterator[SourceRecord | SourceProblem]:
    """Read the figshare brain tumor ``N.mat`` slices of a folder or zip archive, one record per slice.

    ``root`` is a folder of slices or a zip archive of them, such as the
    download: a zip holding four zips of slices, ``cvind.mat`` and a README.
    Subfolders are walked, in sorted order with slice files in numeric order.
    Archives nested in the zip are walked too, in name order, with the zip
    reader's safety checks (:class:`~brainlake.ingest.archive.ZipMembers`).
    Nothing is extracted to disk. A member's ``source_path`` is its path inside
    the archive chain, such as ``brainTumorDataPublic_1-766.zip/1.mat``.

    Each record's object is the original ``.mat`` file. Its label comes from
    ``cjdata.label`` (1 meningioma, 2 glioma, 3 pituitary), its patient id from
    ``cjdata.PID`` and its modality is ``"MR"``. ``extra`` contains
    ``figshare_label`` (the original code), ``slice`` (N), ``tumor_border``
    (the flat list x1, y1, x2, y2, ...) and, when a ``cvind.mat`` is in the
    source, ``cv_fold`` (the slice's patient-level fold, 1..5). The tumor mask
    is attached as ``tumor_mask``: ``.npy`` bytes of a uint8 array of the
    image's shape, read from the file when the lake stores it.

    ``cvind.mat`` is read, not ingested. Hidden entries, files other than
    ``.mat``, ``.mat`` files that are not slices (no ``cjdata``), slices
    with an unknown label code and slices whose folder names another class
    than their label are reported and skipped. In a zip archive, so are the
    members that the zip reader skips as unsafe, encrypted or too large.

    A zip archive is walked twice: once to read ``cvind.mat``, because every
    slice's record needs its fold, and once for the slices. So each nested
    archive is decompressed twice, but the walks read one nested archive into
    memory at a time. It stays there only while records read from it exist.

    Args:
        root: The folder holding the ``.mat`` files, or a ``.zip`` file of them.
        label_from: Not accepted (labels come from each file); must be ``None``.
        split_from: Not accepted (the dataset has no splits, only folds); must be ``None``.
        max_member_bytes: For a zip archive, the cap on a member's declared
            uncompressed size, nested archives included; larger members are
            reported instead of read. ``None`` means
            :data:`~brainlake.ingest.archive.DEFAULT_MAX_MEMBER_BYTES`. Must be
            ``None`` for a folder.
        **options: Not accepted; present so every reader has one signature.

    Yields:
        A :class:`SourceRecord` per slice and a :class:`SourceProblem` per
        skipped entry.

    Raises:
        IngestError: If ``root`` is neither a folder nor a zip archive, or an
            argument is invalid.
        MissingDependencyError: If h5py or scipy (the ``mat`` extra) is not installed.
    """
    _check_arguments(label_from, split_from, options)
    base = Path(root)
    if base.is_dir():
        if max_member_bytes is not None:
            raise IngestError(
                f"max_member_bytes applies only to a zip archive, but {os.fspath(root)!r} is a folder; "
                "leave max_member_bytes out"
            )
        _require_mat_extra()
        yield from _read_folder(base)
        return
    if not (base.is_file() and zipfile.is_zipfile(base)):
        raise IngestError(
            f"source {os.fspath(root)!r} does not exist or is not a folder or a zip archive; "
            "pass the folder of .mat files or the dataset's .zip download"
        )
    if max_member_bytes is None:
        max_member_bytes = DEFAULT_MAX_MEMBER_BYTES
    members = ZipMembers(root, max_member_bytes=max_member_bytes)
    _require_mat_extra()
    yield from _read_zip(members)


def _read_folder(base: Path) -> Iterator[SourceRecord | SourceProblem]:
    # 1. List the tree first, because cvind.mat sorts after the slices it describes.
    entries = list(_list_files(base))

    # 2. Read the folds.
    cvind_files = (entry for entry in entries if isinstance(entry, _SourceFile) and entry.is_cvind())
    folds, problems = _read_folds(cvind_files, base)
    yield from problems

    # 3. One record per slice, one problem per other entry.
    yield from _records(entries, folds)


def _read_zip(members: ZipMembers) -> Iterator[SourceRecord | SourceProblem]:
    logger.info("reading figshare zip archive %s", members.name)

    # 1. Read the folds in a first walk, because cvind.mat sorts after the
    # nested archives of slices. The problems of this walk are reported by the second.
    cvind_files = (entry for entry in _zip_entries(members) if isinstance(entry, _SourceFile) and entry.is_cvind())
    folds, problems = _read_folds(cvind_files, members.name)
    yield from problems

    # 2. One record per slice, one problem per other member.
    yield from _records(_zip_entries(members), folds)
    members.log_unsafe_members()


def _read_folds(
    cvind_files: Iterable[_SourceFile], root: str | os.PathLike[str]
) -> tuple[list[int] | None, list[SourceProblem]]:
    """Read the folds of the first ``cvind.mat``, and report each further one as ignored.

    A broken ``cvind.mat`` is reported, and the slices then get no fold.
    """
    folds: list[int] | None = None
    first: str | None = None
    problems: list[SourceProblem] = []
    for cvind in cvind_files:
        if first is not None:
            problems.append(SourceProblem(
                cvind.source_path, f"second cross-validation file ignored; folds are read from {first!r}",
                "keep one cvind.mat in the source"))
            continue
        first = cvind.source_path
        try:
            folds = _read_cv_folds(cvind.mat())
        except (OSError, ValueError) as error:
            problems.append(SourceProblem(
                cvind.source_path, f"cross-validation folds not readable: {error}",
                "replace it with the dataset's cvind.mat; slices are ingested without cv_fold"))
            continue
        logger.info("read the cross-validation folds of %d slices from %s in %s",
                    len(folds), cvind.source_path, os.fspath(root))
    return folds, problems


def _records(
    entries: Iterable[_SourceFile | SourceProblem], folds: Sequence[int] | None
) -> Iterator[SourceRecord | SourceProblem]:
    without_fold = 0
    for entry in entries:
        if isinstance(entry, SourceProblem):
            yield entry
            continue
        if entry.is_cvind():
            continue
        outcome = _entry(entry, folds)
        if isinstance(outcome, SourceRecord) and folds is not None and "slice" in outcome.extra \
                and "cv_fold" not in outcome.extra:
            without_fold += 1
        yield outcome
    if without_fold:
        logger.warning("%d slices have no cross-validation fold: their number is not between 1 and %d "
                       "(the length of cvind)", without_fold, len(folds or []))


def _check_arguments(label_from: str | None, split_from: str | None, options: dict[str, Any]) -> None:
    if options:
        raise IngestError(f"the figshare reader does not accept option(s) {sorted(options)!r}")
    if label_from is not None:
        raise IngestError(
            f"the figshare reader takes each label from the file's cjdata.label, so label_from must be None, "
            f"got {label_from!r}; leave label_from out"
        )
    if split_from is not None:
        raise IngestError(
            f"the figshare dataset has no source splits (cvind.mat gives folds, stored as extra['cv_fold']), "
            f"so split_from must be None, got {split_from!r}; leave split_from out"
        )


def _require_mat_extra() -> None:
    try:
        _import_h5py()
        _import_scipy_io()
    except ImportError as error:
        raise MissingDependencyError(
            f"the figshare reader needs h5py and scipy ({error}); install them with: pip install 'brainlake[mat]'"
        ) from error


def _entry(file: _SourceFile, folds: Sequence[int] | None) -> SourceRecord | SourceProblem:
    relative = file.source_path
    suffix = PurePosixPath(file.name).suffix
    if suffix.lower() != ".mat":
        return SourceProblem(relative, f"not a MATLAB .mat file (extension {suffix!r})",
                             "the figshare reader ingests only the dataset's N.mat slices")

    # 1. Read the slice's metadata. The lake decodes its image later.
    try:
        found = _read_slice(file)
    except _NotASliceError as error:
        return SourceProblem(relative, f"not a brain tumor slice: {error}", _NOT_A_SLICE_HINT)
    except _InvalidLabelError as error:
        return SourceProblem(relative, str(error), "correct cjdata.label in the file, or remove the file")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return SourceProblem(relative, f"not a readable MATLAB file: {error}",
                             "check that the file is complete; download it again if not")

    # 2. A class folder around the file must agree with the label inside it.
    label = FIGSHARE_LABELS[found.label_code]
    folder_label = canonical_label(file.folder) if file.folder is not None else None
    if folder_label in _CLASS_NAMES and folder_label != label:
        return SourceProblem(
            relative,
            f"label mismatch: cjdata.label is {found.label_code} ({label}) but the file is in "
            f"folder {file.folder!r}",
            "move the file to the folder of its class, or out of the class folders",
        )

    # 3. Build the record. The mask is read again only when the lake stores it.
    extra: dict[str, Any] = {"figshare_label": found.label_code, "tumor_border": found.border}
    number = _slice_number(file.name)
    if number is not None:
        extra["slice"] = number
        if folds is not None and number <= len(folds):
            extra["cv_fold"] = folds[number - 1]
    attachments: dict[str, Callable[[], bytes]] = {"tumor_mask": partial(_mask_npy, file)}
    return SourceRecord(
        source_path=relative,
        read=file.read,
        label=label,
        patient_id=found.patient_id,
        modality="MR",
        extra=extra,
        attachments=attachments,
    )
