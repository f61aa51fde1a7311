"""The whole flow on the shared real data set: counts, leakage, and every model training.

These tests are skipped when the data set is absent (see ``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import brainlake as bl


@pytest.fixture(scope="module")
def real_mart(real_lake: bl.Datalake) -> bl.BuiltMart:
    return (
        real_lake.mart("kaggle-32")
        .where(source="kaggle-brain-mri")
        .split(from_source=True, val_fraction=0.15, seed=0)
        .preprocess(size=32, channels=1)
        .build(progress=False)
    )


def test_real_data_counts(real_lake: bl.Datalake) -> None:
    items = real_lake.items(["sha256", "source_split"])
    groups = real_lake.duplicates()
    assert items.num_rows == 1527
    assert items.column("source_split").to_pylist().count("train") == 1214
    assert len(set(items.column("sha256").to_pylist())) == 1481
    assert len(groups) == 36
    assert sum(group.extra_copies for group in groups) == 46
    assert sum(group.spans_splits for group in groups) == 28


def test_real_data_reingest_adds_nothing(real_lake: bl.Datalake, real_data_dir: Path) -> None:
    report = real_lake.ingest(real_data_dir, source="kaggle-brain-mri", split_from="grandparent", progress=False)
    assert report.added == 0
    assert report.already_present == 1527
    assert report.failed == []


def test_real_mart_drops_leaked_test_copies(real_mart: bl.BuiltMart) -> None:
    counts = {split: sum(per_class.values()) for split, per_class in real_mart.counts.items()}
    leakage = real_mart.leakage
    assert leakage["groups_crossing_source_splits"] == 28
    assert len(leakage["dropped"]) == 31
    assert {entry["from_split"] for entry in leakage["dropped"]} == {"test"}
    assert leakage["sha256_in_two_splits"] == 0
    assert counts["train"] + counts["val"] == 1214
    assert counts["test"] == 313 - 31


def test_real_mart_splits_share_no_bytes(real_mart: bl.BuiltMart) -> None:
    digests = {split: {row["sha256"] for row in real_mart.items(split)} for split in real_mart.splits}
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    assert not digests["train"] & digests["val"]


@pytest.mark.parametrize("name", bl.list_models())
def test_every_model_trains_on_real_mart(real_mart: bl.BuiltMart, name: str) -> None:
    torch.manual_seed(0)
    model = bl.create_model(name, num_classes=len(real_mart.classes), in_channels=1)
    trainer = bl.Trainer(model, device="cpu", max_epochs=1, seed=0, class_names=real_mart.classes, progress=False)
    history = trainer.fit(real_mart.loader("train", batch_size=64, shuffle=True), real_mart.loader("val", batch_size=256))
    evaluation = trainer.evaluate(real_mart.loader("test", batch_size=256))
    assert len(history) == 1
    assert history[0]["train_loss"] is not None
    assert evaluation.num_samples == 282
    assert 0.0 <= evaluation.accuracy <= 1.0


def test_real_near_duplicates_contain_exact_groups(real_lake: bl.Datalake) -> None:
    exact = {frozenset(group.item_ids) for group in real_lake.duplicates()}
    near = real_lake.duplicates(near=True, max_distance=4)
    near_sets = [frozenset(group.item_ids) for group in near]
    assert all(any(members <= group for group in near_sets) for members in exact)
    assert sum(not group.exact for group in near) > 36
