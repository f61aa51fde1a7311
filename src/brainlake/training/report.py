"""Training reports: a confusion matrix and training curves as PNG files, their data as JSON.

:func:`write_report` writes ``report.json`` first, holding every number each
figure shows, then draws ``confusion_matrix.png`` and ``training_curves.png``
from that data with matplotlib (the ``plots`` extra). :func:`draw_report`
draws the PNGs again from a ``report.json``. Figures are drawn on matplotlib's
non-interactive Agg canvas directly, without :mod:`matplotlib.pyplot`, so the
user's backend setting stays as it is.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainlake.exceptions import MissingDependencyError
from brainlake.training.metrics import Evaluation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REPORT_FORMAT_VERSION", "draw_report", "report_data", "require_matplotlib", "write_report"]

logger = logging.getLogger(__name__)

REPORT_FORMAT_VERSION = 1
"""Version of the ``report.json`` layout."""

REPORT_JSON = "report.json"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
TRAINING_CURVES_PNG = "training_curves.png"

# History keys drawn in each panel of the training curves, in legend order.
_LOSS_SERIES = ("train_loss", "val_loss")
_SCORE_SERIES = ("train_accuracy", "val_accuracy", "val_macro_f1")
_DPI = 100


def report_data(
    *,
    history: Sequence[Mapping[str, Any]] | None = None,
    evaluation: Evaluation | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Collect the data of each figure as plain JSON values.

    Args:
        history: Per-epoch rows as :attr:`Trainer.history <brainlake.training.Trainer.history>`
            returns them. ``None`` leaves out the training curves.
        evaluation: An :class:`~brainlake.training.Evaluation` or its
            :meth:`~brainlake.training.Evaluation.to_dict`. ``None`` leaves out
            the confusion matrix.
        class_names: Names of the matrix rows and columns. Defaults to those of
            ``evaluation``.

    Returns:
        ``{"format_version": 1, "figures": {...}}`` with ``"training_curves"``
        (``epochs`` and one list per history key, ``None`` where a value is
        missing) and ``"confusion_matrix"`` (``class_names``, ``matrix`` of
        counts with true classes as rows, and ``num_samples``).

    Raises:
        ValueError: Neither ``history`` nor ``evaluation`` is given, the
            history is empty, or ``class_names`` does not match the matrix.
    """
    if history is None and evaluation is None:
        raise ValueError("a report needs a history, an evaluation or both; pass history= or evaluation=")
    figures: dict[str, Any] = {}
    if history is not None:
        figures["training_curves"] = _curve_data(history)
    if evaluation is not None:
        figures["confusion_matrix"] = _matrix_data(evaluation, class_names)
    return {"format_version": REPORT_FORMAT_VERSION, "figures": figures}


def write_report(
    folder: str | os.PathLike[str],
    *,
    history: Sequence[Mapping[str, Any]] | None = None,
    evaluation: Evaluation | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    png: bool = True,
) -> list[Path]:
    """Write a training report to ``folder``: ``report.json`` and, with ``png``, the figures.

    ``report.json`` is written first, so it exists even when drawing fails.

    Example:
        >>> import tempfile
        >>> from brainlake.training import write_report
        >>> history = [{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0}]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     [path.name for path in write_report(folder, history=history, png=False)]
        ['report.json']

    Args:
        folder: Where the files go; created if missing. Existing report files
            are replaced.
        history: As in :func:`report_data`.
        evaluation: As in :func:`report_data`.
        class_names: As in :func:`report_data`.
        png: Also draw ``confusion_matrix.png`` and ``training_curves.png``
            (each only when its data is given).

    Returns:
        The paths written, ``report.json`` first.

    Raises:
        MissingDependencyError: ``png`` is true but matplotlib is not installed;
            ``report.json`` has been written by then.
        ValueError: As in :func:`report_data`.
    """
    data = report_data(history=history, evaluation=evaluation, class_names=class_names)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    json_path = target / REPORT_JSON
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written = [json_path]
    if png:
        written += _draw(data, target)
    logger.info("wrote the training report to %s", target)
    return written


