"""Session fixtures that run real S3 and GCS servers on 127.0.0.1 for the remote-lake tests.

- ``s3_server``: SeaweedFS with a test key pair.
- ``gcs_server``: fake-gcs-server for objects (gcsfs uses its JSON API),
  plus an anonymous SeaweedFS in place of the GCS XML API that the Delta
  catalog (delta-rs) uses. No GCS emulator installable here serves that API.
  The stand-in ignores GCS preconditions, so it checks that the catalog's
  options reach delta-rs and that a single writer works, not concurrent
  writers on GCS.

Servers start on first use and stop, with their temporary folders removed,
when the session ends, whatever happened.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# gcsfs reads this when it is imported; without it every call probes for
# hierarchical namespaces and stalls for about a minute against fake-gcs-server.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _servers import FakeGCS, SeaweedS3, write_service_account  # noqa: E402


class S3Server:
    """A running SeaweedFS S3 server.

    Attributes:
        endpoint_url: ``http://127.0.0.1:<port>``.
        key: The access key id it accepts.
        secret: The matching secret access key.
    """

    def __init__(self, server: SeaweedS3) -> None:
        self._server = server
        self.endpoint_url = server.endpoint_url
        self.key = server.key
        self.secret = server.secret

    def storage_options(self) -> dict[str, Any]:
        """Return s3fs options (``key``, ``secret``, ``endpoint_url``) for a lake on this server."""
        return self._server.storage_options()

    def new_bucket(self) -> str:
        """Create a bucket with a fresh name and return the name."""
        return self._server.new_bucket()


class GCSServer:
    """A running fake-gcs-server plus the S3 stand-in that serves the catalog's XML API calls.

    Attributes:
        endpoint_url: The fake-gcs-server JSON API endpoint, for gcsfs.
        catalog_endpoint_url: The stand-in endpoint, named in ``credentials_file``.
        credentials_file: The service-account file delta-rs reads through
            ``GOOGLE_APPLICATION_CREDENTIALS``, which this fixture sets for the session.
    """

    def __init__(self, objects: FakeGCS, catalog: SeaweedS3, credentials_file: Path) -> None:
        self._objects = objects
        self._catalog = catalog
        self.endpoint_url = objects.endpoint_url
        self.catalog_endpoint_url = catalog.endpoint_url
        self.credentials_file = credentials_file

    def storage_options(self) -> dict[str, Any]:
        """Return gcsfs options (anonymous ``token``, ``endpoint_url``, ``project``) for a lake here."""
        return {"token": "anon", "endpoint_url": self.endpoint_url, "project": "brainlake-test"}

    def new_bucket(self) -> str:
        """Create a bucket with a fresh name on both servers and return the name."""
        import gcsfs

        name = self._catalog.new_bucket()
        gcsfs.GCSFileSystem(skip_instance_cache=True, **self.storage_options()).mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session."""
    pytest.importorskip("s3fs")
    with SeaweedS3() as server:
        server.start()
        yield S3Server(server)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    """fake-gcs-server and its catalog stand-in for the whole session.

    Sets ``GOOGLE_APPLICATION_CREDENTIALS`` to the stand-in's service-account
    file until the session ends, because that is how the catalog of a
    ``gs://`` lake with ``token="anon"`` finds its credentials.
    """
    pytest.importorskip("gcsfs")
    pytest.importorskip("cryptography")
    with FakeGCS() as objects, SeaweedS3(anonymous=True) as catalog, pytest.MonkeyPatch.context() as patch:
        objects.start()
        catalog.start()
        credentials = write_service_account(catalog.folder / "service-account.json", catalog.endpoint_url)
        patch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
        yield GCSServer(objects, catalog, credentials)
