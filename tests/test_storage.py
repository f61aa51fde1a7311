"""The object store and the translation of storage options for the catalog."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from brainlake.exceptions import StorageError
from brainlake.storage import ObjectStore, delta_storage_options, delta_table_uri, open_location


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
    location = open_location("s3://bucket/lake", {"requester_pays": True})
    with pytest.raises(StorageError, match="requester_pays"):
        delta_storage_options(location)
