"""Whole lakes on S3 (SeaweedFS) and GCS (fake-gcs-server) on 127.0.0.1: the flow, marts, concurrent writers."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import brainlake as bl
from brainlake.runs import list_runs, record_run


def _remote_lake(request: pytest.FixtureRequest, backend: str) -> tuple[str, dict[str, Any]]:
    server = request.getfixturevalue("s3_server" if backend == "s3" else "gcs_server")
    return f"{backend}://{server.new_bucket()}/lake", server.storage_options()


def _mart_arrays(mart: bl.BuiltMart) -> dict[str, np.ndarray]:
    return {split: np.stack([mart.dataset(split, normalize=False)[index][0].numpy()
                             for index in range(len(mart.dataset(split)))])
            for split in mart.splits}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["s3", "gs"])
def test_real_data_flow_on_remote_lake(backend: str, request: pytest.FixtureRequest, real_data_dir: Path,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINLAKE_CACHE", str(tmp_path / "cache"))
    url, options = _remote_lake(request, backend)
    started = time.perf_counter()

    lake = bl.Datalake(url, storage_options=options)
    report = lake.ingest(real_data_dir, source="kaggle-brain-mri", label_from="parent",
                         split_from="grandparent", progress=False)
    items = lake.items(["sha256"])
    groups = lake.duplicates()
    assert report.added == 1527
    assert items.num_rows == 1527
    assert len(set(items.column("sha256").to_pylist())) == 1481
    assert len(groups) == 36

    mart = (lake.mart("kaggle-32").where(source="kaggle-brain-mri")
            .split(from_source=True, val_fraction=0.15, seed=0)
            .preprocess(size=32, channels=1).build(progress=False))
    counts = {split: sum(per_class.values()) for split, per_class in mart.counts.items()}
    assert counts == {"train": 1032, "val": 182, "test": 282}
    assert len(mart.leakage["dropped"]) == 31
    remote_folder = lake.location.path("marts", "kaggle-32", mart.recipe_hash, "manifest.json")
    assert lake.location.fs.exists(remote_folder)

    torch.manual_seed(0)
    model = bl.create_model("fc", num_classes=len(mart.classes), in_channels=1)
    trainer = bl.Trainer(model, device="cpu", max_epochs=1, seed=0, class_names=mart.classes, progress=False)
    history = trainer.fit(mart.loader("train", batch_size=128, shuffle=True), mart.loader("val", batch_size=256))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=256))
    record = record_run(lake, model="fc", hyperparameters={"epochs": 1, "size": 32},
                        mart={"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version},
                        history=[dict(row) for row in history], evaluation=evaluation.to_dict())
    assert [run.run_id for run in list_runs(bl.Datalake.open(url, storage_options=options))] == [record.run_id]

    kinds = lake.history().column("kind").to_pylist()
    assert kinds == ["ingest", "mart_build", "run"]
    assert lake.verify().ok
    elapsed = time.perf_counter() - started
    print(f"{backend}: real-data flow took {elapsed:.1f} s")


@pytest.mark.parametrize("backend", ["s3", "gs"])
def test_remote_mart_reopens_on_another_machine(backend: str, request: pytest.FixtureRequest, sample_dir: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, options = _remote_lake(request, backend)
    monkeypatch.setenv("BRAINLAKE_CACHE", str(tmp_path / "first"))
    lake = bl.Datalake(url, storage_options=options)
    lake.ingest(sample_dir, source="sample", split_from="grandparent", progress=False)
    built = lake.mart("sample-16").split(from_source=True, val_fraction=0.2, seed=0).preprocess(size=16).build(
        progress=False)
    assert built.path.is_relative_to(tmp_path / "first")

    monkeypatch.setenv("BRAINLAKE_CACHE", str(tmp_path / "second"))
    reopened = bl.Datalake.open(url, storage_options=options).open_mart("sample-16")
    assert reopened.path.is_relative_to(tmp_path / "second")
    assert reopened.recipe_hash == built.recipe_hash
    first, second = _mart_arrays(built), _mart_arrays(reopened)
    assert first.keys() == second.keys()
    for split in first:
        assert np.array_equal(first[split], second[split])


def _ingest_after_barrier(url: str, options: dict[str, Any], folder: str, source: str, barrier: Any) -> int:
    lake = bl.Datalake.open(url, storage_options=options)
    barrier.wait()
    return lake.ingest(folder, source=source, split_from="grandparent", progress=False).added


def test_concurrent_ingests_into_s3_lose_nothing(s3_server: Any, sample_dir: Path) -> None:
    options = s3_server.storage_options()
    halves = [(str(sample_dir / "Training"), "training-half"), (str(sample_dir / "Testing"), "testing-half")]
    expected = {source: sum(1 for _ in Path(folder).rglob("*.jpg")) for folder, source in halves}
    bucket = s3_server.new_bucket()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        for attempt in range(5):
            url = f"s3://{bucket}/lake-{attempt}"
            bl.Datalake(url, storage_options=options)
            # The barrier makes both workers start ingesting at the same moment.
            barrier = manager.Barrier(2)
            added = pool.starmap(_ingest_after_barrier,
                                 [(url, options, folder, source, barrier) for folder, source in halves])

            lake = bl.Datalake.open(url, storage_options=options)
            sources = lake.items(["source"]).column("source").to_pylist()
            assert added == [expected["training-half"], expected["testing-half"]]
            assert {source: sources.count(source) for source in expected} == expected
            assert lake.history().column("kind").to_pylist() == ["ingest", "ingest"]
            assert lake.version == 2
