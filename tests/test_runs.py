"""Tests for run records: model cards, reports, and the items a run trained and was tested on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import brainlake as bl
from brainlake.runs import RUN_ITEM_COLUMNS, record_run, run_items
from brainlake.training import Trainer, write_report

MART = "runs-32"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> bl.Datalake:
    lake = bl.Datalake(tmp_path_factory.mktemp("runs") / "lake")
    lake.ingest(sample_dir, source="sample", label_from="parent", split_from="grandparent", progress=False)
    return lake


@pytest.fixture(scope="module")
def mart(lake: bl.Datalake) -> bl.BuiltMart:
    return (
        lake.mart(MART)
        .split(from_source=True, val_fraction=0.2, seed=0)
        .preprocess(size=32)
        .build(progress=False)
    )


@pytest.fixture(scope="module")
def trained(mart: bl.BuiltMart, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real epoch of cnn1 on the mart, with its checkpoint and report."""
    folder = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    model = bl.create_model("cnn1", num_classes=len(mart.classes))
    trainer = Trainer(model, device="cpu", max_epochs=1, class_names=mart.classes,
                      checkpoint_dir=folder / "checkpoints", progress=False)
    trainer.fit(mart.loader("train", batch_size=8, shuffle=True), mart.loader("val", batch_size=8))
    evaluation = trainer.evaluate(mart.loader("test", batch_size=8))
    write_report(folder / "report", history=trainer.history, evaluation=evaluation)
    return {"trainer": trainer, "evaluation": evaluation, "folder": folder}


def mart_description(mart: bl.BuiltMart) -> dict[str, Any]:
    return {"name": mart.name, "recipe_hash": mart.recipe_hash, "lake_version": mart.lake_version}


@pytest.fixture(scope="module")
def record(lake: bl.Datalake, mart: bl.BuiltMart, trained: dict[str, Any]) -> bl.RunRecord:
    trainer: Trainer = trained["trainer"]
    return record_run(
        lake,
        model="cnn1",
        hyperparameters={**trainer.hyperparameters, "batch_size": 8},
        mart=mart_description(mart),
        history=trainer.history,
        evaluation=trained["evaluation"].to_dict(),
        checkpoint=trained["folder"] / "checkpoints" / "best.pt",
        report=trained["folder"] / "report",
    )


def test_run_stores_model_card(lake: bl.Datalake, record: bl.RunRecord) -> None:
    stored = bl.load_run(lake, record.run_id)
    card = bl.model_card("cnn1")

    assert stored.model_card["name"] == "cnn1"
    assert stored.model_card["description"] == card.description
    assert stored.model_card["num_parameters"] == card.num_parameters
    assert stored.model_card["default_input_size"] == list(card.default_input_size)
    assert stored.model_card["reference"] == card.reference


def test_run_stores_settings_metrics_and_versions(
    lake: bl.Datalake, mart: bl.BuiltMart, record: bl.RunRecord, trained: dict[str, Any]
) -> None:
    stored = bl.load_run(lake, record.run_id)
    trainer: Trainer = trained["trainer"]

    assert stored.hyperparameters == {**trainer.hyperparameters, "batch_size": 8}
    for key in ("learning_rate", "weight_decay", "schedule", "seed", "precision", "device", "world_size"):
        assert key in stored.hyperparameters
    assert stored.mart == mart_description(mart)
    assert stored.history == trainer.history
    assert stored.evaluation == trained["evaluation"].to_dict()
    assert stored.versions["brainlake"] == bl.__version__
    assert stored.versions["torch"] == torch.__version__


def test_run_stores_checkpoint_object(lake: bl.Datalake, record: bl.RunRecord, trained: dict[str, Any]) -> None:
    assert record.checkpoint_sha256 is not None
    stored_bytes = lake.read_object(record.checkpoint_sha256)
    assert stored_bytes == (trained["folder"] / "checkpoints" / "best.pt").read_bytes()


def test_run_stores_report_files(lake: bl.Datalake, record: bl.RunRecord, trained: dict[str, Any]) -> None:
    assert sorted(record.report_files) == [
        "report/confusion_matrix.png", "report/report.json", "report/training_curves.png",
    ]
    run_folder = Path(lake.location.path("runs", record.run_id))
    for name in record.report_files:
        original = trained["folder"] / name
        assert (run_folder / name).read_bytes() == original.read_bytes()


def test_run_items_match_mart_splits(lake: bl.Datalake, mart: bl.BuiltMart, record: bl.RunRecord) -> None:
    table = run_items(lake, record.run_id)

    assert tuple(table.column_names) == RUN_ITEM_COLUMNS
    rows = table.to_pylist()
    for split in mart.splits:
        expected = mart.items(split)
        got = [row for row in rows if row["split"] == split]
        assert [row["item_id"] for row in got] == [item["item_id"] for item in expected]
        assert [row["label"] for row in got] == [item["label"] for item in expected]
        assert len(got) == sum(mart.counts[split].values())
    assert len({row["item_id"] for row in rows}) == len(rows)


def test_run_items_agree_with_catalog(lake: bl.Datalake, mart: bl.BuiltMart, record: bl.RunRecord) -> None:
    rows = run_items(lake, record.run_id).to_pylist()
    catalog = {
        row["item_id"]: row
        for row in lake.items(["item_id", "sha256", "source_path"], version=mart.lake_version).to_pylist()
    }

    for row in rows:
        assert row["sha256"] == catalog[row["item_id"]]["sha256"]
        assert row["source_path"] == catalog[row["item_id"]]["source_path"]


