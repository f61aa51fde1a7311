"""Public datasets: the small real sample shipped inside the package, and downloads of the full ones.

:func:`sample_path` returns the folder of 56 real MRI slices (CC0, see the
``README.md`` beside them) that ``brainlake demo`` and the tests ingest when no
other data is at hand.

:func:`download` fetches a dataset from the registry (:func:`list_datasets`)
into the cache, and :func:`download_file` fetches any URL. Both resume an
interrupted download from its ``.part`` file with an HTTP range request. They
check the size and SHA-256 checksum and move the file into place only once it
verifies. A registry entry without a known checksum is downloaded only when
the caller passes ``verify=False``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from ._version import __version__
from .exceptions import IngestError, StorageError, UnknownDatasetError
from .storage import cache_root

__all__ = [
    "SAMPLE_SOURCE",
    "RemoteDataset",
    "cache_dir",
    "download",
    "download_file",
    "get_dataset",
    "list_datasets",
    "sample_path",
]

logger = logging.getLogger(__name__)

SAMPLE_SOURCE = "brainlake-sample"
"""The source name the demo gives the sample when ingesting it."""

DEFAULT_CHUNK_SIZE = 1024 * 1024
"""Bytes read from the network per write to the ``.part`` file (1 MiB)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a connection attempt or a single read may wait before the download fails."""

_SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
# "bytes START-END/TOTAL", or "bytes */TOTAL" in a 416 response. TOTAL is "*" when the server does not know it.
_CONTENT_RANGE_PATTERN = re.compile(r"^bytes (?:(\d+)-\d+|\*)/(\d+|\*)$")
_USER_AGENT = f"brainlake/{__version__}"


def sample_path() -> Path:
    """Return the folder of the shipped sample (``Training/<class>/``, ``Testing/<class>/``).

    Ingest it with ``label_from="parent", split_from="grandparent"``.
    """
    root = resources.files("brainlake") / "sample" / "brain-tumor-mri"
    return Path(str(root))


# Registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteDataset:
    """A public dataset that :func:`download` can fetch.

    Attributes:
        name: The registry name passed to :func:`download`.
        url: Where the file is downloaded from.
        filename: The file name it is saved under in the cache.
        size_bytes: The file's size in bytes, or ``None`` when not recorded.
        sha256: The file's SHA-256 checksum in hex, or ``None`` when not
            recorded; without it the download cannot be verified.
        licence: The licence the publisher released the data under.
        citation: What to cite when publishing results obtained on the data.
        description: What the file contains.
    """

    name: str
    url: str
    filename: str
    size_bytes: int | None
    sha256: str | None
    licence: str
    citation: str
    description: str


# NOTE: neither URL has been fetched from this project's machines, so no size or
# checksum is recorded for them and download() requires verify=False. Kaggle may
# also require a signed-in API token for its download endpoint.
_REGISTRY: dict[str, RemoteDataset] = {
    entry.name: entry
    for entry in (
        RemoteDataset(
            name="figshare-brain-tumor",
            url="https://figshare.com/ndownloader/articles/1512427/versions/5",
            filename="figshare-brain-tumor-1512427-v5.zip",
            size_bytes=None,
            sha256=None,
            licence="CC BY 4.0",
            citation=(
                'Jun Cheng et al., "Enhanced Performance of Brain Tumor Classification via Tumor Region '
                'Augmentation and Partition", PLoS ONE 10(10), 2015; data: doi:10.6084/m9.figshare.1512427'
            ),
            description=(
                "T1-weighted contrast-enhanced MRI slices of glioma, meningioma and pituitary tumours as "
                "MATLAB .mat files (image, label, patient id, tumour mask), in a zip of four zips; "
                "version 5 of the figshare article"
            ),
        ),
        RemoteDataset(
            name="kaggle-brain-tumor-mri",
            url="https://www.kaggle.com/api/v1/datasets/download/masoudnickparvar/brain-tumor-mri-dataset",
            filename="kaggle-brain-tumor-mri-dataset.zip",
            size_bytes=None,
            sha256=None,
            licence="CC0 1.0",
            citation=(
                'Masoud Nickparvar, "Brain Tumor MRI Dataset", Kaggle, 2021, '
                "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset"
            ),
            description=(
                "JPEG MRI slices in Training/<class>/ and Testing/<class>/ folders (glioma, meningioma, "
                "notumor, pituitary), merged from the figshare, SARTAJ and Br35H collections; "
                "the latest version of the Kaggle dataset"
            ),
        ),
    )
}


def list_datasets() -> list[str]:
    """Return the names of the datasets :func:`download` can fetch, sorted."""
    return sorted(_REGISTRY)


def get_dataset(name: str) -> RemoteDataset:
    """Return the registry entry named ``name``.

    Raises:
        UnknownDatasetError: If no dataset has that name; the message lists the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}") from None


def cache_dir() -> Path:
    """Return brainlake's cache folder: ``$BRAINLAKE_CACHE``, else ``~/.cache/brainlake``.

    :func:`download` keeps datasets in its ``datasets`` subfolder.
    """
    # Imported here because brainlake.mart imports PyTorch, which `import brainlake` avoids loading.
    return cache_root()


