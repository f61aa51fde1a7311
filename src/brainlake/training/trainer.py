"""The training loop: fit a classifier, keep its best epoch, evaluate it, checkpoint it.

:class:`Trainer` runs AdamW with a cosine learning-rate schedule and
cross-entropy loss on any device that :func:`~brainlake.training.resolve_device`
accepts. Checkpoints contain only tensors and plain Python values, so they load
with ``torch.load(path, weights_only=True)`` and need no brainlake import.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR
from tqdm import tqdm

from brainlake.exceptions import TrainingError
from brainlake.training.device import (
    Precision,
    PrecisionRequest,
    resolve_device,
    resolve_precision,
)
from brainlake.training.metrics import Evaluation

__all__ = ["Batches", "HistoryRow", "Monitor", "Trainer"]

logger = logging.getLogger(__name__)

Monitor = Literal["val_accuracy", "val_loss", "val_macro_f1"]
"""The validation metric that selects the best epoch."""

HistoryRow: TypeAlias = dict[str, float | int | None]
"""One epoch of :attr:`Trainer.history`.

Validation values are ``None`` when :meth:`Trainer.fit` had no validation loader.
"""

Batches: TypeAlias = Iterable[Any]
"""An iterable of ``(images, labels)`` pairs, such as a ``torch.utils.data.DataLoader``."""

CHECKPOINT_FORMAT_VERSION = 1

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CHECKPOINT_KEYS = (
    "format_version",
    "model_state",
    "optimizer_state",
    "scheduler_state",
    "scaler_state",
    "epoch",
    "history",
    "class_names",
    "best_epoch",
)


class Trainer:
    """Train and evaluate a classifier on batches of images and integer labels.

    Loaders yield ``(images, labels)``: ``images`` a float tensor ``[B, C, H, W]``
    and ``labels`` an int64 tensor ``[B]`` of class indices. Images are cast to
    float32 before they move to the device, because MPS has no float64.

    Example:
        >>> import torch
        >>> from brainlake.models import create_model
        >>> from brainlake.training import Trainer
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> images = torch.randn(16, 1, 64, 64)
        >>> labels = torch.arange(16) % 2
        >>> loader = [(images[:8], labels[:8]), (images[8:], labels[8:])]
        >>> trainer = Trainer(create_model("cnn1", num_classes=2), device="cpu", max_epochs=2)
        >>> history = trainer.fit(loader, val_loader=loader)
        >>> [row["epoch"] for row in history]
        [1, 2]
        >>> trainer.evaluate(loader).num_samples
        16

    Args:
        model: The classifier. It is moved to the resolved device.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            :class:`torch.device`; see :func:`~brainlake.training.resolve_device`.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``; see
            :func:`~brainlake.training.resolve_precision`. fp16 uses gradient scaling.
        max_epochs: Number of epochs that :meth:`fit` trains in total, and the
            length of the cosine learning-rate schedule.
        learning_rate: Initial AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        seed: Seed for Python's, NumPy's and torch's global random generators,
            reset to ``seed + epoch`` at the start of each epoch. It fixes dropout
            and the shuffle order of loaders without their own generator, but
            not the model's initial weights: seed those before building the model.
        class_names: Name of each class index, for evaluation reports and
            checkpoints. Defaults to ``"0"``, ``"1"``, ...
        checkpoint_dir: Folder for ``best.pt`` (written whenever the monitored
            metric improves) and ``last.pt`` (written after every epoch). ``None``
            keeps the best weights in memory only.
        monitor: Validation metric that selects the best epoch: ``"val_accuracy"``
            and ``"val_macro_f1"`` are maximized, ``"val_loss"`` minimized.
        progress: Show a tqdm progress bar per epoch. ``None`` shows it only when
            standard error is a terminal.

    Raises:
        DeviceError: The requested device is not available.
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: PrecisionRequest = "auto",
        max_epochs: int = 10,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        monitor: Monitor = "val_accuracy",
        progress: bool | None = None,
    ) -> None:
        _validate_settings(
            model=model,
            max_epochs=max_epochs,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            seed=seed,
            class_names=class_names,
            monitor=monitor,
        )

        self._device = resolve_device(device)
        self._precision = resolve_precision(precision, self._device)
        self._model = model.to(self._device)
        self._max_epochs = max_epochs
        self._seed = seed
        self._class_names = list(class_names) if class_names is not None else None
        self._checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self._monitor: Monitor = monitor
        self._progress = sys.stderr.isatty() if progress is None else progress

        self._optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
        self._scheduler = CosineAnnealingLR(self._optimizer, T_max=max_epochs)
        self._scaler = torch.amp.GradScaler(self._device.type, enabled=self._precision == "fp16")

        self._epoch = 0
        self._history: list[HistoryRow] = []
        self._best_epoch: int | None = None
        self._best_score: float | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_checkpoint_path: Path | None = None
        self._num_outputs: int | None = None

    @property
    def model(self) -> nn.Module:
        """The model being trained, on :attr:`device`."""
        return self._model

    @property
    def device(self) -> torch.device:
        """The resolved training device."""
        return self._device

    @property
    def precision(self) -> Precision:
        """The resolved precision: ``"fp32"``, or the autocast type ``"bf16"`` or ``"fp16"``."""
        return self._precision

    @property
    def epoch(self) -> int:
        """Number of completed epochs, including those restored by :meth:`load_checkpoint`."""
        return self._epoch

    @property
    def history(self) -> list[HistoryRow]:
        """A copy of the per-epoch records; see :meth:`fit` for the keys."""
        return [dict(row) for row in self._history]

    @property
    def best_epoch(self) -> int | None:
        """Epoch (1-based) with the best monitored metric, or ``None`` before training."""
        return self._best_epoch

    @property
    def best_checkpoint_path(self) -> Path | None:
        """Path of ``best.pt`` once written, or ``None`` without a ``checkpoint_dir``."""
        return self._best_checkpoint_path

    @property
    def class_names(self) -> list[str] | None:
        """Class names given to the trainer or restored from a checkpoint."""
        return list(self._class_names) if self._class_names is not None else None

    def fit(self, train_loader: Batches, val_loader: Batches | None = None) -> list[HistoryRow]:
        """Train until :attr:`epoch` reaches ``max_epochs``, validating after each epoch.

        Training starts at epoch ``epoch + 1``, so after :meth:`load_checkpoint` it
        resumes where the checkpoint stopped. When an epoch improves the monitored
        metric, a copy of the weights is kept in memory (and written to
        ``checkpoint_dir/best.pt``). **At the end the best epoch's weights are
        loaded back into the model**, so ``trainer.model`` is the best model, not
        the last one. Without ``val_loader`` every epoch counts as an improvement
        and the last weights are kept.

        Args:
            train_loader: Training batches; iterated once per epoch.
            val_loader: Validation batches; evaluated after each epoch.

        Returns:
            The full history, one dict per epoch with ``epoch``, ``train_loss``,
            ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``val_macro_f1``
            (``None`` without ``val_loader``), ``lr`` (the learning rate of that
            epoch) and ``seconds`` (wall time of training and validation).

        Raises:
            TrainingError: A loader yields no batches or malformed ones, a label is
                outside the model's outputs, the training loss is not finite, or
                ``max_epochs`` epochs are already complete.
        """
        if self._epoch >= self._max_epochs:
            raise TrainingError(
                f"all max_epochs={self._max_epochs} epochs are already complete; "
                "create a new Trainer with a larger max_epochs to train further"
            )

        for epoch in range(self._epoch + 1, self._max_epochs + 1):
            row = self._run_epoch(epoch, train_loader, val_loader)
            self._history.append(row)
            self._epoch = epoch

            improved = self._update_best(row)
            self._write_checkpoints(improved)
            self._log_epoch(row)

        self._restore_best_weights()
        return self.history

    def evaluate(self, loader: Batches) -> Evaluation:
        """Compute loss and classification metrics of the model on ``loader``.

        The model runs in eval mode without gradients and returns to its previous
        mode afterwards. ``print()`` the result for a readable report.

        Raises:
            TrainingError: The loader yields no batches or malformed ones, or a
                label is outside the model's outputs.
        """
        return self._evaluate(loader, description="evaluate")

    def predict(self, loader: Iterable[Any]) -> torch.Tensor:
        """Run the model in eval mode on ``loader`` and return class probabilities.

        The result is a float32 CPU tensor ``[N, num_classes]`` whose rows sum to 1.

        Args:
            loader: Batches of images, or ``(images, labels)`` pairs whose labels
                are ignored.
        """
        probabilities: list[torch.Tensor] = []
        was_training = self._model.training
        self._model.eval()
        try:
            with torch.no_grad():
                for batch in self._progress_bar(loader, "predict"):
                    images = batch[0] if isinstance(batch, (tuple, list)) else batch
                    logits = self._forward(self._to_device_images(images))
                    probabilities.append(torch.softmax(logits.float(), dim=1).cpu())
        finally:
            self._model.train(was_training)
        if not probabilities:
            raise TrainingError("the loader given to predict yielded no batches")
        return torch.cat(probabilities)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the model, optimizer, schedule, epoch, history and class names to ``path``.

        The file is a dict of tensors and plain values with the keys
        ``model_state``, ``optimizer_state``, ``scheduler_state``, ``scaler_state``,
        ``epoch``, ``history``, ``class_names``, ``best_epoch``, ``monitor``,
        ``precision``, ``format_version``, and ``best_model_state`` when the best
        epoch is not the current one. It is written to a temporary file first and
        then renamed, so an interrupted write leaves the previous file intact.

        Returns:
            The path written.
        """
        target = Path(path)
        payload = self._checkpoint_payload()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        torch.save(payload, partial)
        os.replace(partial, target)
        logger.debug("wrote checkpoint of epoch %d to %s", self._epoch, target)
        return target

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore the state written by :meth:`save_checkpoint`.

        The model must have the same architecture as the one saved. The learning
        rate schedule continues with the ``max_epochs`` of the saved run.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            TrainingError: The file is not a brainlake checkpoint, or its class
                names differ from the ``class_names`` given to this trainer.
        """
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        _check_checkpoint(payload, path)
        saved_names = payload["class_names"]
        if self._class_names is not None and saved_names is not None:
            if list(saved_names) != self._class_names:
                raise TrainingError(
                    f"checkpoint {str(path)!r} was saved with class_names {saved_names!r}, "
                    f"but this trainer has {self._class_names!r}"
                )

        self._model.load_state_dict(payload["model_state"])
        self._optimizer.load_state_dict(payload["optimizer_state"])
        self._scheduler.load_state_dict(payload["scheduler_state"])
        # A disabled scaler saves an empty dict, which an enabled one rejects.
        if self._scaler.is_enabled() and payload["scaler_state"]:
            self._scaler.load_state_dict(payload["scaler_state"])

        self._epoch = int(payload["epoch"])
        self._history = [dict(row) for row in payload["history"]]
        if self._class_names is None and saved_names is not None:
            self._class_names = list(saved_names)
        self._restore_best_tracking(payload)
        logger.info("loaded checkpoint of epoch %d from %s", self._epoch, path)

    # -- one epoch ---------------------------------------------------------

    def _run_epoch(
        self, epoch: int, train_loader: Batches, val_loader: Batches | None
    ) -> HistoryRow:
        started = time.perf_counter()
        _seed_everything(self._seed + epoch)
        learning_rate = float(self._optimizer.param_groups[0]["lr"])

        train_loss, train_accuracy = self._train_one_epoch(epoch, train_loader)

        validation = None
        if val_loader is not None:
            validation = self._evaluate(val_loader, description=f"validate {epoch}")

        self._scheduler.step()
        return {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": validation.loss if validation else None,
            "val_accuracy": validation.accuracy if validation else None,
            "val_macro_f1": validation.macro_f1 if validation else None,
            "lr": learning_rate,
            "seconds": time.perf_counter() - started,
        }

    def _train_one_epoch(self, epoch: int, loader: Batches) -> tuple[float, float]:
        self._model.train()
        # Sums stay on the device so that steps do not wait for the GPU, except
        # for the progress bar's loss display. float32 because MPS has no float64.
        loss_sum = torch.zeros((), dtype=torch.float32, device=self._device)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        samples = 0

        progress_bar = self._progress_bar(loader, f"epoch {epoch}/{self._max_epochs}")
        for batch in progress_bar:
            images, labels = self._unpack_batch(batch)
            self._check_labels(images, labels)
            logits = self._forward(images)
            self._check_logits(logits, labels)
            labels = labels.to(self._device, non_blocking=True)
            loss = F.cross_entropy(logits.float(), labels)

            self._optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(self._scaler.scale(loss))
            self._scaler.step(self._optimizer)
            self._scaler.update()

            loss_sum += loss.detach() * labels.shape[0]
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            samples += labels.shape[0]
            if self._progress:
                progress_bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)

        if samples == 0:
            raise TrainingError(
                "the training loader yielded no batches; check its dataset and batch_size"
            )
        mean_loss = loss_sum.item() / samples
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"the training loss became {mean_loss} in epoch {epoch}; "
                "lower the learning_rate, or use precision='fp32' if it is fp16"
            )
        return mean_loss, correct.item() / samples

    def _evaluate(self, loader: Batches, *, description: str) -> Evaluation:
        loss_sum = torch.zeros((), dtype=torch.float32, device=self._device)
        all_labels: list[torch.Tensor] = []
        all_predictions: list[torch.Tensor] = []

        was_training = self._model.training
        self._model.eval()
        try:
            with torch.no_grad():
                for batch in self._progress_bar(loader, description):
                    images, labels = self._unpack_batch(batch)
                    self._check_labels(images, labels)
                    logits = self._forward(images)
                    self._check_logits(logits, labels)
                    device_labels = labels.to(self._device, non_blocking=True)
                    loss_sum += F.cross_entropy(logits.float(), device_labels, reduction="sum")
                    all_predictions.append(logits.argmax(dim=1).cpu())
                    all_labels.append(labels.cpu())
        finally:
            self._model.train(was_training)

        if not all_labels:
            raise TrainingError(f"the loader given to {description!r} yielded no batches")
        labels_array = torch.cat(all_labels)
        return Evaluation.from_predictions(
            labels_array,
            torch.cat(all_predictions),
            loss=loss_sum.item() / labels_array.numel(),
            class_names=self._resolved_class_names(),
        )

    # -- batches -----------------------------------------------------------

    def _unpack_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the images on the device and the labels where the loader left them."""
        if not isinstance(batch, (tuple, list)):
            raise TrainingError(
                f"each batch must be a pair (images, labels), got a {type(batch).__name__}"
            )
        if len(batch) != 2:
            raise TrainingError(
                f"each batch must be a pair (images, labels), got {len(batch)} items"
            )
        images, labels = batch
        if not isinstance(labels, torch.Tensor):
            raise TrainingError(
                f"labels must be an integer tensor of class indices, got {type(labels).__name__}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TrainingError(
                f"labels must be an integer tensor of class indices, got {labels.dtype}"
            )
        if labels.ndim != 1:
            raise TrainingError(f"labels must be 1-D [batch], got shape {tuple(labels.shape)!r}")
        return self._to_device_images(images), labels.long()

    def _to_device_images(self, images: Any) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TrainingError(f"images must be a torch.Tensor, got {type(images).__name__}")
        # Cast where the tensor is (the CPU for a DataLoader), before the move.
        return images.to(dtype=torch.float32).to(self._device, non_blocking=True)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        dtype = _AUTOCAST_DTYPES.get(self._precision)
        with torch.autocast(device_type=self._device.type, dtype=dtype, enabled=dtype is not None):
            logits: torch.Tensor = self._model(images)
        return logits

    def _check_labels(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Raise TrainingError unless every label is a valid index into the model's outputs."""
        if self._num_outputs is None:
            self._num_outputs = self._probe_num_outputs(images)
        num_outputs = self._num_outputs

        invalid = labels[(labels < 0) | (labels >= num_outputs)]
        if invalid.numel():
            raise TrainingError(
                f"label {int(invalid[0])!r} is outside the model's {num_outputs} outputs "
                f"(valid labels are 0..{num_outputs - 1}); build the model with a larger "
                "num_classes or fix the labels"
            )

    def _probe_num_outputs(self, images: torch.Tensor) -> int:
        """Return the model's number of logits from one sample, leaving the model unchanged.

        Eval mode keeps batch-norm statistics as they are, so a label error found
        on the first batch leaves no trace in the model.
        """
        was_training = self._model.training
        self._model.eval()
        try:
            with torch.no_grad():
                logits = self._forward(images[:1])
        finally:
            self._model.train(was_training)

        if logits.ndim != 2:
            raise TrainingError(
                f"the model returned shape {tuple(logits.shape)!r} for one image; "
                "a classifier must return logits [batch, num_classes]"
            )
        num_outputs = int(logits.shape[1])
        self._check_class_name_count(num_outputs)
        return num_outputs

    def _check_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        expected = (int(labels.shape[0]), self._num_outputs)
        if tuple(logits.shape) != expected:
            raise TrainingError(
                f"the model returned logits of shape {tuple(logits.shape)!r} for a batch "
                f"of {labels.shape[0]}, expected {expected!r}"
            )

    def _check_class_name_count(self, num_outputs: int) -> None:
        if self._class_names is not None and len(self._class_names) != num_outputs:
            raise TrainingError(
                f"class_names has {len(self._class_names)} names but the model has "
                f"{num_outputs} outputs: {self._class_names!r}"
            )

    def _resolved_class_names(self) -> list[str]:
        if self._class_names is not None:
            return list(self._class_names)
        return [str(index) for index in range(self._num_outputs or 0)]

    def _progress_bar(self, loader: Iterable[Any], description: str) -> tqdm[Any]:
        return tqdm(
            loader,
            desc=description,
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=not self._progress,
        )

    # -- best epoch and checkpoints -----------------------------------------

    def _update_best(self, row: HistoryRow) -> bool:
        """Record the epoch as the best if its monitored metric improved; return whether it did."""
        score = row[self._monitor]
        if score is None:
            improved = True
        elif math.isnan(score):
            improved = False
        elif self._best_score is None:
            improved = True
        elif self._monitor == "val_loss":
            improved = score < self._best_score
        else:
            improved = score > self._best_score

        if improved:
            self._best_epoch = int(row["epoch"] or 0)
            self._best_score = None if score is None else float(score)
            self._best_state = _copy_state(self._model.state_dict())
        return improved

    def _write_checkpoints(self, improved: bool) -> None:
        if self._checkpoint_dir is None:
            return
        if improved:
            self._best_checkpoint_path = self.save_checkpoint(self._checkpoint_dir / "best.pt")
        self.save_checkpoint(self._checkpoint_dir / "last.pt")

    def _restore_best_weights(self) -> None:
        if self._best_state is None or self._best_epoch == self._epoch:
            return
        self._model.load_state_dict(self._best_state)
        logger.info(
            "restored the weights of epoch %d, the best by %s (%.4f)",
            self._best_epoch,
            self._monitor,
            self._best_score,
        )

    def _restore_best_tracking(self, payload: dict[str, Any]) -> None:
        best_epoch = payload["best_epoch"]
        self._best_epoch = None if best_epoch is None else int(best_epoch)
        self._best_score = None
        self._best_state = None
        if self._best_epoch is None:
            return

        best_row = next((row for row in self._history if row["epoch"] == self._best_epoch), None)
        score = best_row.get(self._monitor) if best_row is not None else None
        self._best_score = None if score is None else float(score)
        if "best_model_state" in payload:
            self._best_state = _copy_state(payload["best_model_state"])
        elif self._best_epoch == self._epoch:
            self._best_state = _copy_state(self._model.state_dict())

    def _checkpoint_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model_state": _copy_state(self._model.state_dict()),
            "optimizer_state": self._optimizer.state_dict(),
            "scheduler_state": self._scheduler.state_dict(),
            "scaler_state": self._scaler.state_dict(),
            "epoch": self._epoch,
            "history": self.history,
            "class_names": self.class_names,
            "best_epoch": self._best_epoch,
            "monitor": self._monitor,
            "precision": self._precision,
        }
        if self._best_state is not None and self._best_epoch != self._epoch:
            payload["best_model_state"] = self._best_state
        return payload

    def _log_epoch(self, row: HistoryRow) -> None:
        validation = (
            "no validation"
            if row["val_loss"] is None
            else (
                f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f}, "
                f"val_macro_f1 {row['val_macro_f1']:.4f}"
            )
        )
        logger.info(
            "epoch %d/%d: train_loss %.4f, train_accuracy %.4f, %s, lr %.3g, %.1f s",
            row["epoch"],
            self._max_epochs,
            row["train_loss"],
            row["train_accuracy"],
            validation,
            row["lr"],
            row["seconds"],
        )


