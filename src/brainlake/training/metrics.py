"""Classification metrics computed from true and predicted class indices.

The functions accept NumPy arrays, torch tensors or sequences of ints, and
compute everything except ROC-AUC from the confusion matrix. ROC-AUC needs
class probabilities instead, see :func:`roc_auc_one_vs_rest`. A ratio whose denominator is zero
(the precision of a class that is never predicted, the recall of a class absent
from the targets) counts as 0.0. :class:`Evaluation` gathers the metrics of one
pass over a data set, as :meth:`brainlake.training.Trainer.evaluate` returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "Evaluation",
    "PerClassScores",
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "macro_f1",
    "precision_recall_f1",
    "roc_auc_one_vs_rest",
]

Labels: TypeAlias = npt.ArrayLike | torch.Tensor
"""Class indices: a 1-D NumPy array, torch tensor or sequence of ints."""

IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float64]


class PerClassScores(NamedTuple):
    """Per-class scores, each an array indexed by class.

    Attributes:
        precision: Correct predictions of the class over all predictions of it.
        recall: Correct predictions of the class over its true samples.
        f1: Harmonic mean of precision and recall.
        support: Number of true samples of the class.
    """

    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray


def confusion_matrix(
    targets: Labels, predictions: Labels, *, num_classes: int | None = None
) -> IntArray:
    """Count each (true class, predicted class) pair.

    Args:
        targets: True class indices.
        predictions: Predicted class indices, as many as ``targets``.
        num_classes: Size of the matrix. Defaults to one more than the largest
            index in either input.

    Returns:
        An int64 array of shape ``[num_classes, num_classes]``. Row ``i``,
        column ``j`` counts samples of true class ``i`` predicted as ``j``.

    Raises:
        ValueError: The inputs are not 1-D, differ in length, or contain an
            index that is negative or not below ``num_classes``.
    """
    true = _as_indices("targets", targets)
    predicted = _as_indices("predictions", predictions)
    if true.shape != predicted.shape:
        raise ValueError(
            "targets and predictions must have the same length, "
            f"got {true.size} and {predicted.size}"
        )
    if num_classes is None:
        num_classes = int(max(true.max(initial=-1), predicted.max(initial=-1))) + 1
    for name, values in (("targets", true), ("predictions", predicted)):
        outside = values[(values < 0) | (values >= num_classes)]
        if outside.size:
            raise ValueError(
                f"{name} contain the class index {int(outside[0])!r}, "
                f"outside 0..{num_classes - 1} for num_classes={num_classes}"
            )

    flat = true * num_classes + predicted
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def accuracy(targets: Labels, predictions: Labels) -> float:
    """Return the fraction of predictions equal to the target, 0.0 for no samples."""
    return _accuracy_from_matrix(confusion_matrix(targets, predictions))


def balanced_accuracy(
    targets: Labels, predictions: Labels, *, num_classes: int | None = None
) -> float:
    """Return the mean recall over the classes present in ``targets``.

    Classes without true samples are left out of the mean because their recall
    is undefined.
    """
    return _balanced_accuracy_from_matrix(
        confusion_matrix(targets, predictions, num_classes=num_classes)
    )


def macro_f1(targets: Labels, predictions: Labels, *, num_classes: int | None = None) -> float:
    """Return the unweighted mean F1 over classes present in the targets or the predictions.

    A class that appears in neither has no defined F1 and is left out of the
    mean. A class that appears in only one of them has F1 0.0.
    """
    return _macro_f1_from_matrix(confusion_matrix(targets, predictions, num_classes=num_classes))


def precision_recall_f1(
    targets: Labels, predictions: Labels, *, num_classes: int | None = None
) -> PerClassScores:
    """Compute precision, recall, F1 and support for each class."""
    return _scores_from_matrix(confusion_matrix(targets, predictions, num_classes=num_classes))


def roc_auc_one_vs_rest(
    targets: Labels, probabilities: npt.ArrayLike | torch.Tensor
) -> list[float | None]:
    """Compute the one-vs-rest ROC-AUC of each class from class probabilities.

    The AUC of class ``k`` is the Mann-Whitney U statistic of the scores
    ``probabilities[:, k]`` of samples of class ``k`` against those of all other
    samples, divided by the number of (positive, negative) pairs. That is the
    chance that a random positive scores higher than a random negative, with ties
    counting one half, and it equals the area under the one-vs-rest ROC curve.

    Args:
        targets: True class indices, one per row of ``probabilities``.
        probabilities: Scores of shape ``[N, num_classes]``, such as softmax
            outputs. Only their order within each column matters.

    Returns:
        One AUC per column, or ``None`` for a class that has no positive or no
        negative sample, because its AUC is undefined.

    Raises:
        ValueError: ``probabilities`` is not 2-D or not finite, its row count
            differs from the number of targets, or a target is not a column index.
    """
    true = _as_indices("targets", targets)
    scores = _as_probabilities(probabilities)
    if scores.shape[0] != true.size:
        raise ValueError(
            f"probabilities must have one row per target, got {scores.shape[0]} rows "
            f"for {true.size} targets"
        )
    num_classes = scores.shape[1]
    outside = true[(true < 0) | (true >= num_classes)]
    if outside.size:
        raise ValueError(
            f"targets contain the class index {int(outside[0])!r}, outside 0..{num_classes - 1} "
            f"for probabilities with {num_classes} columns"
        )
    return [_binary_roc_auc(true == index, scores[:, index]) for index in range(num_classes)]


@dataclass(frozen=True)
class Evaluation:
    """Loss and classification metrics of one pass over a data set.

    ``print(evaluation)`` shows a text report with per-class scores and the
    confusion matrix, and :meth:`to_dict` gives a JSON-serializable copy.

    Attributes:
        loss: Mean cross-entropy per sample.
        accuracy: Fraction of correct predictions.
        balanced_accuracy: Mean recall over the classes present in the targets.
        macro_f1: Mean F1 over the classes present in the targets or predictions.
        per_class: For each class name, ``precision``, ``recall``, ``f1`` (floats),
            ``support`` (an int count of true samples) and ``roc_auc`` (the
            one-vs-rest AUC, or ``None`` when it is undefined or no probabilities
            were given).
        confusion_matrix: Counts with rows for true classes and columns for
            predicted classes, in the order of ``class_names``.
        class_names: Name of each class index.
        num_samples: Number of evaluated samples.
        roc_auc: Mean one-vs-rest ROC-AUC over the classes with both positive and
            negative samples, or ``None`` when no class has both or no
            probabilities were given.
    """

    loss: float
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    per_class: Mapping[str, Mapping[str, float | None]]
    confusion_matrix: list[list[int]]
    class_names: list[str]
    num_samples: int
    roc_auc: float | None = None

    @classmethod
    def from_predictions(
        cls,
        targets: Labels,
        predictions: Labels,
        *,
        loss: float,
        class_names: Sequence[str],
        probabilities: npt.ArrayLike | torch.Tensor | None = None,
    ) -> Evaluation:
        """Compute every metric from class indices, and ROC-AUC from probabilities.

        Args:
            targets: True class indices.
            predictions: Predicted class indices.
            loss: Mean loss per sample, computed by the caller.
            class_names: Name of each class, one per model output.
            probabilities: Class probabilities ``[N, len(class_names)]`` for
                ROC-AUC. Without them every ROC-AUC is ``None``.

        Raises:
            ValueError: An index is outside ``range(len(class_names))``, or
                ``probabilities`` has another shape than ``[N, len(class_names)]``.
        """
        names = [str(name) for name in class_names]
        matrix = confusion_matrix(targets, predictions, num_classes=len(names))
        scores = _scores_from_matrix(matrix)

        class_aucs: list[float | None] = [None] * len(names)
        if probabilities is not None:
            columns = _as_probabilities(probabilities).shape[1]
            if columns != len(names):
                raise ValueError(
                    f"probabilities have {columns} columns but there are {len(names)} "
                    f"class_names: {names!r}"
                )
            class_aucs = roc_auc_one_vs_rest(targets, probabilities)
        defined_aucs = [auc for auc in class_aucs if auc is not None]

        per_class = {
            name: {
                "precision": float(scores.precision[index]),
                "recall": float(scores.recall[index]),
                "f1": float(scores.f1[index]),
                "support": int(scores.support[index]),
                "roc_auc": class_aucs[index],
            }
            for index, name in enumerate(names)
        }
        return cls(
            loss=float(loss),
            accuracy=_accuracy_from_matrix(matrix),
            balanced_accuracy=_balanced_accuracy_from_matrix(matrix),
            macro_f1=_macro_f1_from_matrix(matrix),
            per_class=per_class,
            confusion_matrix=matrix.tolist(),
            class_names=names,
            num_samples=int(matrix.sum()),
            roc_auc=float(np.mean(defined_aucs)) if defined_aucs else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain dicts, lists and numbers, ready for ``json.dumps``."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {name: dict(scores) for name, scores in self.per_class.items()},
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "class_names": list(self.class_names),
            "num_samples": self.num_samples,
            "roc_auc": self.roc_auc,
        }

    def __str__(self) -> str:
        return "\n".join(
            [
                f"Evaluation of {self.num_samples} samples",
                f"loss {self.loss:.4f}  accuracy {self.accuracy:.4f}  "
                f"balanced accuracy {self.balanced_accuracy:.4f}  macro F1 {self.macro_f1:.4f}  "
                f"ROC-AUC {_format_optional(self.roc_auc)}",
                "",
                *self._score_table(),
                "",
                "confusion matrix (rows: true class, columns: predicted class)",
                *self._matrix_table(),
            ]
        )

    def _score_table(self) -> list[str]:
        name_width = max([len("class"), *(len(name) for name in self.class_names)])
        lines = [f"{'class':<{name_width}}  precision  recall      f1  support  ROC-AUC"]
        for name in self.class_names:
            scores = self.per_class[name]
            lines.append(
                f"{name:<{name_width}}  {scores['precision']:>9.4f}  {scores['recall']:>6.4f}"
                f"  {scores['f1']:>6.4f}  {scores['support']:>7d}"
                f"  {_format_optional(scores.get('roc_auc')):>7}"
            )
        return lines

    def _matrix_table(self) -> list[str]:
        name_width = max(len(name) for name in self.class_names) if self.class_names else 0
        largest = max((count for row in self.confusion_matrix for count in row), default=0)
        column_widths = [max(len(name), len(str(largest))) for name in self.class_names]
        header_cells = zip(self.class_names, column_widths, strict=True)
        header = " " * name_width + "".join(f"  {name:>{width}}" for name, width in header_cells)
        lines = [header]
        for name, row in zip(self.class_names, self.confusion_matrix, strict=True):
            cells = "".join(
                f"  {count:>{width}d}" for count, width in zip(row, column_widths, strict=True)
            )
            lines.append(f"{name:<{name_width}}{cells}")
        return lines


def _as_indices(name: str, values: Labels) -> IntArray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {array.shape!r}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _as_probabilities(values: npt.ArrayLike | torch.Tensor) -> FloatArray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"probabilities must be 2-D [samples, classes], got shape {array.shape!r}"
        )
    if not np.isfinite(array).all():
        raise ValueError("probabilities must be finite; check the model outputs for NaN or inf")
    return array


def _binary_roc_auc(is_positive: npt.NDArray[np.bool_], scores: FloatArray) -> float | None:
    """Return P(score of a positive > score of a negative), ties counting 1/2, or None."""
    positives = int(is_positive.sum())
    negatives = is_positive.size - positives
    if positives == 0 or negatives == 0:
        return None
    # Tied scores share the mean of the 1-based ranks they span.
    _, group_of, group_sizes = np.unique(scores, return_inverse=True, return_counts=True)
    group_ends = np.cumsum(group_sizes)
    mean_ranks = group_ends - (group_sizes - 1) / 2.0
    ranks = mean_ranks[group_of.reshape(-1)]
    rank_sum = float(ranks[is_positive].sum())
    u_statistic = rank_sum - positives * (positives + 1) / 2.0
    return u_statistic / (positives * negatives)


def _format_optional(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _safe_divide(numerator: npt.NDArray[Any], denominator: npt.NDArray[Any]) -> FloatArray:
    result = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


def _scores_from_matrix(matrix: IntArray) -> PerClassScores:
    correct = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(correct, predicted)
    recall = _safe_divide(correct, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return PerClassScores(precision, recall, f1, support.astype(np.int64))


def _accuracy_from_matrix(matrix: IntArray) -> float:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else 0.0


def _balanced_accuracy_from_matrix(matrix: IntArray) -> float:
    scores = _scores_from_matrix(matrix)
    present = scores.support > 0
    return float(scores.recall[present].mean()) if present.any() else 0.0


def _macro_f1_from_matrix(matrix: IntArray) -> float:
    scores = _scores_from_matrix(matrix)
    present = (scores.support > 0) | (matrix.sum(axis=0) > 0)
    return float(scores.f1[present].mean()) if present.any() else 0.0