def download(
    name: str,
    *,
    cache: str | os.PathLike[str] | None = None,
    verify: bool = True,
    progress: bool | None = None,
) -> Path:
    """Download a registry dataset into the cache, or return it if it is already there.

    Args:
        name: A name from :func:`list_datasets`.
        cache: The folder to save the file in (default: ``cache_dir() / "datasets"``).
        verify: Check the file against the size and SHA-256 checksum recorded
            in the registry. An entry with no recorded checksum is downloaded
            only with ``verify=False``.
        progress: Show a progress bar; by default only on a terminal.

    Returns:
        The path of the downloaded file.

    Raises:
        IngestError: If ``name`` is unknown, or ``verify`` is true and the
            entry has no recorded checksum.
        StorageError: If the download fails or the file does not match the
            recorded size or checksum.
    """
    entry = get_dataset(name)
    if verify and entry.sha256 is None:
        raise IngestError(
            f"dataset {name!r} has no recorded SHA-256 checksum, so its download cannot be verified; "
            f"pass verify=False to download it unverified, or call download_file({entry.url!r}, destination, "
            "sha256=...) with a checksum you trust"
        )
    if not verify:
        logger.warning("downloading dataset %s without verifying it (verify=False)", name)

    folder = Path(cache) if cache is not None else cache_dir() / "datasets"
    return download_file(
        entry.url,
        folder / entry.filename,
        sha256=entry.sha256 if verify else None,
        size_bytes=entry.size_bytes if verify else None,
        progress=progress,
    )


