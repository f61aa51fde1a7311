"""Training on any device: device and precision resolution, the Trainer, metrics, reports.

>>> from brainlake.training import resolve_device
>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

from brainlake.training.device import (
    Precision,
    PrecisionRequest,
    resolve_device,
    resolve_precision,
)
from brainlake.training.metrics import (
    Evaluation,
    PerClassScores,
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    macro_f1,
    precision_recall_f1,
    roc_auc_one_vs_rest,
)
from brainlake.training.report import draw_report, report_data, write_report
from brainlake.training.trainer import EpochCallback, HistoryRow, Monitor, Schedule, Trainer

__all__ = [
    "EpochCallback",
    "Evaluation",
    "HistoryRow",
    "Monitor",
    "PerClassScores",
    "Precision",
    "PrecisionRequest",
    "Schedule",
    "Trainer",
    "accuracy",
    "balanced_accuracy",
    "confusion_matrix",
    "draw_report",
    "macro_f1",
    "precision_recall_f1",
    "report_data",
    "resolve_device",
    "resolve_precision",
    "roc_auc_one_vs_rest",
    "write_report",
]
