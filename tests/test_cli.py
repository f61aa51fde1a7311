"""The ``brainlake`` command, run in subprocesses as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import brainlake as bl


def run_cli(*arguments: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "brainlake", *map(str, arguments)],
        capture_output=True, text=True, timeout=300, env=environment, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def cli_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("cli") / "lake"
    run_cli("ingest", bl.datasets.sample_path(), "--lake", lake, "--source", "sample", "--split-from", "grandparent")
    return lake


def test_version_flag() -> None:
    assert run_cli("--version").stdout.strip() == f"brainlake {bl.__version__}"


def test_ingest_json_report(cli_lake: Path) -> None:
    result = run_cli("ingest", bl.datasets.sample_path(), "--lake", cli_lake, "--source", "sample",
                     "--split-from", "grandparent", "--json")
    report = json.loads(result.stdout)
    assert report["added"] == 0
    assert report["already_present"] == 56


def test_items_filter(cli_lake: Path) -> None:
    result = run_cli("items", "--lake", cli_lake, "--where", "label=glioma", "--limit", "0", "--json")
    payload = json.loads(result.stdout)
    assert payload["total"] == 13
    assert {row["label"] for row in payload["items"]} == {"glioma"}


def test_duplicates_summary(cli_lake: Path) -> None:
    result = run_cli("duplicates", "--lake", cli_lake)
    assert "3 groups of identical bytes, 4 extra copies, 2 groups spanning source splits" in result.stdout


def test_mart_build_train_and_history(cli_lake: Path) -> None:
    built = json.loads(run_cli("mart", "build", "tiny", "--lake", cli_lake, "--where", "source=sample",
                               "--from-source", "--size", "32", "--json").stdout)
    assert built["leakage"]["sha256_in_two_splits"] == 0
    trained = json.loads(run_cli("train", "--lake", cli_lake, "--mart", "tiny", "--model", "cnn1",
                                 "--epochs", "1", "--batch-size", "8", "--json").stdout)
    assert trained["evaluation"]["num_samples"] == sum(built["counts"]["test"].values())
    runs = json.loads(run_cli("runs", "--lake", cli_lake, "--json").stdout)
    assert [record["run_id"] for record in runs] == [trained["run_id"]]
    assert runs[0]["mart"]["recipe_hash"] == built["recipe_hash"]
    verified = json.loads(run_cli("verify", "--lake", cli_lake, "--json").stdout)
    assert verified["ok"] is True
    assert verified["orphaned"] == []
    kinds = [event["kind"] for event in json.loads(run_cli("history", "--lake", cli_lake, "--json").stdout)]
    assert kinds.count("ingest") >= 1
    assert "mart_build" in kinds
    assert "run" in kinds


def test_verify_ok(cli_lake: Path) -> None:
    assert run_cli("verify", "--lake", cli_lake).stdout.startswith("ok:")


def test_missing_lake_exits_1(tmp_path: Path) -> None:
    result = run_cli("items", "--lake", tmp_path / "absent", check=False)
    assert result.returncode == 1
    assert "no lake" in result.stderr


def test_missing_source_creates_no_lake(tmp_path: Path) -> None:
    result = run_cli("ingest", tmp_path / "typo", "--lake", tmp_path / "lake", "--source", "s", check=False)
    assert result.returncode == 1
    assert "typo" in result.stderr
    assert not (tmp_path / "lake").exists()


def test_unmatched_filter_lists_known_values(cli_lake: Path) -> None:
    result = run_cli("items", "--lake", cli_lake, "--where", "label=gliomaa")
    assert "label has the values: glioma, meningioma, notumor, pituitary" in result.stdout


def test_usage_error_exits_2() -> None:
    result = run_cli("ingest", check=False)
    assert result.returncode == 2


def test_help_has_example() -> None:
    assert "example:" in run_cli("mart", "build", "--help").stdout


def test_repeated_runs_exit_cleanly(cli_lake: Path) -> None:
    # Catalog scans in a process that had loaded torch once made about one exit
    # in three abort. "mart build" of a built recipe loads torch and scans too.
    run_cli("mart", "build", "exit-check", "--lake", cli_lake, "--size", "16", "--quiet")
    commands = [
        ("items", "--lake", cli_lake, "--limit", "1"),
        ("mart", "build", "exit-check", "--lake", cli_lake, "--size", "16", "--quiet"),
    ]
    codes = [run_cli(*commands[index % 2], check=False).returncode for index in range(12)]
    assert codes == [0] * 12


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run_cli("demo", "--lake", tmp_path / "demo", "--epochs", "1", "--json")
    payload = json.loads(result.stdout)
    assert payload["ingest"]["added"] == 56
    assert payload["duplicate_groups"] == 3
    assert len(payload["mart"]["leakage"]["dropped"]) == 2
    assert 0.0 <= payload["evaluation"]["accuracy"] <= 1.0


def test_bad_max_distance_is_a_usage_error(cli_lake: Path) -> None:
    result = run_cli("duplicates", "--lake", cli_lake, "--max-distance", "65", check=False)
    assert result.returncode == 2
    assert "0 to 64" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_reader_creates_no_lake(tmp_path: Path) -> None:
    result = run_cli("ingest", bl.datasets.sample_path(), "--lake", tmp_path / "lake", "--source", "s",
                     "--reader", "pacs", check=False)
    assert result.returncode == 1
    assert "folder" in result.stderr
    assert not (tmp_path / "lake").exists()
