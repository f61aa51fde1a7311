"""The object store, storage options and their translation for the catalog, on every backend."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brainlake as bl
from brainlake import storage as storage_module
from brainlake.exceptions import StorageError
from brainlake.storage import (
    RETRY_ATTEMPTS,
    Location,
    ObjectStore,
    delta_storage_options,
    delta_table_uri,
    is_precondition_failure,
    is_transient,
    open_location,
    with_retries,
    write_once,
)


def test_put_stores_identical_bytes_once(tmp_path: Path) -> None:
    store = ObjectStore(open_location(tmp_path))
    digest, written = store.put(b"slice")
    again, written_again = store.put(b"slice")
    assert digest == hashlib.sha256(b"slice").hexdigest()
    assert again == digest
    assert written is True
    assert written_again is False
    assert store.get(digest) == b"slice"


def test_object_path_is_content_addressed(tmp_path: Path) -> None:
    store = ObjectStore(open_location(tmp_path))
    digest, _ = store.put(b"abc")
    assert store.path(digest).endswith(f"objects/sha256/{digest[:2]}/{digest[2:4]}/{digest}")
    assert list(store.iter_digests()) == [digest]


def test_put_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = ObjectStore(open_location(tmp_path))
    for index in range(20):
        store.put(f"object {index}".encode())
    leftovers = [path for path in tmp_path.rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []


def test_missing_object_error_names_digest(tmp_path: Path) -> None:
    store = ObjectStore(open_location(tmp_path))
    with pytest.raises(StorageError, match="0" * 64):
        store.get("0" * 64)


def test_memory_url_is_rejected() -> None:
    with pytest.raises(StorageError, match="temporary folder"):
        open_location("memory://lake")


def test_local_location_has_no_catalog_options(tmp_path: Path) -> None:
    location = open_location(tmp_path / "lake")
    assert location.is_local
    assert delta_storage_options(location) == {}
    assert delta_table_uri(location, "catalog/items") == str(tmp_path / "lake" / "catalog" / "items")


def test_s3_options_translate_to_delta_keys() -> None:
    pytest.importorskip("s3fs")
    location = open_location(
        "s3://bucket/lake",
        {"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
    )
    options = delta_storage_options(location)
    assert options["AWS_ACCESS_KEY_ID"] == "AK"
    assert options["AWS_SECRET_ACCESS_KEY"] == "SK"
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_REGION"] == "eu-west-1"
    assert delta_table_uri(location, "catalog/items") == "s3://bucket/lake/catalog/items"


def test_unsupported_s3_option_names_the_key() -> None:
    pytest.importorskip("s3fs")
    with pytest.raises(StorageError, match="requester_pays"):
        delta_storage_options(open_location("s3://bucket/lake", {"requester_pays": True}))


# One suite against every backend: the local disk, S3 (SeaweedFS) and GCS (fake-gcs-server).


@pytest.fixture(params=["local", "s3", "gs"])
def lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh lake root on each backend, with its storage options."""
    if request.param == "local":
        yield str(tmp_path / "lake"), {}
    elif request.param == "s3":
        server = request.getfixturevalue("s3_server")
        yield f"s3://{server.new_bucket()}/lake", server.storage_options()
    else:
        server = request.getfixturevalue("gcs_server")
        yield f"gs://{server.new_bucket()}/lake", server.storage_options()


def test_object_round_trip_on_backend(lake_url: tuple[str, dict[str, Any]]) -> None:
    store = ObjectStore(open_location(*lake_url))
    digest, written = store.put(b"slice bytes")
    assert written is True
    assert store.exists(digest)
    assert store.get(digest) == b"slice bytes"


def test_get_many_keeps_order_on_backend(lake_url: tuple[str, dict[str, Any]]) -> None:
    store = ObjectStore(open_location(*lake_url))
    payloads = [f"slice {index}".encode() for index in range(20)]
    digests = [store.put(data)[0] for data in payloads]

    assert store.get_many(list(reversed(digests))) == list(reversed(payloads))
    assert store.get_many([]) == []


def test_get_many_names_missing_object(lake_url: tuple[str, dict[str, Any]]) -> None:
    store = ObjectStore(open_location(*lake_url))
    present, _ = store.put(b"present")
    absent = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(StorageError, match=absent):
        store.get_many([present, absent])


def test_second_put_is_not_a_write(lake_url: tuple[str, dict[str, Any]]) -> None:
    store = ObjectStore(open_location(*lake_url))
    store.put(b"same bytes")
    digest, written = store.put(b"same bytes")
    assert written is False
    assert store.get(digest) == b"same bytes"


def test_write_once_keeps_first_bytes(lake_url: tuple[str, dict[str, Any]]) -> None:
    location = open_location(*lake_url)
    assert write_once(location, "secrets/example", b"first") is True
    assert write_once(location, "secrets/example", b"second") is False
    assert location.fs.cat_file(location.path("secrets/example")) == b"first"