# Downloads ---------------------------------------------------------------------


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size_bytes: int | None = None,
    resume: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` to ``destination``, resuming and verifying it.

    The bytes go to ``<destination>.part`` first. If that file is left by an
    interrupted download, only the rest is requested with an HTTP ``Range``
    header. A server that ignores the header sends the whole file again. The
    file is renamed to ``destination`` only after it matches ``size_bytes`` and
    ``sha256``, so ``destination`` is always complete. If ``destination``
    already exists and matches (or there is nothing to check it against), no
    request is made.

    Args:
        url: An ``http://`` or ``https://`` URL. Redirects are followed.
        destination: The path of the downloaded file; its folder is created.
        sha256: The expected SHA-256 checksum in hex, or ``None`` to skip the check.
        size_bytes: The expected size in bytes, or ``None`` to skip the check.
        resume: Continue from an existing ``.part`` file; ``False`` deletes it first.
        chunk_size: Bytes read from the network per write.
        progress: Show a progress bar; by default only on a terminal.
        timeout: Seconds a connection attempt or a single read may wait.

    Returns:
        ``destination`` as a :class:`~pathlib.Path`.

    Raises:
        IngestError: If an argument is invalid.
        StorageError: If the server returns an error, the connection fails (the
            ``.part`` file is kept so the next call resumes), or the file does
            not match ``size_bytes`` or ``sha256`` (the ``.part`` file is deleted).
    """
    expected_sha256 = _checked_arguments(url, sha256, size_bytes, chunk_size, timeout)
    target = Path(destination)
    partial = target.with_name(target.name + ".part")

    # 1. Keep a destination that is already complete.
    if target.is_file():
        mismatch = _mismatch(target, expected_sha256, size_bytes)
        if mismatch is None:
            logger.info("%s is already downloaded and verified; not downloading %s again", target, url)
            return target
        logger.warning("existing %s does not verify (%s); downloading %s again to replace it", target, mismatch, url)

    # 2. Fetch what is missing from the .part file.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if partial.exists() and not resume:
            partial.unlink()
    except OSError as error:
        raise StorageError(f"cannot prepare the download folder {str(target.parent)!r}: {error}") from error
    offset = partial.stat().st_size if partial.exists() else 0
    if size_bytes is not None and offset > size_bytes:
        logger.info("discarding %s: it is larger than the expected %d bytes", partial, size_bytes)
        partial.unlink()
        offset = 0
    if not partial.exists() or size_bytes is None or offset < size_bytes:
        _fetch(url, partial, offset, size_bytes, chunk_size=chunk_size, progress=progress, timeout=timeout)

    # 3. Verify, then move into place in one rename.
    mismatch = _mismatch(partial, expected_sha256, size_bytes)
    if mismatch is not None:
        partial.unlink()
        raise StorageError(
            f"download of {url!r} failed verification: {mismatch}; the partial file was deleted. "
            "Call again to download afresh, and check the URL and expected checksum if it fails again"
        )
    try:
        os.replace(partial, target)
    except OSError as error:
        raise StorageError(f"cannot move the download {str(partial)!r} to {str(target)!r}: {error}") from error
    logger.info("downloaded %s to %s (%d bytes, sha256 %s)", url, target, target.stat().st_size, _sha256_of(target))
    return target


def _checked_arguments(
    url: str, sha256: str | None, size_bytes: int | None, chunk_size: int, timeout: float
) -> str | None:
    if not url.startswith(("http://", "https://")):
        raise IngestError(f"url must start with http:// or https://, got {url!r}")
    if sha256 is not None and not _SHA256_PATTERN.match(sha256):
        raise IngestError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    if size_bytes is not None and (isinstance(size_bytes, bool) or size_bytes < 0):
        raise IngestError(f"size_bytes must be a non-negative number of bytes or None, got {size_bytes!r}")
    if isinstance(chunk_size, bool) or chunk_size <= 0:
        raise IngestError(f"chunk_size must be a positive number of bytes, got {chunk_size!r}")
    if timeout <= 0:
        raise IngestError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return sha256.lower() if sha256 is not None else None


def _sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _mismatch(path: Path, sha256: str | None, size_bytes: int | None) -> str | None:
    """Return how ``path`` differs from the expected size and checksum, or ``None`` if it matches."""
    size = path.stat().st_size
    if size_bytes is not None and size != size_bytes:
        return f"expected {size_bytes} bytes, got {size} bytes"
    if sha256 is not None:
        actual = _sha256_of(path)
        if actual != sha256:
            return f"expected sha256 {sha256}, got {actual}"
    return None


def _fetch(
    url: str,
    partial: Path,
    offset: int,
    size_bytes: int | None,
    *,
    chunk_size: int,
    progress: bool | None,
    timeout: float,
) -> None:
    """Append the bytes of ``url`` from ``offset`` on to ``partial``."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        logger.info("resuming download of %s at byte %d", url, offset)
    else:
        logger.info("downloading %s to %s", url, partial)

    # 1. Send the request. A 416 response to a range request means there is nothing after the offset.
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            if _content_range_total(error.headers.get("Content-Range")) == offset:
                return
            logger.info("the server rejected resuming %s at byte %d; downloading it from the start", url, offset)
            partial.unlink()
            _fetch(url, partial, 0, size_bytes, chunk_size=chunk_size, progress=progress, timeout=timeout)
            return
        raise StorageError(
            f"download of {url!r} failed: HTTP {error.code} {error.reason}; check the URL and that the "
            "server allows anonymous downloads"
        ) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise StorageError(f"cannot connect to {url!r}: {reason}; check the network, then call again") from error

    # 2. Decide where the body starts: at the offset (206) or at byte 0 (200, the range was ignored).
    with response:
        start = offset
        if offset and response.status != 206:
            logger.info("the server ignored the range request for %s; downloading it from the start", url)
            start = 0
        elif offset and _content_range_start(response.headers.get("Content-Range")) != offset:
            logger.info("the server sent another range of %s than requested; downloading it from the start", url)
            response.close()
            partial.unlink()
            _fetch(url, partial, 0, size_bytes, chunk_size=chunk_size, progress=progress, timeout=timeout)
            return
        length = response.headers.get("Content-Length")
        expected_end = start + int(length) if length is not None and length.isdigit() else size_bytes
        _stream(response, partial, url, start, expected_end, size_bytes, chunk_size=chunk_size, progress=progress)


def _stream(
    response: http.client.HTTPResponse,
    partial: Path,
    url: str,
    start: int,
    expected_end: int | None,
    size_bytes: int | None,
    *,
    chunk_size: int,
    progress: bool | None,
) -> None:
    """Write the response body to ``partial`` from byte ``start`` on, checking that none is missing."""
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=expected_end, initial=start, desc=partial.name.removesuffix(".part"), unit="B",
               unit_scale=True, unit_divisor=1024, disable=not show)
    written = start
    too_long = False
    try:
        with partial.open("ab" if start else "wb") as file:
            while chunk := response.read(chunk_size):
                written += len(chunk)
                # Stop a server that sends more than expected before it fills the disk.
                if size_bytes is not None and written > size_bytes:
                    too_long = True
                    break
                file.write(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:
        raise StorageError(
            f"download of {url!r} was interrupted after {written} bytes: {error}; "
            f"{str(partial)!r} is kept, call again to resume"
        ) from error
    finally:
        bar.close()

    if too_long:
        partial.unlink()
        raise StorageError(
            f"download of {url!r} failed verification: expected {size_bytes} bytes, the server sent more; "
            "the partial file was deleted. Check the URL and the expected size"
        )
    # http.client returns a short body without an error when the connection closes early.
    if expected_end is not None and written < expected_end:
        raise StorageError(
            f"download of {url!r} was interrupted after {written} of {expected_end} bytes; "
            f"{str(partial)!r} is kept, call again to resume"
        )


def _content_range_start(header: str | None) -> int | None:
    match = _CONTENT_RANGE_PATTERN.match(header.strip()) if header else None
    return int(match.group(1)) if match and match.group(1) is not None else None


def _content_range_total(header: str | None) -> int | None:
    """Return the total size from a ``Content-Range`` header, including the ``bytes */TOTAL`` form of a 416."""
    match = _CONTENT_RANGE_PATTERN.match(header.strip()) if header else None
    return int(match.group(2)) if match and match.group(2) != "*" else None
