"""Shared fixtures: the shipped sample, the shared real data, and lakes built from them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import brainlake as bl

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path | None:
    """Return the real data set (``$BRAINLAKE_DATA`` or ``../shared/data``), or ``None``."""
    configured = os.environ.get("BRAINLAKE_DATA")
    candidates = [Path(configured)] if configured else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "brain-tumor-mri")
    for candidate in candidates:
        if (candidate / "Training").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return bl.datasets.sample_path()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = shared_data_path()
    if path is None:
        pytest.skip("the shared real data set is not here; set BRAINLAKE_DATA to its folder")
    return path


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> bl.Datalake:
    """A lake holding the shipped sample; tests must not change it."""
    lake = bl.Datalake(tmp_path_factory.mktemp("sample") / "lake")
    lake.ingest(sample_dir, source="sample", label_from="parent", split_from="grandparent", progress=False)
    return lake


@pytest.fixture(scope="session")
def real_lake(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path) -> Iterator[bl.Datalake]:
    lake = bl.Datalake(tmp_path_factory.mktemp("real") / "lake")
    lake.ingest(real_data_dir, source="kaggle-brain-mri", label_from="parent", split_from="grandparent",
                progress=False)
    yield lake


# Real S3 and GCS servers on 127.0.0.1 (fixtures s3_server and gcs_server).
pytest_plugins = ["servers"]