def test_run_items_of_one_split(lake: bl.Datalake, mart: bl.BuiltMart, record: bl.RunRecord) -> None:
    table = run_items(lake, record.run_id, split="test")

    assert set(table.column("split").to_pylist()) == {"test"}
    assert table.num_rows == sum(mart.counts["test"].values())


def test_run_items_unknown_run_raises(lake: bl.Datalake) -> None:
    with pytest.raises(bl.LakeError, match="no run 'missing-run'"):
        run_items(lake, "missing-run")


def test_run_items_stay_pinned_after_ingest(
    tmp_path: Path, sample_dir: Path, mart: bl.BuiltMart, trained: dict[str, Any]
) -> None:
    lake = bl.Datalake(tmp_path / "lake")
    lake.ingest(sample_dir, source="sample", label_from="parent", split_from="grandparent", progress=False)
    pinned = lake.mart(MART).split(from_source=True, val_fraction=0.2, seed=0).preprocess(size=32).build(progress=False)
    recorded = record_run(lake, model="cnn1", hyperparameters={}, mart=mart_description(pinned),
                          history=trained["trainer"].history, evaluation=trained["evaluation"].to_dict())
    before = run_items(lake, recorded.run_id)

    extra = tmp_path / "extra" / "Training" / "glioma"
    extra.mkdir(parents=True)
    first_glioma = sorted((sample_dir / "Training" / "glioma").iterdir())[0]
    shutil.copy(first_glioma, extra / "copy.jpg")
    lake.ingest(tmp_path / "extra", source="extra", label_from="parent", split_from="grandparent", progress=False)
    assert lake.version > pinned.lake_version

    assert run_items(lake, recorded.run_id).equals(before)


def test_old_run_record_without_card_loads(lake: bl.Datalake, record: bl.RunRecord) -> None:
    path = Path(lake.location.path("runs", record.run_id, "run.json"))
    values = json.loads(path.read_text())
    old_id = "0" * 32
    old_folder = path.parent.parent / old_id
    old_folder.mkdir()
    old_values = {key: value for key, value in values.items() if key not in ("model_card", "report_files")}
    (old_folder / "run.json").write_text(json.dumps({**old_values, "run_id": old_id}))

    loaded = bl.load_run(lake, old_id)

    assert loaded.model_card == {}
    assert loaded.report_files == []
    shutil.rmtree(old_folder)


def run_cli(*arguments: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brainlake", *map(str, arguments)],
                          capture_output=True, text=True, timeout=300)


def test_cli_runs_show_prints_record(lake: bl.Datalake, record: bl.RunRecord) -> None:
    completed = run_cli("runs", "show", record.run_id, "--lake", lake.url, "--json")

    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    assert printed["run_id"] == record.run_id
    assert printed["model_card"]["name"] == "cnn1"
    assert printed["mart"]["recipe_hash"] == record.mart["recipe_hash"]
    assert "items" not in printed


def test_cli_runs_show_lists_items(lake: bl.Datalake, mart: bl.BuiltMart, record: bl.RunRecord) -> None:
    as_json = run_cli("runs", "--lake", lake.url, "show", record.run_id, "--items", "--json")
    as_text = run_cli("runs", "show", record.run_id, "--lake", lake.url, "--items")

    assert as_json.returncode == 0, as_json.stderr
    items = json.loads(as_json.stdout)["items"]
    total = sum(sum(counts.values()) for counts in mart.counts.values())
    assert len(items) == total
    assert as_text.returncode == 0, as_text.stderr
    assert f"({total} items)" in as_text.stdout
    assert f"mart: {MART}, recipe {mart.recipe_hash}" in as_text.stdout


def test_cli_runs_show_unknown_run_fails(lake: bl.Datalake) -> None:
    completed = run_cli("runs", "show", "no-such-run", "--lake", lake.url)

    assert completed.returncode == 1
    assert "no run 'no-such-run'" in completed.stderr


def test_cli_runs_needs_lake() -> None:
    completed = run_cli("runs")

    assert completed.returncode == 1
    assert "--lake is required" in completed.stderr


def test_cli_train_report_stored_with_run(tmp_path: Path, lake: bl.Datalake, mart: bl.BuiltMart) -> None:
    report = tmp_path / "report"
    completed = run_cli("train", "--lake", lake.url, "--mart", MART, "--model", "cnn1", "--epochs", "1",
                        "--batch-size", "8", "--device", "cpu", "--report", report, "--json")

    assert completed.returncode == 0, completed.stderr
    run_id = json.loads(completed.stdout)["run_id"]
    assert sorted(path.name for path in report.iterdir()) == [
        "confusion_matrix.png", "report.json", "training_curves.png",
    ]
    stored = bl.load_run(lake, run_id)
    run_folder = Path(lake.location.path("runs", run_id))
    for name in stored.report_files:
        assert (run_folder / name).read_bytes() == (report / Path(name).name).read_bytes()
    figures = json.loads((report / "report.json").read_text())["figures"]
    assert figures["confusion_matrix"]["matrix"] == stored.evaluation["confusion_matrix"]
    assert stored.hyperparameters["batch_size"] == 8
