"""Where a lake's bytes live: fsspec filesystems and the content-addressed object store.

A lake root is a local path or any fsspec URL (``s3://bucket/prefix``,
``gs://bucket/prefix``). :func:`open_location` turns it into a filesystem and a
root path. :class:`ObjectStore` keeps raw bytes under ``objects/sha256/``, named
by their SHA-256, so identical bytes are stored once. Finally,
:func:`delta_table_uri` with :func:`delta_storage_options` give the Delta Lake
catalog the same location and credentials in the form delta-rs expects.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    "with_retries",
    "write_once",
]

logger = logging.getLogger(__name__)

_OBJECTS_DIR = "objects/sha256"

_T = TypeVar("_T")


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

    def refresh(self, *parts: str) -> None:
        """Drop cached listings of ``parts`` under the root, its parents and everything below it.

        s3fs and gcsfs cache directory listings per filesystem instance, and
        another process (or another lake object) may have written since, so
        the next listing or existence check sends a request to the server.
        """
        if self.is_local:
            return
        path = self.path(*parts).rstrip("/")
        self.fs.invalidate_cache(path)
        cache = getattr(self.fs, "dircache", None)
        if cache is not None:
            for cached in [key for key in list(cache) if key.startswith(path + "/")]:
                cache.pop(cached, None)


# Option names each backend accepts, by what the catalog does with them.
# Translated: the catalog gets the same setting. Objects only: caching and
# tuning that do not change which data is read. Rejected: settings that would
# make the catalog read other data than the objects, and have no delta-rs form.
_S3_TRANSLATED = frozenset({"key", "secret", "token", "endpoint_url", "anon", "client_kwargs", "region_name"})
_S3_OBJECTS_ONLY = frozenset({
    "use_ssl", "config_kwargs", "default_block_size", "default_fill_cache", "default_cache_type",
    "skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths", "max_concurrency",
    "fixed_upload_size", "cache_regions", "retries",
})
_S3_REJECTED = frozenset({"requester_pays", "profile", "session", "version_aware", "s3_additional_kwargs"})
_S3_CLIENT_KWARGS = frozenset({"endpoint_url", "region_name"})

_GCS_TRANSLATED = frozenset({"token", "endpoint_url"})
_GCS_OBJECTS_ONLY = frozenset({
    "project", "access", "consistency", "cache_timeout", "requests_timeout", "timeout", "session_kwargs",
    "default_location", "block_size", "skip_instance_cache", "use_listings_cache", "listings_expiry_time",
})
_GCS_REJECTED = frozenset({"requester_pays", "version_aware", "user_project"})


def _check_options(protocol: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`StorageError` naming the first unknown, unsupported or conflicting option."""
    if protocol in ("s3", "s3a"):
        _check_s3_options(options)
    elif protocol in ("gs", "gcs"):
        _check_gcs_options(options)


def _check_keys(protocol: str, options: Mapping[str, Any], known: frozenset[str], rejected: frozenset[str]) -> None:
    for key in sorted(options):
        if key in rejected:
            raise StorageError(
                f"storage option {key!r} is not supported for {protocol}:// lakes: the Delta catalog "
                "has no equivalent, so objects and catalog would be read differently; remove it"
            )
        if key not in known:
            raise StorageError(
                f"unknown storage option {key!r} for a {protocol}:// lake; supported options: "
                f"{', '.join(sorted(known))}"
            )


def _check_s3_options(options: Mapping[str, Any]) -> None:
    _check_keys("s3", options, _S3_TRANSLATED | _S3_OBJECTS_ONLY, _S3_REJECTED)
    if options.get("anon"):
        for key in ("key", "secret", "token"):
            if options.get(key) is not None:
                raise StorageError(f"storage options 'anon=True' and {key!r} conflict; give credentials or anon, not both")
    if (options.get("key") is None) != (options.get("secret") is None):
        missing = "secret" if options.get("secret") is None else "key"
        raise StorageError(f"storage option {missing!r} is missing; 'key' and 'secret' go together")
    client_kwargs = options.get("client_kwargs") or {}
    if not isinstance(client_kwargs, Mapping):
        raise StorageError(f"storage option 'client_kwargs' must be a mapping, got {client_kwargs!r}")
    for key in sorted(client_kwargs):
        if key not in _S3_CLIENT_KWARGS:
            raise StorageError(
                f"storage option 'client_kwargs' entry {key!r} is not supported; "
                f"supported entries: {', '.join(sorted(_S3_CLIENT_KWARGS))}"
            )
        top = options.get(key)
        if top is not None and top != client_kwargs[key]:
            raise StorageError(
                f"storage option {key!r} is given twice with different values "
                f"({top!r} and client_kwargs[{key!r}]={client_kwargs[key]!r}); give it once"
            )


