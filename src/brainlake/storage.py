"""Where a lake's bytes live: fsspec filesystems and the content-addressed object store.

A lake root is a local path or any fsspec URL (``s3://bucket/prefix``,
``gs://bucket/prefix``). :func:`open_location` turns it into a filesystem and a
root path. :class:`ObjectStore` keeps raw bytes under ``objects/sha256/``, named
by their SHA-256, so identical bytes are stored once. Finally,
:func:`delta_table_uri` with :func:`delta_storage_options` give the Delta Lake
catalog the same location and credentials in the form delta-rs expects.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .exceptions import StorageError

__all__ = [
    "Location",
    "cache_root",
    "ObjectStore",
    "delta_storage_options",
    "delta_table_uri",
    "open_location",
    "sha256_hex",
]

logger = logging.getLogger(__name__)

_OBJECTS_DIR = "objects/sha256"


def cache_root() -> Path:
    """Return brainlake's local cache folder: ``$BRAINLAKE_CACHE``, else ``~/.cache/brainlake``.

    Marts of remote lakes and downloaded datasets are kept there.
    """
    configured = os.environ.get("BRAINLAKE_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brainlake"


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Location:
    """A lake root resolved to a filesystem.

    Attributes:
        url: The root as the user gave it, normalised (absolute for local paths).
        fs: The fsspec filesystem serving it.
        root: The root path in the filesystem's own notation (no protocol).
        protocol: ``"file"``, ``"s3"``, ``"gs"``, ...
        storage_options: The options the filesystem was opened with.
    """

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    protocol: str
    storage_options: Mapping[str, Any]

    @property
    def is_local(self) -> bool:
        """Whether the root is on the local disk (files can be memory-mapped)."""
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Join ``parts`` under the root, in the filesystem's notation."""
        return posixpath.join(self.root, *parts)

    def url_of(self, *parts: str) -> str:
        """Join ``parts`` under the root as a full URL (a plain path when local)."""
        if self.is_local:
            return os.path.join(self.root, *parts)
        return f"{self.protocol}://{self.path(*parts)}"


