"""Dataset downloads against a local HTTP server that supports range requests, and the dataset registry."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import brainlake as bl
from brainlake import datasets
from brainlake.datasets import download, download_file


class _FileServer(ThreadingHTTPServer):
    """An HTTP server for the files of one folder on 127.0.0.1, recording Range headers and bytes sent."""

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = root
        self.range_headers: list[str | None] = []
        self.bytes_served = 0
        self.honour_range = True
        self.range_starts_at_zero = False
        self.cut_after: int | None = None
        self.lock = threading.Lock()

    def url(self, name: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/{name}"


class _RangeHandler(BaseHTTPRequestHandler):
    """A GET handler that sends the whole file (200), a ``bytes=N-`` range of it (206), or 416 past its end."""

    server: _FileServer

    def do_GET(self) -> None:
        requested = self.headers.get("Range")
        with self.server.lock:
            self.server.range_headers.append(requested)
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file() or path.parent != self.server.root:
            self.send_error(404, "not found")
            return
        data = path.read_bytes()

        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and self.server.honour_range:
            start = 0 if self.server.range_starts_at_zero else int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

        # Sending less than Content-Length and closing imitates a dropped connection.
        if self.server.cut_after is not None:
            body = body[: self.server.cut_after]
        # Counted before writing, because the client may finish reading and assert before this thread resumes.
        with self.server.lock:
            self.server.bytes_served += len(body)
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of access logs."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    file_server = _FileServer(root)
    # A short poll interval lets shutdown() return quickly at teardown.
    thread = threading.Thread(target=file_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield file_server
    file_server.shutdown()
    file_server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def served_zip(server: _FileServer, sample_dir: Path) -> bytes:
    """A small zip of sample images, served as ``/sample.zip``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image in sorted((sample_dir / "Training" / "glioma").glob("*.jpg"))[:3]:
            archive.write(image, f"Training/glioma/{image.name}")
    data = buffer.getvalue()
    (server.root / "sample.zip").write_bytes(data)
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fresh_download_verifies(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "cache" / "sample.zip"

    result = download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip),
                           size_bytes=len(served_zip), chunk_size=4096, progress=False)

    assert result == destination
    assert destination.read_bytes() == served_zip
    assert not destination.with_name("sample.zip.part").exists()
    assert server.range_headers == [None]
    assert server.bytes_served == len(served_zip)


def test_resume_fetches_only_rest(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    already = len(served_zip) // 3
    destination.with_name("sample.zip.part").write_bytes(served_zip[:already])

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), chunk_size=4096, progress=False)

    assert destination.read_bytes() == served_zip
    assert server.range_headers == [f"bytes={already}-"]
    assert server.bytes_served == len(served_zip) - already