def test_listing_shows_writes_of_another_client(lake_url: tuple[str, dict[str, Any]]) -> None:
    url, options = lake_url
    reader = ObjectStore(open_location(url, options))
    first, _ = reader.put(b"first")
    assert list(reader.iter_digests()) == [first]
    # A second filesystem instance plays the part of another process writing meanwhile.
    other_options = {**options, "skip_instance_cache": True} if options else options
    second, _ = ObjectStore(open_location(url, other_options)).put(b"second")
    assert sorted(reader.iter_digests()) == sorted([first, second])


def test_verify_finds_missing_object(lake_url: tuple[str, dict[str, Any]], sample_dir: Path) -> None:
    url, options = lake_url
    lake = bl.Datalake(url, storage_options=options)
    lake.ingest(sample_dir / "Training" / "glioma", source="glioma", progress=False)
    assert lake.verify().ok
    digest = lake.items(["sha256"]).column("sha256")[0].as_py()
    lake.location.fs.rm_file(ObjectStore(lake.location).path(digest))
    report = lake.verify()
    assert [pair[1] for pair in report.missing] == [digest]


def _pseudonym_key_after_barrier(url: str, options: dict[str, Any], barrier: Any) -> bytes:
    lake = bl.Datalake.open(url, storage_options=options)
    barrier.wait()
    return lake._pseudonym_key()


def test_pseudonym_key_shared_by_racing_writers(lake_url: tuple[str, dict[str, Any]]) -> None:
    url, options = lake_url
    bl.Datalake(url, storage_options=options)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        # The barrier makes both processes look for the key, find none and create one at once.
        barrier = manager.Barrier(2)
        keys = pool.starmap(_pseudonym_key_after_barrier, [(url, options, barrier)] * 2)
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert len(keys[0]) == 32
    assert bl.Datalake.open(url, storage_options=options)._pseudonym_key() == keys[0]


def _lake_id_after_barrier(url: str, options: dict[str, Any], barrier: Any) -> str:
    barrier.wait()
    return bl.Datalake(url, storage_options=options).lake_id


def test_racing_creators_share_one_lake(lake_url: tuple[str, dict[str, Any]]) -> None:
    url, options = lake_url
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        for attempt in range(3):
            root = f"{url}-{attempt}"
            # The barrier makes both processes find the location empty and create the lake at once.
            barrier = manager.Barrier(2)
            lake_ids = pool.starmap(_lake_id_after_barrier, [(root, options, barrier)] * 2)
            assert lake_ids[0] == lake_ids[1]
            assert bl.Datalake.open(root, storage_options=options).lake_id == lake_ids[0]


def test_missing_object_error_names_url(lake_url: tuple[str, dict[str, Any]]) -> None:
    store = ObjectStore(open_location(*lake_url))
    with pytest.raises(StorageError) as raised:
        store.get("f" * 64)
    assert store.path("f" * 64) in str(raised.value)


def test_wrong_secret_fails_without_retry(s3_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    bucket = s3_server.new_bucket()
    options = {**s3_server.storage_options(), "secret": "wrong", "skip_instance_cache": True}
    store = ObjectStore(open_location(f"s3://{bucket}/lake", options))
    with caplog.at_level(logging.WARNING, logger="brainlake.storage"):
        with pytest.raises(StorageError) as raised:
            store.put(b"data")
    message = str(raised.value)
    assert "failed to write" in message
    assert f"s3://{bucket}/lake/objects/sha256/" in message
    assert caplog.records == []


def test_unreachable_server_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("s3fs")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    options = {
        "key": "k", "secret": "s", "endpoint_url": f"http://127.0.0.1:{closed_port}", "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    store = ObjectStore(open_location("s3://bucket/lake", options))
    with caplog.at_level(logging.WARNING, logger="brainlake.storage"):
        with pytest.raises(StorageError, match=f"after {RETRY_ATTEMPTS} attempts"):
            store.get("a" * 64)
    retries = [record.getMessage() for record in caplog.records]
    assert len(retries) == RETRY_ATTEMPTS - 1
    assert all("s3://bucket/lake/objects/sha256/aa/aa/" in message for message in retries)


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("s3://bucket/lake", {"key": "AK", "secret": "SK", "anon": True}, "key"),
        ("s3://bucket/lake", {"key": "AK"}, "secret"),
        ("s3://bucket/lake", {"endpoint": "http://127.0.0.1:1"}, "endpoint"),
        ("s3://bucket/lake", {"client_kwargs": {"verify": False}}, "verify"),
        ("s3://bucket/lake", {"endpoint_url": "http://a", "client_kwargs": {"endpoint_url": "http://b"}},
         "endpoint_url"),
        ("s3://bucket/lake", {"profile": "default"}, "profile"),
        ("gs://bucket/lake", {"anon": True}, "anon"),
        ("gs://bucket/lake", {"requester_pays": True}, "requester_pays"),
        ("gs://bucket/lake", {"key": "x"}, "key"),
    ],
)
def test_invalid_option_is_named(url: str, options: dict[str, Any], named: str) -> None:
    pytest.importorskip("s3fs" if url.startswith("s3") else "gcsfs")
    with pytest.raises(StorageError, match=repr(named)):
        open_location(url, options)


