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
    roc_auc_one_vs_rest,
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
        "roc_auc": None,
    }
    assert evaluation.roc_auc is None
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
    assert "ROC-AUC n/a" in lines[1]
    assert lines[3].split() == ["class", "precision", "recall", "f1", "support", "ROC-AUC"]
    assert lines[4].split() == ["glioma", "0.3333", "0.5000", "0.4000", "2", "n/a"]
    assert lines[6].split() == ["pituitary", "0.0000", "0.0000", "0.0000", "2", "n/a"]
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


def test_roc_auc_perfect_and_reversed() -> None:
    targets = [0, 0, 1, 1]
    perfect = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]
    reversed_scores = [[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.9, 0.1]]

    assert roc_auc_one_vs_rest(targets, perfect) == [1.0, 1.0]
    assert roc_auc_one_vs_rest(targets, reversed_scores) == [0.0, 0.0]


def test_roc_auc_ties_count_half() -> None:
    assert roc_auc_one_vs_rest([0, 1, 0, 1], [[0.5, 0.5]] * 4) == [0.5, 0.5]


def test_roc_auc_hand_computed_partial() -> None:
    # Class 1 scores: positives 0.8, 0.4; negatives 0.6, 0.2, 0.4.
    # Pairs won: 0.8 beats all 3; 0.4 beats 0.2, ties 0.4, loses to 0.6 -> 1.5.
    targets = [1, 1, 0, 0, 0]
    class_1 = [0.8, 0.4, 0.6, 0.2, 0.4]
    probabilities = torch.tensor([[1 - p, p] for p in class_1])

    aucs = roc_auc_one_vs_rest(torch.tensor(targets), probabilities)

    assert aucs[1] == pytest.approx(4.5 / 6)
    assert aucs[0] == pytest.approx(4.5 / 6)


def test_roc_auc_absent_class_is_none() -> None:
    probabilities = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]

    aucs = roc_auc_one_vs_rest([0, 1, 0], probabilities)

    assert aucs == [1.0, 1.0, None]
    assert roc_auc_one_vs_rest([1, 1], [[0.4, 0.6], [0.3, 0.7]]) == [None, None]


def test_roc_auc_invalid_inputs_rejected() -> None:
    with pytest.raises(ValueError, match=r"one row per target, got 1 rows for 2 targets"):
        roc_auc_one_vs_rest([0, 1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"must be 2-D \[samples, classes\], got shape \(2,\)"):
        roc_auc_one_vs_rest([0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"class index 2, outside 0..1"):
        roc_auc_one_vs_rest([0, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"probabilities must be finite"):
        roc_auc_one_vs_rest([0, 1], [[float("nan"), 0.5], [0.5, 0.5]])


def test_evaluation_roc_auc_macro_over_defined_classes() -> None:
    # Class 2 has no true samples, so its AUC is undefined and left out of the mean.
    probabilities = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.4, 0.5, 0.1]]
    targets = [0, 1, 0, 0]

    evaluation = Evaluation.from_predictions(
        targets, [0, 1, 0, 1], loss=0.5, class_names=["a", "b", "c"], probabilities=probabilities
    )

    # Class 0: positives 0.7, 0.6, 0.4 against negative 0.2 -> 1.0.
    # Class 1: positive 0.7 against 0.2, 0.3, 0.5 -> 1.0.
    assert evaluation.per_class["a"]["roc_auc"] == 1.0
    assert evaluation.per_class["b"]["roc_auc"] == 1.0
    assert evaluation.per_class["c"]["roc_auc"] is None
    assert evaluation.roc_auc == 1.0
    assert evaluation.to_dict()["roc_auc"] == 1.0
    assert "ROC-AUC 1.0000" in str(evaluation).splitlines()[1]


def test_evaluation_rejects_probability_columns_mismatch() -> None:
    with pytest.raises(ValueError, match=r"probabilities have 3 columns but there are 2"):
        Evaluation.from_predictions(
            [0, 1], [0, 1], loss=0.1, class_names=["a", "b"], probabilities=[[0.2, 0.3, 0.5]] * 2
        )