def draw_report(report: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Draw the PNG figures of a ``report.json`` written by :func:`write_report`.

    Args:
        report: The ``report.json`` file.
        folder: Where the PNGs go. Defaults to the folder of ``report``.

    Returns:
        The PNG paths written.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        ValueError: The file is not a report of a known format.
    """
    path = Path(report)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
        raise ValueError(f"{str(path)!r} is not a brainlake report: it has no 'figures' object")
    if data.get("format_version") != REPORT_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has report format {data.get('format_version')!r}; this brainlake "
            f"draws format {REPORT_FORMAT_VERSION}"
        )
    target = Path(folder) if folder is not None else path.parent
    target.mkdir(parents=True, exist_ok=True)
    return _draw(data, target)


# -- figure data ----------------------------------------------------------


def _curve_data(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(history)
    if not rows:
        raise ValueError("history is empty; train at least one epoch before writing a report")
    series = {
        key: [_optional_float(row.get(key)) for row in rows]
        for key in (*_LOSS_SERIES, *_SCORE_SERIES, "lr")
    }
    return {"epochs": [int(row.get("epoch", index + 1)) for index, row in enumerate(rows)], "series": series}


def _matrix_data(evaluation: Evaluation | Mapping[str, Any], class_names: Sequence[str] | None) -> dict[str, Any]:
    values = evaluation.to_dict() if isinstance(evaluation, Evaluation) else dict(evaluation)
    matrix = [[int(count) for count in row] for row in values["confusion_matrix"]]
    names = [str(name) for name in (class_names if class_names is not None else values["class_names"])]
    if len(names) != len(matrix) or any(len(row) != len(matrix) for row in matrix):
        raise ValueError(
            f"the confusion matrix is {len(matrix)}x{len(matrix[0]) if matrix else 0} but there are "
            f"{len(names)} class names: {names!r}"
        )
    return {"class_names": names, "matrix": matrix, "num_samples": sum(map(sum, matrix))}


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- drawing --------------------------------------------------------------


def require_matplotlib() -> None:
    """Raise :class:`~brainlake.MissingDependencyError` naming the ``plots`` extra unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError(
            "drawing report figures needs matplotlib; install it with: pip install 'brainlake[plots]', "
            "or pass png=False to write only report.json"
        ) from error


def _new_figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw(data: Mapping[str, Any], folder: Path) -> list[Path]:
    figures = data["figures"]
    written = []
    if "confusion_matrix" in figures:
        written.append(_save(_draw_confusion_matrix(figures["confusion_matrix"]), folder / CONFUSION_MATRIX_PNG))
    if "training_curves" in figures:
        written.append(_save(_draw_training_curves(figures["training_curves"]), folder / TRAINING_CURVES_PNG))
    return written


def _save(figure: Figure, path: Path) -> Path:
    # No "Software" entry with the matplotlib version, so the same data gives the same bytes.
    figure.savefig(path, format="png", metadata={"Software": None})
    return path


def _draw_confusion_matrix(data: Mapping[str, Any]) -> Figure:
    names: list[str] = list(data["class_names"])
    matrix: list[list[int]] = data["matrix"]
    side = max(4.0, 1.0 + 0.9 * len(names))
    figure = _new_figure(side + 1.2, side)
    axes = figure.add_subplot()

    # Colour by the share of each true class (the recall in the diagonal), so
    # rare classes are as visible as common ones. The cell text gives the counts.
    shares = [[count / max(sum(row), 1) for count in row] for row in matrix]
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class")
    for row_index, row in enumerate(matrix):
        for column_index, count in enumerate(row):
            dark = shares[row_index][column_index] > 0.5
            axes.text(column_index, row_index, str(count), ha="center", va="center",
                      color="white" if dark else "black")

    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix ({data['num_samples']} samples)")
    return figure


def _draw_training_curves(data: Mapping[str, Any]) -> Figure:
    epochs: list[int] = data["epochs"]
    series: Mapping[str, list[float | None]] = data["series"]
    figure = _new_figure(10.0, 4.0)
    from matplotlib.ticker import MaxNLocator
    loss_axes, score_axes = figure.subplots(1, 2)

    for axes, keys, title in (
        (loss_axes, _LOSS_SERIES, "Loss"),
        (score_axes, _SCORE_SERIES, "Accuracy and macro F1"),
    ):
        for key in keys:
            points = [(epoch, value) for epoch, value in zip(epochs, series.get(key, []), strict=False)
                      if value is not None]
            if points:
                axes.plot([epoch for epoch, _ in points], [value for _, value in points], marker="o", label=key)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    score_axes.set_ylim(0.0, 1.0)
    return figure