def open_location(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Location:
    """Resolve a lake root to an fsspec filesystem.

    Args:
        url: A local path or an fsspec URL such as ``s3://bucket/lake``.
        storage_options: Options for the fsspec backend, with the backend's own
            keys (for s3fs: ``key``, ``secret``, ``endpoint_url``, ``anon``).

    Returns:
        The resolved location.

    Raises:
        StorageError: If the URL names a protocol fsspec cannot open, for
            example because its optional package is missing.
    """
    options = dict(storage_options or {})
    text = os.fspath(url)
    if "://" not in text or text.startswith("file://"):
        local = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
        return Location(local, LocalFileSystem(), local.replace(os.sep, "/"), "file", options)

    if text.startswith("memory://"):
        raise StorageError(
            f"lake root {text!r} is in memory: the Delta catalog does not persist there; "
            "use a temporary folder instead"
        )
    try:
        fs, root = fsspec.url_to_fs(text, **options)
    except (ImportError, ValueError) as error:
        raise StorageError(
            f"cannot open lake root {text!r}: {error}. For s3:// install brainlake[s3], "
            "for gs:// install brainlake[gcs]"
        ) from error
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return Location(text.rstrip("/"), fs, root.rstrip("/"), protocol, options)


class ObjectStore:
    """Immutable raw bytes under ``objects/sha256/ab/cd/<hex>``, named by content.

    Writing the same bytes twice stores them once. A write lands whole or not at
    all: on the local disk it goes to a temporary name first and is renamed into
    place, and object stores such as S3 and GCS make a single put atomic.
    """

    def __init__(self, location: Location) -> None:
        self._location = location

    def path(self, sha256: str) -> str:
        """Return the filesystem path of the object with digest ``sha256``."""
        return self._location.path(_OBJECTS_DIR, sha256[:2], sha256[2:4], sha256)

    def exists(self, sha256: str) -> bool:
        """Return whether the object is stored."""
        return bool(self._location.fs.exists(self.path(sha256)))

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
        """Store ``data`` unless identical bytes are already there.

        Args:
            data: The raw bytes.
            sha256: Their digest when the caller already computed it.

        Returns:
            The digest, and whether this call wrote new bytes.

        Raises:
            StorageError: If the backend fails to write.
        """
        digest = sha256 or sha256_hex(data)
        target = self.path(digest)
        fs = self._location.fs
        if fs.exists(target):
            return digest, False

        try:
            if self._location.is_local:
                self._put_local(target, data)
            else:
                fs.pipe_file(target, data)
        except OSError as error:
            raise StorageError(f"failed to write object {digest} to {target!r}: {error}") from error
        return digest, True

    @staticmethod
    def _put_local(target: str, data: bytes) -> None:
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        temporary = os.path.join(directory, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
        # A concurrent writer may have placed the same bytes meanwhile; the
        # rename replaces them with identical content, so either outcome is fine.
        os.replace(temporary, target)

    def flush(self) -> None:
        """Make every object written so far durable before the catalog refers to it.

        On the local disk this is one ``sync`` for the whole batch, which costs
        far less than an ``fsync`` per object; object stores such as S3 and GCS
        acknowledge a put only once it is durable, so there is nothing to do.
        """
        if self._location.is_local:
            os.sync()

    def get(self, sha256: str) -> bytes:
        """Return the bytes of an object.

        Raises:
            StorageError: If the object is missing or cannot be read.
        """
        target = self.path(sha256)
        try:
            data: bytes = self._location.fs.cat_file(target)
        except FileNotFoundError as error:
            raise StorageError(
                f"object {sha256} is missing from the lake (expected at {target!r}); "
                "run Datalake.verify() to list every missing object"
            ) from error
        except OSError as error:
            raise StorageError(f"failed to read object {sha256} at {target!r}: {error}") from error
        return data

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object (temporary files skipped)."""
        fs = self._location.fs
        base = self._location.path(_OBJECTS_DIR)
        if not fs.exists(base):
            return
        for path in fs.find(base):
            name = posixpath.basename(path)
            if len(name) == 64 and not name.startswith("."):
                yield name

    def remove(self, sha256: str) -> None:
        """Delete an object (used by vacuum for objects no item references)."""
        self._location.fs.rm_file(self.path(sha256))


# s3fs/gcsfs option names mapped to the keys object_store (delta-rs) reads.
_S3_KEYS = {
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_REGION",
}


def delta_table_uri(location: Location, *parts: str) -> str:
    """Return the URI delta-rs should use for a table under the lake root."""
    if location.is_local:
        return os.path.join(location.root, *parts)
    scheme = "s3" if location.protocol in ("s3", "s3a") else location.protocol
    if scheme in ("gcs",):
        scheme = "gs"
    return f"{scheme}://{location.path(*parts)}"


def delta_storage_options(location: Location) -> dict[str, str]:
    """Translate the fsspec storage options of ``location`` into delta-rs options.

    Only the settings with a delta-rs equivalent are translated; the rest stay
    with fsspec. Plain ``http://`` endpoints (local test servers) are allowed
    explicitly, because delta-rs refuses them by default.

    Raises:
        StorageError: If an option has no delta-rs equivalent and would change
            which data the catalog reads (for example ``requester_pays``).
    """
    options = location.storage_options
    if location.is_local:
        return {}

    translated: dict[str, str] = {}
    if location.protocol in ("s3", "s3a"):
        for key, value in options.items():
            if key in _S3_KEYS and value is not None:
                translated[_S3_KEYS[key]] = str(value)
            elif key == "client_kwargs" and isinstance(value, Mapping):
                if "endpoint_url" in value:
                    translated["AWS_ENDPOINT_URL"] = str(value["endpoint_url"])
                if "region_name" in value:
                    translated["AWS_REGION"] = str(value["region_name"])
            elif key == "anon" and value:
                translated["AWS_SKIP_SIGNATURE"] = "true"
            elif key == "requester_pays":
                raise StorageError(
                    f"storage option {key!r} is not supported by the Delta catalog; remove it"
                )
        endpoint = translated.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            translated["AWS_ALLOW_HTTP"] = "true"
        translated.setdefault("AWS_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    elif location.protocol in ("gs", "gcs"):
        token = options.get("token")
        if isinstance(token, str) and os.path.isfile(token):
            translated["google_service_account"] = token
        gcs_endpoint = options.get("endpoint_url")
        if isinstance(gcs_endpoint, str) and gcs_endpoint.startswith("http://"):
            translated["allow_http"] = "true"
    return translated
