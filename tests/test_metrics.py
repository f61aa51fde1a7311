"""Tests for the classification metrics against hand-computed cases."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from brainlake.training import (
    Evaluation,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    macro_f1,
    precision_recall_f1,
)

# Three classes, two samples each. Class 2 is never predicted, so its
# precision has a zero denominator.
TARGETS = [0, 0, 1, 1, 2, 2]
PREDICTIONS = [0, 1, 1, 1, 0, 0]
EXPECTED_MATRIX = [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
# precision: 1/3, 2/3, 0; recall: 1/2, 1, 0
# f1 class 0: 2 * (1/3) * (1/2) / (1/3 + 1/2) = 0.4; class 1: 2 * (2/3) / (5/3) = 0.8
EXPECTED_PRECISION = [1 / 3, 2 / 3, 0.0]
EXPECTED_RECALL = [0.5, 1.0, 0.0]
EXPECTED_F1 = [0.4, 0.8, 0.0]


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(TARGETS, PREDICTIONS)

    assert matrix.tolist() == EXPECTED_MATRIX
    assert matrix.dtype == np.int64


def test_confusion_matrix_num_classes_pads() -> None:
    matrix = confusion_matrix([0, 1], [1, 1], num_classes=4)

    assert matrix.shape == (4, 4)
    assert matrix.sum() == 2
    assert matrix[0, 1] == 1
    assert matrix[1, 1] == 1


def test_accuracy() -> None:
    assert accuracy(TARGETS, PREDICTIONS) == pytest.approx(0.5)
    assert accuracy([1, 1], [1, 1]) == 1.0
    assert accuracy([], []) == 0.0


def test_per_class_scores_with_unpredicted_class() -> None:
    scores = precision_recall_f1(TARGETS, PREDICTIONS)

    np.testing.assert_allclose(scores.precision, EXPECTED_PRECISION)
    np.testing.assert_allclose(scores.recall, EXPECTED_RECALL)
    np.testing.assert_allclose(scores.f1, EXPECTED_F1)
    assert scores.support.tolist() == [2, 2, 2]


def test_balanced_accuracy_and_macro_f1() -> None:
    assert balanced_accuracy(TARGETS, PREDICTIONS) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert macro_f1(TARGETS, PREDICTIONS) == pytest.approx((0.4 + 0.8 + 0.0) / 3)


def test_absent_class_left_out_of_means() -> None:
    # Class 3 occurs in neither input, so it has no recall or F1 to average.
    assert balanced_accuracy(TARGETS, PREDICTIONS, num_classes=4) == pytest.approx(0.5)
    assert macro_f1(TARGETS, PREDICTIONS, num_classes=4) == pytest.approx(0.4)

    scores = precision_recall_f1(TARGETS, PREDICTIONS, num_classes=4)
    assert scores.precision[3] == 0.0
    assert scores.recall[3] == 0.0
    assert scores.f1[3] == 0.0
    assert scores.support[3] == 0


def test_class_only_predicted_counts_in_macro_f1() -> None:
    # Class 1 is predicted once but never true: F1 0.0, included in the mean.
    targets = [0, 0, 0]
    predictions = [0, 0, 1]

    assert macro_f1(targets, predictions) == pytest.approx((0.8 + 0.0) / 2)
    assert balanced_accuracy(targets, predictions) == pytest.approx(2 / 3)


def test_torch_and_numpy_inputs_agree() -> None:
    from_lists = confusion_matrix(TARGETS, PREDICTIONS)
    from_tensors = confusion_matrix(torch.tensor(TARGETS), torch.tensor(PREDICTIONS))
    from_arrays = confusion_matrix(np.array(TARGETS, dtype=np.uint8), np.array(PREDICTIONS))

    assert from_tensors.tolist() == from_lists.tolist()
    assert from_arrays.tolist() == from_lists.tolist()
    assert macro_f1(torch.tensor(TARGETS), torch.tensor(PREDICTIONS)) == pytest.approx(0.4)


def test_invalid_inputs_rejected() -> None:
    with pytest.raises(ValueError, match=r"same length, got 2 and 3"):
        confusion_matrix([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"predictions contain the class index 3, outside 0..2"):
        confusion_matrix([0, 1], [0, 3], num_classes=3)
    with pytest.raises(ValueError, match=r"targets contain the class index -1"):
        confusion_matrix([-1, 1], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match=r"targets must be 1-D class indices, got shape \(1, 2\)"):
        confusion_matrix([[0, 1]], [0, 1])
    with pytest.raises(ValueError, match=r"predictions must be integer class indices, got dtype"):
        confusion_matrix([0, 1], [0.0, 1.0])


def make_evaluation() -> Evaluation:
    return Evaluation.from_predictions(
        TARGETS, PREDICTIONS, loss=0.75, class_names=["glioma", "meningioma", "pituitary"]
    )


def test_evaluation_fields() -> None:
    evaluation = make_evaluation()

    assert evaluation.loss == 0.75
    assert evaluation.accuracy == pytest.approx(0.5)
    assert evaluation.balanced_accuracy == pytest.approx(0.5)
    assert evaluation.macro_f1 == pytest.approx(0.4)
    assert evaluation.confusion_matrix == EXPECTED_MATRIX
    assert evaluation.num_samples == 6
    assert evaluation.per_class["meningioma"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert evaluation.per_class["pituitary"]["precision"] == 0.0


def test_evaluation_is_frozen() -> None:
    evaluation = make_evaluation()

    with pytest.raises(dataclasses.FrozenInstanceError):
        evaluation.loss = 0.0  # type: ignore[misc]


def test_evaluation_to_dict_is_json() -> None:
    evaluation = make_evaluation()

    restored = json.loads(json.dumps(evaluation.to_dict()))

    assert restored["confusion_matrix"] == EXPECTED_MATRIX
    assert restored["class_names"] == ["glioma", "meningioma", "pituitary"]
    assert restored["per_class"]["glioma"]["support"] == 2
    assert restored["macro_f1"] == pytest.approx(0.4)
    assert set(restored) == {field.name for field in dataclasses.fields(Evaluation)}


def test_evaluation_report_text() -> None:
    lines = str(make_evaluation()).splitlines()

    assert lines[0] == "Evaluation of 6 samples"
    assert "accuracy 0.5000" in lines[1]
    assert "macro F1 0.4000" in lines[1]
    assert lines[3].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[4].split() == ["glioma", "0.3333", "0.5000", "0.4000", "2"]
    assert lines[6].split() == ["pituitary", "0.0000", "0.0000", "0.0000", "2"]
    matrix_start = lines.index("confusion matrix (rows: true class, columns: predicted class)")
    header, *rows = lines[matrix_start + 1 :]
    assert header.split() == ["glioma", "meningioma", "pituitary"]
    assert [row.split() for row in rows] == [
        ["glioma", "1", "1", "0"],
        ["meningioma", "0", "2", "0"],
        ["pituitary", "2", "0", "0"],
    ]
    # Right-aligned columns: each count ends where its header name ends.
    assert rows[0].index("1") + 1 == header.index("glioma") + len("glioma")
    assert len({len(line) for line in [header, *rows]}) == 1


def test_evaluation_rejects_label_outside_class_names() -> None:
    with pytest.raises(ValueError, match=r"targets contain the class index 2, outside 0..1"):
        Evaluation.from_predictions([0, 2], [0, 1], loss=0.1, class_names=["a", "b"])