def _check_gcs_options(options: Mapping[str, Any]) -> None:
    if "anon" in options:
        raise StorageError("unknown storage option 'anon' for a gs:// lake; gcsfs uses token='anon' instead")
    _check_keys("gs", options, _GCS_TRANSLATED | _GCS_OBJECTS_ONLY, _GCS_REJECTED)
    token = options.get("token")
    if token is not None and not isinstance(token, (str, Mapping)):
        raise StorageError(
            f"storage option 'token' must be a path, a service-account mapping or one of 'anon', "
            f"'google_default', 'cache', 'cloud'; got {type(token).__name__}"
        )


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
            example because its optional package is missing, or if a storage
            option is unknown, unsupported or conflicts with another (the
            message names the option).
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
    _check_options(text.split("://", 1)[0], options)
    try:
        fs, root = fsspec.url_to_fs(text, **options)
    except (ImportError, ValueError) as error:
        raise StorageError(
            f"cannot open lake root {text!r}: {error}. For s3:// install brainlake[s3], "
            "for gs:// install brainlake[gcs]"
        ) from error
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return Location(text.rstrip("/"), fs, root.rstrip("/"), protocol, options)


# Transient failures: the request may succeed if sent again. Matched by class
# name along the exception's type and causes, so that botocore and aiohttp
# need not be imported to classify their errors.
_TRANSIENT_CLASSES = frozenset({
    "ConnectionError", "ConnectionResetError", "ConnectionAbortedError", "ConnectionRefusedError",
    "BrokenPipeError", "TimeoutError", "FSTimeoutError", "ClientConnectionError", "ServerDisconnectedError",
    "ClientPayloadError", "EndpointConnectionError", "ReadTimeoutError", "ConnectTimeoutError",
    "IncompleteReadError", "ResponseStreamingError",
})
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
})
RETRY_ATTEMPTS = 4
"""How many times an operation is tried before a transient failure is raised."""
RETRY_BASE_DELAY = 0.2
"""Seconds before the first retry; each further retry waits twice as long."""


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(error: BaseException) -> int | None:
    """Return the HTTP status of a botocore ``ClientError`` or a gcsfs ``HttpError``, if any."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if isinstance(status, int) else None
    code = getattr(error, "code", None)
    return code if isinstance(code, int) and 100 <= code <= 599 else None


def _error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def is_transient(error: BaseException) -> bool:
    """Return whether ``error`` is worth retrying: a dropped connection, a timeout, a 5xx or throttling."""
    for cause in _causes(error):
        if isinstance(cause, (FileNotFoundError, FileExistsError, PermissionError)):
            return False
        if any(klass.__name__ in _TRANSIENT_CLASSES for klass in type(cause).__mro__):
            return True
        status = _http_status(cause)
        if status is not None and (status >= 500 or status == 429):
            return True
        if _error_code(cause) in _TRANSIENT_CODES:
            return True
    return False


def is_precondition_failure(error: BaseException) -> bool:
    """Return whether a create-only write failed because the target already exists.

    gcsfs raises :class:`FileExistsError`. s3fs raises a plain :class:`OSError`
    (``EINVAL``, "At least one of the pre-conditions you specified did not
    hold") whose cause is a botocore ``ClientError`` with code
    ``PreconditionFailed`` and HTTP status 412 (s3fs 2026.9 against SeaweedFS 4.48).
    """
    for cause in _causes(error):
        if isinstance(cause, FileExistsError):
            return True
        if _error_code(cause) in ("PreconditionFailed", "ConditionalRequestConflict"):
            return True
        if _http_status(cause) == 412:
            return True
    return False


def with_retries(operation: str, url: str, call: Callable[[], _T]) -> _T:
    """Run ``call``, retrying transient failures with exponential backoff.

    Args:
        operation: What the call does, for messages (``"read"``, ``"write"``).
        url: The URL the call works on, for messages.
        call: The storage call.

    Returns:
        What ``call`` returns.

    Raises:
        FileNotFoundError: Passed through, so callers can tell a missing
            object from a failure.
        StorageError: If the call fails permanently, or transiently
            :data:`RETRY_ATTEMPTS` times; the message names the operation and URL.
    """
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return call()
        except FileNotFoundError:
            raise
        except Exception as error:
            if not is_transient(error):
                raise StorageError(f"failed to {operation} {url}: {type(error).__name__}: {error}") from error
            if attempt == RETRY_ATTEMPTS:
                raise StorageError(
                    f"failed to {operation} {url} after {RETRY_ATTEMPTS} attempts: {type(error).__name__}: {error}"
                ) from error
            delay = RETRY_BASE_DELAY * 2 ** (attempt - 1)
            logger.warning("%s %s failed (attempt %d of %d), retrying in %.1f s: %s",
                           operation, url, attempt, RETRY_ATTEMPTS, delay, error)
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def write_once(location: Location, relative: str, data: bytes) -> bool:
    """Write ``data`` at ``relative`` (a path under the lake root) unless something is already there.

    On the local disk the file is created exclusively. On S3 and GCS the put
    is conditional (``If-None-Match: *``, ``ifGenerationMatch=0``), so of two
    writers racing for one name exactly one wins. Backends without
    create-only writes fall back to a check followed by a put.

    Returns:
        Whether this call wrote the bytes (``False``: the path already existed).

    Raises:
        StorageError: If the write fails for another reason.
    """
    fs = location.fs
    path = location.path(relative)
    url = location.url_of(relative)
    if location.is_local:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        except OSError as error:
            raise StorageError(f"failed to write {url}: {error}") from error
        return True

    def put() -> bool:
        try:
            fs.pipe_file(path, data, mode="create")
        except TypeError:
            # An fsspec backend without create-only writes.
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
        except Exception as error:
            if is_precondition_failure(error):
                return False
            raise
        return True

    try:
        return with_retries("write", url, put)
    finally:
        location.refresh(posixpath.dirname(relative))


class ObjectStore:
    """Immutable raw bytes under ``objects/sha256/ab/cd/<hex>``, named by content.

    Writing the same bytes twice stores them once. A write lands whole or not at
    all: on the local disk it goes to a temporary name first and is renamed into
    place, and object stores such as S3 and GCS make a single put atomic. Remote
    puts are create-only, and transient failures are retried (see :func:`with_retries`).
    """

    def __init__(self, location: Location) -> None:
        self._location = location

    @property
    def is_local(self) -> bool:
        """Whether the objects are on the local disk rather than on S3 or GCS."""
        return self._location.is_local

    def path(self, sha256: str) -> str:
        """Return the filesystem path of the object with digest ``sha256``."""
        return self._location.path(self._relative(sha256))

    @staticmethod
    def _relative(sha256: str) -> str:
        return posixpath.join(_OBJECTS_DIR, sha256[:2], sha256[2:4], sha256)

    def _url(self, sha256: str) -> str:
        return self._location.url_of(self._relative(sha256))

    def exists(self, sha256: str) -> bool:
        """Return whether the object is stored, asking the server rather than a cached listing."""
        target = self.path(sha256)
        self._location.refresh(posixpath.dirname(self._relative(sha256)))
        return bool(with_retries("check", self._url(sha256), lambda: self._location.fs.exists(target)))

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
        if self._location.is_local:
            if os.path.exists(target):
                # A fresh modification time marks the object as in use for
                # Datalake.vacuum's grace period until the ingest commits.
                try:
                    os.utime(target)
                except OSError as error:
                    # Objects made read-only keep their old time; the stored bytes are still good.
                    logger.debug("could not refresh the modification time of %s: %s", target, error)
                return digest, False
            try:
                self._put_local(target, data)
            except OSError as error:
                raise StorageError(f"failed to write object {digest} to {target!r}: {error}") from error
            return digest, True
        # One conditional put instead of a check and a put: a round trip less
        # for new objects, and no window in which two writers both see "absent".
        return digest, write_once(self._location, self._relative(digest), data)

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
            data: bytes = with_retries("read", self._url(sha256), lambda: self._location.fs.cat_file(target))
        except FileNotFoundError as error:
            raise StorageError(
                f"object {sha256} is missing from the lake (expected at {self._url(sha256)!r}); "
                "run Datalake.verify() to list every missing object"
            ) from error
        return data

    def get_many(self, digests: Sequence[str]) -> list[bytes]:
        """Return the bytes of several objects, in the order of ``digests``.

        On S3 and GCS the reads go out concurrently in one fsspec ``cat`` call,
        so a batch waits for about one round trip instead of one per object.
        On the local disk this is the same as calling :meth:`get` for each.

        Raises:
            StorageError: If an object is missing or cannot be read.
        """
        if self._location.is_local or not digests:
            return [self.get(digest) for digest in digests]
        paths = [self.path(digest) for digest in digests]
        url = self._location.url_of(_OBJECTS_DIR)
        found = with_retries("read", url, lambda: self._location.fs.cat(paths, on_error="return"))
        blobs = []
        for digest, path in zip(digests, paths, strict=True):
            data = found.get(path)
            if isinstance(data, bytes):
                blobs.append(data)
            else:
                # A missing object or a failed read: read it once more on its
                # own, which retries and raises the usual StorageError.
                blobs.append(self.get(digest))
        return blobs

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored object (temporary files skipped).

        Cached listings are dropped first, so objects written by other
        processes since this filesystem last listed are included.
        """
        fs = self._location.fs
        base = self._location.path(_OBJECTS_DIR)
        self._location.refresh(_OBJECTS_DIR)
        url = self._location.url_of(_OBJECTS_DIR)
        if not with_retries("check", url, lambda: fs.exists(base)):
            return
        for path in with_retries("list", url, lambda: fs.find(base)):
            name = posixpath.basename(path)
            if len(name) == 64 and not name.startswith("."):
                yield name

    def remove(self, sha256: str) -> None:
        """Delete an object (used by vacuum for objects no item references)."""
        target = self.path(sha256)
        with_retries("delete", self._url(sha256), lambda: self._location.fs.rm_file(target))
        self._location.refresh(posixpath.dirname(self._relative(sha256)))


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

    The options were checked when the location was opened, so every key here
    is either translated or affects only object access (caching, tuning).
    Plain ``http://`` endpoints (local test servers) are allowed explicitly,
    because delta-rs rejects them by default. Settings absent from the options
    come from the environment, as they do for s3fs and gcsfs: delta-rs reads
    the ``AWS_*`` variables itself, and ``GOOGLE_APPLICATION_CREDENTIALS`` is
    passed on here.

    Raises:
        StorageError: If an option has no delta-rs equivalent and would change
            which data the catalog reads (for example ``requester_pays``).
    """
    if location.is_local:
        return {}
    if location.protocol in ("s3", "s3a"):
        return _delta_s3_options(location.storage_options)
    if location.protocol in ("gs", "gcs"):
        return _delta_gcs_options(location.storage_options)
    return {}


def _delta_s3_options(options: Mapping[str, Any]) -> dict[str, str]:
    _check_s3_options(options)
    translated: dict[str, str] = {}
    for key, value in options.items():
        if key in _S3_KEYS and value is not None:
            translated[_S3_KEYS[key]] = str(value)
        elif key == "client_kwargs" and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                translated[_S3_KEYS[inner]] = str(inner_value)
        elif key == "anon" and value:
            translated["AWS_SKIP_SIGNATURE"] = "true"
    endpoint = translated.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        translated["AWS_ALLOW_HTTP"] = "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    translated.setdefault("AWS_REGION", region)
    return translated


# gcsfs token values that name a way to find credentials rather than the credentials.
_GCS_TOKEN_METHODS = frozenset({"google_default", "cache", "cloud", "browser"})


def _delta_gcs_options(options: Mapping[str, Any]) -> dict[str, str]:
    _check_gcs_options(options)
    translated: dict[str, str] = {}
    token = options.get("token")
    credentials_file: str | None = None
    base_url: Any = None
    if isinstance(token, Mapping):
        translated["google_service_account_key"] = json.dumps(dict(token))
        base_url = token.get("gcs_base_url")
    elif isinstance(token, str) and token != "anon" and token not in _GCS_TOKEN_METHODS:
        credentials_file = token
        translated["google_service_account"] = token
    else:
        # gcsfs's "anon" has no catalog equivalent that can write, so the
        # catalog falls back to the environment's credentials when there are any.
        credentials_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if credentials_file and _credentials_type(credentials_file) == "service_account":
            # delta-rs honours a service-account file's gcs_base_url only when
            # it is given as a service account, not as application credentials.
            translated["google_service_account"] = credentials_file
        elif credentials_file:
            translated["google_application_credentials"] = credentials_file
        elif token == "anon":
            translated["google_skip_signature"] = "true"
    if credentials_file:
        base_url = _gcs_base_url(credentials_file)
    endpoint = options.get("endpoint_url")
    if any(isinstance(url, str) and url.startswith("http://") for url in (endpoint, base_url)):
        translated["allow_http"] = "true"
    return translated


def _credentials_field(credentials_file: str, name: str) -> str | None:
    """Return a string field of a JSON credentials file, or ``None`` if it is unreadable or lacks it."""
    try:
        with open(credentials_file, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    value = content.get(name) if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


def _gcs_base_url(credentials_file: str) -> str | None:
    return _credentials_field(credentials_file, "gcs_base_url")


def _credentials_type(credentials_file: str) -> str | None:
    return _credentials_field(credentials_file, "type")
