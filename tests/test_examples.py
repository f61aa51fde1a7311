"""The scripts in examples/ run end to end on small inputs, each in its own interpreter."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import brainlake as bl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# One example on the shipped sample takes 3 to 8 s on 2 CPU cores; the limit
# only stops a hung script.
TIMEOUT_SECONDS = 180


def run_example(name: str, *arguments: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` with ``arguments``; fail the test, showing its output, if it exits non-zero."""
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env={**os.environ, **(env or {})}, cwd=cwd,
    )
    assert completed.returncode == 0, f"{name} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
    return completed


def example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("name", example_names())
def test_example_docstring_states_duration(name: str) -> None:
    docstring = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert docstring, f"{name} has no module docstring"
    duration = re.search(r"\b\d+(\.\d+)?\s*(s|seconds?|minutes?)\b", docstring)
    assert duration, f"{name}'s docstring does not say how long it takes"


@pytest.mark.parametrize("name", example_names())
def test_example_help_exits_zero(name: str, tmp_path: Path) -> None:
    completed = run_example(name, "--help", cwd=tmp_path)
    assert "usage:" in completed.stdout


def test_quickstart_on_sample(tmp_path: Path) -> None:
    completed = run_example("quickstart.py", "--epochs", "1", "--size", "16", "--model", "fc",
                            "--lake", str(tmp_path / "lake"),
                            env={"BRAINLAKE_DATA": str(bl.datasets.sample_path())})
    assert "56 added" in completed.stdout
    assert "Evaluation of" in completed.stdout


def test_figshare_cv_synthetic_folds_are_patient_disjoint() -> None:
    completed = run_example("figshare_cv.py", "--folds", "1,2", "--epochs", "1", "--size", "16",
                            "--patients", "10", "--slices", "2", "--model", "fc",
                            env={"BRAINLAKE_FIGSHARE": ""})
    assert "SYNTHETIC" in completed.stderr
    assert "folds in the catalog: [1, 2, 3, 4, 5]" in completed.stdout
    assert completed.stdout.count("no patient in both train and test") == 2
    assert "mean test accuracy over 2 folds" in completed.stdout


def test_kaggle_dedup_drops_leaked_test_copies() -> None:
    completed = run_example("kaggle_dedup.py", "--data", str(bl.datasets.sample_path()),
                            "--epochs", "1", "--size", "16", "--model", "fc")
    # The sample has two Testing images whose bytes also occur in Training.
    assert "2 test images dropped because their group is in training" in completed.stdout
    assert "Evaluation of" in completed.stdout


def test_custom_model_trains_and_records_run(tmp_path: Path) -> None:
    completed = run_example("custom_model.py", "--epochs", "1", "--size", "16", "--lake", str(tmp_path / "lake"))
    assert "separable" in completed.stdout
    runs = bl.list_runs(bl.Datalake.open(tmp_path / "lake"))
    assert [run.model for run in runs] == ["separable"]


def test_s3_lake_against_local_server(request: pytest.FixtureRequest) -> None:
    try:
        server: Any = request.getfixturevalue("s3_server")
    except pytest.FixtureLookupError:
        pytest.skip("the s3_server fixture (tests/servers.py) is not available")
    bucket = server.new_bucket()
    url = f"s3://{bucket}/lake"
    completed = run_example("s3_lake.py", "--url", url, "--endpoint-url", server.endpoint_url,
                            "--key", server.key, "--secret", server.secret,
                            "--epochs", "1", "--size", "16", "--model", "fc")
    assert "56 added" in completed.stdout
    assert "ingest, mart_build, run" in completed.stdout
    lake = bl.Datalake.open(url, storage_options=server.storage_options())
    assert len(bl.list_runs(lake)) == 1


def test_train_ddp_in_one_process(tmp_path: Path) -> None:
    completed = run_example("train_ddp.py", str(tmp_path / "lake"), "--epochs", "1", "--size", "32")
    assert "world size 1" in completed.stdout
    assert (tmp_path / "lake-report" / "report.json").is_file()