def test_s3_environment_endpoint_allows_http(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    options = delta_storage_options(open_location("s3://bucket/lake", {"key": "AK", "secret": "SK"}))
    assert options["AWS_ALLOW_HTTP"] == "true"


def test_s3_lake_from_environment_credentials(s3_server: Any, monkeypatch: pytest.MonkeyPatch,
                                              sample_dir: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    url = f"s3://{s3_server.new_bucket()}/lake"
    lake = bl.Datalake(url, storage_options={"skip_instance_cache": True})
    report = lake.ingest(sample_dir / "Testing" / "pituitary", source="pituitary", progress=False)
    assert report.added == lake.items().num_rows
    assert report.added > 0


def test_gcs_token_file_becomes_service_account(tmp_path: Path) -> None:
    gcsfs = pytest.importorskip("gcsfs")
    credentials = tmp_path / "account.json"
    credentials.write_text('{"type": "service_account", "gcs_base_url": "http://127.0.0.1:9"}')
    # Built by hand because gcsfs would read the file and ask Google for a token.
    location = Location("gs://bucket/lake", gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True),
                        "bucket/lake", "gs", {"token": str(credentials)})
    options = delta_storage_options(location)
    assert options["google_service_account"] == str(credentials)
    assert options["allow_http"] == "true"
    assert delta_table_uri(location, "catalog/items") == "gs://bucket/lake/catalog/items"


def test_s3_conditional_create_raises_plain_oserror(s3_server: Any) -> None:
    """s3fs reports an existing key as OSError, not FileExistsError; brainlake reads it as "already there"."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options())
    path = f"{s3_server.new_bucket()}/taken"
    fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(OSError) as raised:
        fs.pipe_file(path, b"second", mode="create")
    assert not isinstance(raised.value, FileExistsError)
    assert is_precondition_failure(raised.value)
    assert fs.cat_file(path) == b"first"


def _client_error(code: str, status: int) -> Exception:
    botocore_exceptions = pytest.importorskip("botocore.exceptions")
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore_exceptions.ClientError(response, "PutObject")


def _wrapped(cause: Exception) -> OSError:
    """Return an OSError raised from ``cause``, as s3fs wraps botocore errors."""
    try:
        raise OSError(5, str(cause)) from cause
    except OSError as error:
        return error


@pytest.mark.parametrize(
    ("make_error", "transient"),
    [
        (lambda: ConnectionResetError(104, "Connection reset by peer"), True),
        (lambda: TimeoutError("timed out"), True),
        (lambda: _wrapped(_client_error("SlowDown", 503)), True),
        (lambda: _wrapped(_client_error("InternalError", 500)), True),
        (lambda: _wrapped(_client_error("TooManyRequests", 429)), True),
        (lambda: _wrapped(_client_error("AccessDenied", 403)), False),
        (lambda: PermissionError("Forbidden"), False),
        (lambda: FileNotFoundError("missing"), False),
        (lambda: ValueError("bad argument"), False),
    ],
)
def test_transient_errors_are_classified(make_error: Any, transient: bool) -> None:
    assert is_transient(make_error()) is transient


def test_permanent_error_names_operation_and_url() -> None:
    def fail() -> None:
        raise PermissionError("Forbidden")

    with pytest.raises(StorageError, match=r"failed to write s3://bucket/key: PermissionError: Forbidden"):
        with_retries("write", "s3://bucket/key", fail)


_KNOWN_S3 = storage_module._S3_TRANSLATED | storage_module._S3_OBJECTS_ONLY | storage_module._S3_REJECTED
_KNOWN_GCS = storage_module._GCS_TRANSLATED | storage_module._GCS_OBJECTS_ONLY | storage_module._GCS_REJECTED


@settings(deadline=None)
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_unknown_option_is_rejected_by_name(key: str) -> None:
    pytest.importorskip("s3fs")
    pytest.importorskip("gcsfs")
    for url, known in (("s3://bucket/lake", _KNOWN_S3), ("gs://bucket/lake", _KNOWN_GCS)):
        if key in known:
            continue
        with pytest.raises(StorageError, match=repr(key)):
            open_location(url, {key: "value"})
