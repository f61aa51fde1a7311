"""The ``brainlake`` command, run in subprocesses as a user would run it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
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


def test_fifty_runs_exit_cleanly(cli_lake: Path) -> None:
    # Catalog scans in a process that had loaded torch once made about one exit
    # in three abort ("terminate called without an active exception", exit
    # 134). "mart build" of a built recipe loads torch and scans too.
    run_cli("mart", "build", "exit-check", "--lake", cli_lake, "--size", "16", "--quiet")
    commands = [
        ("items", "--lake", cli_lake, "--limit", "1"),
        ("items", "--lake", cli_lake, "--where", "label=glioma", "--json", "--read-only"),
        ("history", "--lake", cli_lake),
        ("history", "--lake", cli_lake, "--json"),
        ("duplicates", "--lake", cli_lake, "--json"),
        ("duplicates", "--lake", cli_lake, "--near"),
        ("verify", "--lake", cli_lake),
        ("verify", "--lake", cli_lake, "--json", "--read-only"),
        ("vacuum", "--lake", cli_lake, "--dry-run", "--json"),
        ("mart", "build", "exit-check", "--lake", cli_lake, "--size", "16", "--quiet"),
    ]
    runs = [commands[index % len(commands)] for index in range(50)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda arguments: run_cli(*arguments, check=False), runs))
    elapsed = time.perf_counter() - started

    failures = [(arguments[0], result.returncode, result.stderr[-300:])
                for arguments, result in zip(runs, results) if result.returncode != 0]
    print(f"50 CLI runs, 2 at a time: {elapsed:.1f} s")
    assert failures == []
    assert all("terminate called" not in result.stderr for result in results)


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


# Reliability and patient-data commands ------------------------------------------------


def _own_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    bl.Datalake(root).ingest(bl.datasets.sample_path(), source="sample", split_from="grandparent", progress=False)
    return root


def _object(root: Path, digest: str) -> Path:
    return root / "objects" / "sha256" / digest[:2] / digest[2:4] / digest


def test_verify_repair_from_backup(tmp_path: Path) -> None:
    root = _own_lake(tmp_path)
    backup = tmp_path / "backup"
    bl.Datalake(backup).ingest(bl.datasets.sample_path(), source="sample", split_from="grandparent", progress=False)
    digest = bl.Datalake.open(root).items(["sha256"]).column("sha256")[0].as_py()
    damaged = bytearray(_object(root, digest).read_bytes())
    damaged[random.Random(1).randrange(len(damaged))] ^= 0xFF
    _object(root, digest).write_bytes(bytes(damaged))

    found = run_cli("verify", "--lake", root, check=False)
    assert found.returncode == 1
    assert found.stdout.startswith("PROBLEMS FOUND")
    assert "corrupt: item " in found.stdout
    assert str(_object(root, digest)) in found.stdout

    refused = run_cli("verify", "--lake", root, "--repair-from", backup, "--read-only", check=False)
    assert refused.returncode == 1
    assert "--read-only" in refused.stderr

    repaired = json.loads(run_cli("verify", "--lake", root, "--repair-from", backup, "--json").stdout)
    assert repaired["repaired"] == [digest]
    assert repaired["unrepaired"] == []
    assert run_cli("verify", "--lake", root).stdout.startswith("ok:")


def test_vacuum_dry_run_then_history(tmp_path: Path) -> None:
    root = _own_lake(tmp_path)
    orphan = _object(root, "cd" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    old = time.time() - timedelta(hours=2).total_seconds()
    os.utime(orphan, (old, old))

    dry = json.loads(run_cli("vacuum", "--lake", root, "--dry-run", "--json").stdout)
    assert dry["objects_removed"] == ["cd" * 32]
    assert orphan.exists()
    done = run_cli("vacuum", "--lake", root, "--history")
    assert "removed 1 unreferenced objects" in done.stdout
    assert not orphan.exists()
    assert run_cli("vacuum", "--lake", root, "--grace-hours", "-1", check=False).returncode == 1


def test_forget_needs_confirmation(tmp_path: Path) -> None:
    root = _own_lake(tmp_path)
    refused = run_cli("forget", "--lake", root, "--source", "sample", check=False)
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert bl.Datalake.open(root).items().num_rows == 56


def test_forget_by_item_and_source(tmp_path: Path) -> None:
    root = _own_lake(tmp_path)
    item_ids = bl.Datalake.open(root).items(["item_id"]).column("item_id").to_pylist()[:2]

    by_items = json.loads(run_cli("forget", "--lake", root, "--item-id", *item_ids, "--yes", "--json").stdout)
    assert by_items["items_removed"] == 2
    by_source = run_cli("forget", "--lake", root, "--source", "sample", "--yes", "--purge-history")
    assert by_source.stdout.startswith("removed 54 items")
    unmatched = run_cli("forget", "--lake", root, "--patient-id", "100360", "--yes", check=False)
    assert unmatched.returncode == 1
    assert "no item matches" in unmatched.stderr
    assert bl.Datalake.open(root).items().num_rows == 0


def test_forget_selectors_are_exclusive(tmp_path: Path) -> None:
    result = run_cli("forget", "--lake", tmp_path, "--source", "a", "--patient-id", "b", check=False)
    assert result.returncode == 2
    assert run_cli("forget", "--lake", tmp_path, "--yes", check=False).returncode == 2


def test_read_only_flag_on_missing_lake(tmp_path: Path) -> None:
    result = run_cli("items", "--lake", tmp_path / "absent", "--read-only", check=False)
    assert result.returncode == 1
    assert not (tmp_path / "absent").exists()