def test_interrupted_download_resumes(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    partial = destination.with_name("sample.zip.part")
    server.cut_after = len(served_zip) // 2

    with pytest.raises(bl.StorageError, match="interrupted after .* call again to resume"):
        download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)
    assert partial.read_bytes() == served_zip[: len(served_zip) // 2]
    assert not destination.exists()

    server.cut_after = None
    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert destination.read_bytes() == served_zip
    assert server.range_headers == [None, f"bytes={len(served_zip) // 2}-"]
    assert server.bytes_served == len(served_zip)


def test_ignored_range_restarts_download(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    destination.with_name("sample.zip.part").write_bytes(b"x" * 100)
    server.honour_range = False

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert destination.read_bytes() == served_zip
    assert server.range_headers == ["bytes=100-"]


def test_other_range_restarts_download(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    destination.with_name("sample.zip.part").write_bytes(served_zip[:100])
    server.range_starts_at_zero = True

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert destination.read_bytes() == served_zip
    assert server.range_headers == ["bytes=100-", None]


def test_complete_part_file_needs_no_bytes(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    destination.with_name("sample.zip.part").write_bytes(served_zip)

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert destination.read_bytes() == served_zip
    assert server.range_headers == [f"bytes={len(served_zip)}-"]
    assert server.bytes_served == 0


def test_wrong_checksum_leaves_no_file(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    wrong = "0" * 64

    with pytest.raises(bl.StorageError, match=f"expected sha256 {wrong}, got {_sha256(served_zip)}"):
        download_file(server.url("sample.zip"), destination, sha256=wrong, progress=False)

    assert not destination.exists()
    assert not destination.with_name("sample.zip.part").exists()


@pytest.mark.parametrize("difference", [-1, 10])
def test_wrong_size_leaves_no_file(tmp_path: Path, server: _FileServer, served_zip: bytes, difference: int) -> None:
    destination = tmp_path / "sample.zip"
    expected = len(served_zip) + difference

    with pytest.raises(bl.StorageError, match=f"expected {expected} bytes"):
        download_file(server.url("sample.zip"), destination, size_bytes=expected, chunk_size=1024, progress=False)

    assert not destination.exists()
    assert not destination.with_name("sample.zip.part").exists()


def test_existing_good_file_not_downloaded(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)
    modified = destination.stat().st_mtime_ns

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert server.range_headers == [None]
    assert server.bytes_served == len(served_zip)
    assert destination.stat().st_mtime_ns == modified


def test_existing_bad_file_replaced(tmp_path: Path, server: _FileServer, served_zip: bytes) -> None:
    destination = tmp_path / "sample.zip"
    destination.write_bytes(b"an older, different file")

    download_file(server.url("sample.zip"), destination, sha256=_sha256(served_zip), progress=False)

    assert destination.read_bytes() == served_zip
    assert server.bytes_served == len(served_zip)


def test_http_error_names_url(tmp_path: Path, server: _FileServer) -> None:
    url = server.url("missing.zip")
    with pytest.raises(bl.StorageError, match=re.escape(f"download of {url!r} failed: HTTP 404")):
        download_file(url, tmp_path / "missing.zip", progress=False)
    assert not (tmp_path / "missing.zip.part").exists()


def test_refused_connection_names_url(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/sample.zip"

    with pytest.raises(bl.StorageError, match=re.escape(f"cannot connect to {url!r}")):
        download_file(url, tmp_path / "sample.zip", timeout=5, progress=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": "ftp://127.0.0.1/sample.zip"}, "url must start with http"),
        ({"sha256": "abc"}, "sha256 must be 64 hexadecimal digits, got 'abc'"),
        ({"size_bytes": -1}, "size_bytes must be a non-negative"),
        ({"chunk_size": 0}, "chunk_size must be a positive"),
        ({"timeout": 0}, "timeout must be a positive"),
    ],
)
def test_download_argument_errors(tmp_path: Path, arguments: dict[str, object], message: str) -> None:
    url = arguments.pop("url", "http://127.0.0.1:9/sample.zip")
    with pytest.raises(bl.IngestError, match=message):
        download_file(str(url), tmp_path / "sample.zip", **arguments)  # type: ignore[arg-type]


def test_registry_entries_are_complete() -> None:
    names = datasets.list_datasets()

    assert names == sorted(names)
    assert {"figshare-brain-tumor", "kaggle-brain-tumor-mri"} <= set(names)
    for name in names:
        entry = datasets.get_dataset(name)
        assert entry.name == name
        assert entry.url.startswith("https://")
        assert entry.filename.endswith(".zip")
        assert entry.licence
        assert entry.citation
        assert entry.description


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(bl.UnknownDatasetError, match="unknown dataset 'brats'.*figshare-brain-tumor"):
        datasets.get_dataset("brats")


@pytest.mark.parametrize("name", ["figshare-brain-tumor", "kaggle-brain-tumor-mri"])
def test_download_without_checksum_needs_verify_false(
    tmp_path: Path, server: _FileServer, served_zip: bytes, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    entry = datasets.get_dataset(name)
    assert entry.sha256 is None
    monkeypatch.setitem(datasets._REGISTRY, name, dataclasses.replace(entry, url=server.url("sample.zip")))

    with pytest.raises(bl.IngestError, match="no recorded SHA-256 checksum.*pass verify=False"):
        download(name, cache=tmp_path / "cache")
    assert server.range_headers == []

    path = download(name, cache=tmp_path / "cache", verify=False, progress=False)

    assert path == tmp_path / "cache" / entry.filename
    assert path.read_bytes() == served_zip


def test_download_verified_into_cache_dir(
    tmp_path: Path, server: _FileServer, served_zip: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dataclasses.replace(datasets.get_dataset("kaggle-brain-tumor-mri"), url=server.url("sample.zip"),
                                sha256=_sha256(served_zip), size_bytes=len(served_zip))
    monkeypatch.setitem(datasets._REGISTRY, entry.name, entry)
    monkeypatch.setenv("BRAINLAKE_CACHE", str(tmp_path / "brainlake-cache"))

    path = download(entry.name, progress=False)
    again = download(entry.name, progress=False)

    assert datasets.cache_dir() == tmp_path / "brainlake-cache"
    assert path == again == tmp_path / "brainlake-cache" / "datasets" / entry.filename
    assert path.read_bytes() == served_zip
    assert server.range_headers == [None]
