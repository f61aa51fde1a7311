"""Tests for training reports: PNG figures drawn with matplotlib and their data as JSON."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brainlake.exceptions import MissingDependencyError
from brainlake.training import Evaluation, draw_report, report_data, write_report

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample_history(epochs: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.5 / epoch,
            "train_accuracy": 0.3 + 0.1 * epoch,
            "val_loss": 1.6 / epoch,
            "val_accuracy": 0.25 + 0.1 * epoch,
            "val_macro_f1": 0.2 + 0.1 * epoch,
            "lr": 1e-3 / epoch,
            "seconds": 2.0,
        }
        for epoch in range(1, epochs + 1)
    ]


def sample_evaluation() -> Evaluation:
    targets = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    predictions = [0, 0, 1, 1, 1, 2, 2, 3, 2, 3]
    return Evaluation.from_predictions(targets, predictions, loss=0.7, class_names=CLASSES)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_writes_json_and_pngs(tmp_path: Path) -> None:
    written = write_report(tmp_path / "report", history=sample_history(), evaluation=sample_evaluation())

    assert [path.name for path in written] == ["report.json", "confusion_matrix.png", "training_curves.png"]
    for path in written:
        assert path.parent == tmp_path / "report"
        assert path.stat().st_size > 0


def test_report_pngs_have_sensible_size(tmp_path: Path) -> None:
    write_report(tmp_path, history=sample_history(), evaluation=sample_evaluation())

    matrix_width, matrix_height = png_size(tmp_path / "confusion_matrix.png")
    curves_width, curves_height = png_size(tmp_path / "training_curves.png")
    assert 300 <= matrix_width <= 2000
    assert 300 <= matrix_height <= 2000
    assert 600 <= curves_width <= 2000
    assert 250 <= curves_height <= 1200
    assert curves_width > curves_height


def test_report_json_round_trips_figures(tmp_path: Path) -> None:
    history = sample_history()
    evaluation = sample_evaluation()
    write_report(tmp_path, history=history, evaluation=evaluation)

    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored == report_data(history=history, evaluation=evaluation)
    matrix = stored["figures"]["confusion_matrix"]
    assert matrix["matrix"] == evaluation.confusion_matrix
    assert matrix["class_names"] == CLASSES
    assert matrix["num_samples"] == evaluation.num_samples
    curves = stored["figures"]["training_curves"]
    assert curves["epochs"] == [1, 2, 3]
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_macro_f1", "lr"):
        assert curves["series"][key] == [row[key] for row in history]


def test_report_redrawn_from_json_is_identical(tmp_path: Path) -> None:
    write_report(tmp_path / "first", history=sample_history(), evaluation=sample_evaluation())

    redrawn = draw_report(tmp_path / "first" / "report.json", tmp_path / "second")

    assert [path.name for path in redrawn] == ["confusion_matrix.png", "training_curves.png"]
    for path in redrawn:
        assert path.read_bytes() == (tmp_path / "first" / path.name).read_bytes()


def test_report_accepts_evaluation_dict(tmp_path: Path) -> None:
    evaluation = sample_evaluation()
    write_report(tmp_path / "object", evaluation=evaluation)
    write_report(tmp_path / "dict", evaluation=evaluation.to_dict())

    for name in ("report.json", "confusion_matrix.png"):
        assert (tmp_path / "object" / name).read_bytes() == (tmp_path / "dict" / name).read_bytes()


def test_report_without_validation_draws_training_only(tmp_path: Path) -> None:
    history = [{**row, "val_loss": None, "val_accuracy": None, "val_macro_f1": None} for row in sample_history()]

    written = write_report(tmp_path, history=history)

    assert [path.name for path in written] == ["report.json", "training_curves.png"]
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored["figures"]["training_curves"]["series"]["val_loss"] == [None, None, None]
    assert "confusion_matrix" not in stored["figures"]
    png_size(tmp_path / "training_curves.png")


def test_report_png_false_writes_only_json(tmp_path: Path) -> None:
    written = write_report(tmp_path, evaluation=sample_evaluation(), png=False)

    assert written == [tmp_path / "report.json"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.json"]


def test_report_needs_history_or_evaluation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history, an evaluation or both"):
        write_report(tmp_path)


def test_report_rejects_empty_history(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history is empty"):
        write_report(tmp_path, history=[])


def test_report_rejects_mismatched_class_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="4x4 but there are 2 class names"):
        write_report(tmp_path, evaluation=sample_evaluation(), class_names=["a", "b"])


def test_draw_report_rejects_other_json(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"figures": {}, "format_version": 99}))
    with pytest.raises(ValueError, match="report format 99"):
        draw_report(other)


def test_report_keeps_matplotlib_backend(tmp_path: Path) -> None:
    code = f"""
import sys
import matplotlib
matplotlib.use("svg")
from brainlake.training import write_report
write_report({str(tmp_path)!r}, history=[{{"epoch": 1, "train_loss": 1.0}}])
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    completed = run_python(code)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["svg", "False"]
    png_size(tmp_path / "training_curves.png")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_report_without_matplotlib_names_extra(tmp_path: Path) -> None:
    # A None entry in sys.modules makes "import matplotlib" raise ImportError,
    # as it does where matplotlib is not installed.
    code = f"""
import sys
sys.modules["matplotlib"] = None
from pathlib import Path
from brainlake.exceptions import MissingDependencyError
from brainlake.training import write_report
folder = Path({str(tmp_path)!r})
try:
    write_report(folder, history=[{{"epoch": 1, "train_loss": 1.0}}])
except MissingDependencyError as error:
    print("raised:", error)
print("json written:", (folder / "report.json").exists())
print("pngs written:", sorted(path.name for path in folder.glob("*.png")))
"""
    completed = run_python(code)

    assert completed.returncode == 0, completed.stderr
    assert "raised:" in completed.stdout
    assert "pip install 'brainlake[plots]'" in completed.stdout
    assert "json written: True" in completed.stdout
    assert "pngs written: []" in completed.stdout
    assert issubclass(MissingDependencyError, ImportError)


def test_import_brainlake_skips_matplotlib_and_torch() -> None:
    completed = run_python(
        "import sys, brainlake; print(sorted(name for name in ('matplotlib', 'torch') if name in sys.modules))"
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