def _validate_settings(
    *,
    model: nn.Module,
    max_epochs: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    class_names: Sequence[str] | None,
    monitor: str,
) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1, got {max_epochs!r}")
    if not _is_finite_number(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not _is_finite_number(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if monitor not in get_args(Monitor):
        raise ValueError(f"monitor must be one of {list(get_args(Monitor))!r}, got {monitor!r}")
    if class_names is not None:
        if isinstance(class_names, str):
            raise ValueError(
                f"class_names must be a sequence of names, not the string {class_names!r}"
            )
        names = list(class_names)
        all_valid = all(isinstance(name, str) and name for name in names)
        if not all_valid or len(set(names)) != len(names):
            raise ValueError(f"class_names must be distinct non-empty strings, got {names!r}")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seed_everything(seed: int) -> None:
    # NumPy accepts seeds below 2**32 only.
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _copy_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a CPU copy of a state dict that later training steps cannot change."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


def _check_checkpoint(payload: object, path: str | os.PathLike[str]) -> None:
    if not isinstance(payload, dict):
        raise TrainingError(
            f"{str(path)!r} is not a brainlake checkpoint: it contains a {type(payload).__name__}"
        )
    missing = [key for key in _CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise TrainingError(
            f"{str(path)!r} is not a brainlake checkpoint: it lacks the keys {missing!r}; "
            "write checkpoints with Trainer.save_checkpoint"
        )
    if payload["format_version"] > CHECKPOINT_FORMAT_VERSION:
        raise TrainingError(
            f"{str(path)!r} has checkpoint format {payload['format_version']!r}, newer than "
            f"the {CHECKPOINT_FORMAT_VERSION} this brainlake reads; upgrade brainlake"
        )
