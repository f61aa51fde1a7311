"""The training loop: fit a classifier, keep its best epoch, evaluate it, checkpoint it.

:class:`Trainer` runs AdamW with a cosine, one-cycle or constant learning-rate
schedule and cross-entropy loss (optionally class-weighted and label-smoothed) on
any device that :func:`~brainlake.training.resolve_device` accepts. Checkpoints
contain only tensors and plain Python values, so they load with
``torch.load(path, weights_only=True)`` and need no brainlake import.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, OneCycleLR
from tqdm import tqdm

from brainlake.exceptions import TrainingError
from brainlake.training.device import (
    Precision,
    PrecisionRequest,
    resolve_device,
    resolve_precision,
)
from brainlake.training.distributed import (
    DistributedJob,
    find_job,
    gather_arrays,
    job_device,
    join_job,
    sum_across_ranks,
)
from brainlake.training.metrics import Evaluation

__all__ = ["Batches", "EpochCallback", "HistoryRow", "Monitor", "Schedule", "Trainer"]

logger = logging.getLogger(__name__)

Monitor = Literal["val_accuracy", "val_loss", "val_macro_f1"]
"""The validation metric that selects the best epoch."""

HistoryRow: TypeAlias = dict[str, float | int | None]
"""One epoch of :attr:`Trainer.history`.

Validation values are ``None`` when :meth:`Trainer.fit` had no validation loader.
"""

Batches: TypeAlias = Iterable[Any]
"""An iterable of ``(images, labels)`` pairs, such as a ``torch.utils.data.DataLoader``."""

Schedule = Literal["cosine", "onecycle", "constant"]
"""The learning-rate schedule of :class:`Trainer`."""

EpochCallback: TypeAlias = Callable[["Trainer", HistoryRow], None]
"""A function that :meth:`Trainer.fit` calls after each epoch with the trainer and its row."""

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
            length of the learning-rate schedule.
        learning_rate: Initial AdamW learning rate, and the peak learning rate
            of the ``"onecycle"`` schedule.
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
        class_weights: Weight of each class in the training cross-entropy, one
            positive number per model output. ``"balanced"`` makes :meth:`fit`
            count the labels of ``train_loader`` in one extra pass and use
            ``num_samples / (num_classes * count)``. ``None`` weights all classes 1.
            Validation and :meth:`evaluate` losses stay unweighted.
        label_smoothing: Label smoothing of the training cross-entropy, in
            ``[0, 1)``. Validation and :meth:`evaluate` losses use none.
        max_grad_norm: Clip the gradients so that their total L2 norm is at most
            this value before each step; with fp16 they are unscaled first.
            ``None`` disables clipping.
        schedule: ``"cosine"`` anneals the learning rate per epoch to 0 over
            ``max_epochs``. ``"onecycle"`` (:class:`torch.optim.lr_scheduler.OneCycleLR`)
            steps per batch, warming up to ``learning_rate`` and annealing to near 0,
            so :meth:`fit` needs a ``train_loader`` with ``len()``. ``"constant"``
            keeps ``learning_rate``.
        early_stopping_patience: Stop :meth:`fit` once the monitored metric has not
            improved for this many epochs. Needs a ``val_loader``. ``None`` trains
            all ``max_epochs``.
        callbacks: Functions called after every epoch, in order, with the trainer
            and a copy of that epoch's history row. Under DDP they run on every rank.
        distributed: Train data-parallel (DDP) as one rank of a ``torch.distributed``
            job. ``None`` does so when ``torchrun`` started the process with
            ``WORLD_SIZE`` above 1 or a process group is initialized; ``False``
            never; ``True`` requires a job. The trainer then initializes the
            process group if needed (NCCL for CUDA, gloo otherwise), puts an
            index-free CUDA device on GPU ``LOCAL_RANK``, wraps the model in
            :class:`~torch.nn.parallel.DistributedDataParallel`, sums losses and
            evaluation counts over the ranks, and logs, shows progress and writes
            checkpoints on rank 0 only. Each rank should get its own shard of the
            data, as :meth:`brainlake.BuiltMart.loader` gives under ``torchrun``.

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
        class_weights: Sequence[float] | Literal["balanced"] | None = None,
        label_smoothing: float = 0.0,
        max_grad_norm: float | None = None,
        schedule: Schedule = "cosine",
        early_stopping_patience: int | None = None,
        callbacks: Sequence[EpochCallback] = (),
        distributed: bool | None = None,
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
        _validate_loss_settings(
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            max_grad_norm=max_grad_norm,
        )
        _validate_loop_settings(
            schedule=schedule,
            early_stopping_patience=early_stopping_patience,
            callbacks=callbacks,
        )

        self._job: DistributedJob | None = find_job(distributed)
        with _device_logs_silenced(self._job is not None and not self._job.is_main):
            self._device = resolve_device(device)
            if self._job is not None:
                self._device = job_device(self._job, self._device)
                join_job(self._job, self._device)
            self._precision = resolve_precision(precision, self._device)
        self._model = model.to(self._device)
        # Training steps run through the DDP wrapper, which averages gradients
        # across ranks. Evaluation and checkpoints use the plain model, so state
        # dicts carry no "module." prefix and evaluation needs no collective per batch.
        self._network: nn.Module = self._model
        if self._job is not None:
            device_ids = [self._device.index] if self._device.type == "cuda" else None
            self._network = DistributedDataParallel(self._model, device_ids=device_ids)
        self._max_epochs = max_epochs
        self._seed = seed
        self._class_names = list(class_names) if class_names is not None else None
        self._checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self._monitor: Monitor = monitor
        self._progress = sys.stderr.isatty() if progress is None else progress
        if self._job is not None and not self._job.is_main:
            self._progress = False
        self._learning_rate = learning_rate
        self._weight_decay = weight_decay
        self._balanced_class_weights = class_weights == "balanced"
        self._class_weights: list[float] | None = None
        if class_weights is not None and not isinstance(class_weights, str):
            self._class_weights = [float(weight) for weight in class_weights]
        self._class_weight_tensor: torch.Tensor | None = None
        self._label_smoothing = float(label_smoothing)
        self._max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self._schedule: Schedule = schedule
        self._early_stopping_patience = early_stopping_patience
        self._callbacks = list(callbacks)

        self._optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
        # The one-cycle length depends on len(train_loader), so fit creates it.
        self._scheduler: LRScheduler | None = self._create_epoch_scheduler()
        # Optimizer and scheduler states loaded before the one-cycle scheduler exists.
        self._pending_schedule_state: tuple[dict[str, Any], dict[str, Any] | None] | None = None
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
    def hyperparameters(self) -> dict[str, Any]:
        """The training settings as plain values, for run records.

        ``class_weights`` is the list in use, so after ``"balanced"`` has been
        resolved by :meth:`fit` it is the computed weights.
        """
        return {
            "max_epochs": self._max_epochs,
            "learning_rate": self._learning_rate,
            "weight_decay": self._weight_decay,
            "optimizer": "AdamW",
            "schedule": self._schedule,
            "seed": self._seed,
            "monitor": self._monitor,
            "class_weights": self.class_weights,
            "balanced_class_weights": self._balanced_class_weights,
            "label_smoothing": self._label_smoothing,
            "max_grad_norm": self._max_grad_norm,
            "early_stopping_patience": self._early_stopping_patience,
            "device": str(self._device),
            "precision": self._precision,
            "world_size": self.world_size,
        }

    @property
    def rank(self) -> int:
        """This process's rank in a DDP job, 0 when training in one process."""
        return self._job.rank if self._job is not None else 0

    @property
    def world_size(self) -> int:
        """Number of DDP processes training together, 1 when training in one process."""
        return self._job.world_size if self._job is not None else 1

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
        """Path of ``best.pt`` once written, or ``None`` without a ``checkpoint_dir`` or off rank 0."""
        return self._best_checkpoint_path

    @property
    def class_names(self) -> list[str] | None:
        """Class names given to the trainer or restored from a checkpoint."""
        return list(self._class_names) if self._class_names is not None else None

    @property
    def class_weights(self) -> list[float] | None:
        """Cross-entropy weight of each class, or ``None`` for equal weights.

        With ``class_weights="balanced"`` it is ``None`` until :meth:`fit` counts
        the training labels.
        """
        return list(self._class_weights) if self._class_weights is not None else None

    def fit(self, train_loader: Batches, val_loader: Batches | None = None) -> list[HistoryRow]:
        """Train until :attr:`epoch` reaches ``max_epochs``, validating after each epoch.

        Training starts at epoch ``epoch + 1``, so after :meth:`load_checkpoint` it
        resumes where the checkpoint stopped. When an epoch improves the monitored
        metric, a copy of the weights is kept in memory (and written to
        ``checkpoint_dir/best.pt``). **At the end the best epoch's weights are
        loaded back into the model**, so ``trainer.model`` is the best model, not
        the last one. Without ``val_loader`` every epoch counts as an improvement
        and the last weights are kept. With ``early_stopping_patience`` training
        stops before ``max_epochs`` once the monitored metric has not improved for
        that many epochs, and the history ends at the last epoch run.

        Args:
            train_loader: Training batches; iterated once per epoch.
            val_loader: Validation batches; evaluated after each epoch.

        Returns:
            The full history, one dict per epoch with ``epoch``, ``train_loss``,
            ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``val_macro_f1``
            (``None`` without ``val_loader``), ``lr`` (the learning rate at the
            start of that epoch) and ``seconds`` (wall time of training and
            validation). ``train_loss`` is the weighted, label-smoothed training
            objective when those options are set.

        Raises:
            TrainingError: A loader yields no batches or malformed ones, a label is
                outside the model's outputs, the training loss is not finite, or
                ``max_epochs`` epochs are already complete. Also when
                ``class_weights`` does not match the model's outputs, a class has
                no training samples for ``class_weights="balanced"``, or
                ``schedule="onecycle"`` gets a ``train_loader`` without ``len()``.
            ValueError: ``early_stopping_patience`` is set but ``val_loader`` is not.
        """
        if self._epoch >= self._max_epochs:
            raise TrainingError(
                f"all max_epochs={self._max_epochs} epochs are already complete; "
                "create a new Trainer with a larger max_epochs to train further"
            )
        if self._early_stopping_patience is not None and val_loader is None:
            raise ValueError(
                f"early_stopping_patience={self._early_stopping_patience!r} needs a val_loader; "
                "pass val_loader to fit or set early_stopping_patience=None"
            )
        self._check_shards(train_loader)
        self._create_one_cycle_scheduler(train_loader)
        if self._balanced_class_weights:
            self._class_weights = self._balanced_weights(train_loader)
            self._class_weight_tensor = None

        for epoch in range(self._epoch + 1, self._max_epochs + 1):
            if self._patience_exhausted():
                break
            row = self._run_epoch(epoch, train_loader, val_loader)
            self._history.append(row)
            self._epoch = epoch

            improved = self._update_best(row)
            self._write_checkpoints(improved)
            self._log_epoch(row)
            for callback in self._callbacks:
                callback(self, dict(row))

        self._restore_best_weights()
        return self.history

    def evaluate(self, loader: Batches) -> Evaluation:
        """Compute loss and classification metrics of the model on ``loader``.

        ROC-AUC comes from the softmax probabilities, so it is ``None`` when the
        model returns non-finite logits.

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
        rate schedule continues with the ``max_epochs`` of the saved run, and the
        ``"onecycle"`` schedule also with its number of steps.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            TrainingError: The file is not a brainlake checkpoint, or its class
                names or schedule differ from those of this trainer.
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

        saved_schedule = payload.get("schedule", "cosine")
        if saved_schedule != self._schedule:
            raise TrainingError(
                f"checkpoint {str(path)!r} was saved with schedule {saved_schedule!r}, "
                f"but this trainer has {self._schedule!r}; create the Trainer with "
                f"schedule={saved_schedule!r} to resume it"
            )

        self._model.load_state_dict(payload["model_state"])
        self._optimizer.load_state_dict(payload["optimizer_state"])
        scheduler_state = payload["scheduler_state"]
        if self._scheduler is not None and scheduler_state is not None:
            self._scheduler.load_state_dict(scheduler_state)
        elif self._scheduler is None:
            self._pending_schedule_state = (payload["optimizer_state"], scheduler_state)
        # A disabled scaler saves an empty dict, which an enabled one rejects.
        if self._scaler.is_enabled() and payload["scaler_state"]:
            self._scaler.load_state_dict(payload["scaler_state"])

        self._epoch = int(payload["epoch"])
        self._history = [dict(row) for row in payload["history"]]
        if self._class_names is None and saved_names is not None:
            self._class_names = list(saved_names)
        self._restore_best_tracking(payload)
        self._log(logging.INFO, "loaded checkpoint of epoch %d from %s", self._epoch, path)

    # -- one epoch ---------------------------------------------------------

    def _run_epoch(
        self, epoch: int, train_loader: Batches, val_loader: Batches | None
    ) -> HistoryRow:
        started = time.perf_counter()
        _seed_everything(self._seed + epoch)
        for loader in (train_loader, val_loader):
            _set_sampler_epoch(loader, epoch)
        learning_rate = float(self._optimizer.param_groups[0]["lr"])

        train_loss, train_accuracy = self._train_one_epoch(epoch, train_loader)

        validation = None
        if val_loader is not None:
            validation = self._evaluate(val_loader, description=f"validate {epoch}")

        if self._schedule != "onecycle":
            self._require_scheduler().step()
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
        self._network.train()
        # Sums stay on the device so that steps do not wait for the GPU, except
        # for the progress bar's loss display. float32 because MPS has no float64.
        loss_sum = torch.zeros((), dtype=torch.float32, device=self._device)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        samples = 0

        progress_bar = self._progress_bar(loader, f"epoch {epoch}/{self._max_epochs}")
        for batch in progress_bar:
            images, labels = self._unpack_batch(batch)
            self._check_labels(images, labels)
            logits = self._forward(images, self._network)
            self._check_logits(logits, labels)
            labels = labels.to(self._device, non_blocking=True)
            loss = F.cross_entropy(
                logits.float(),
                labels,
                weight=self._loss_weights(),
                label_smoothing=self._label_smoothing,
            )

            self._optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(self._scaler.scale(loss))
            if self._max_grad_norm is not None:
                # Clip the true gradients, not the fp16-scaled ones.
                self._scaler.unscale_(self._optimizer)
                nn.utils.clip_grad_norm_(self._model.parameters(), self._max_grad_norm)
            self._scaler.step(self._optimizer)
            self._scaler.update()
            if self._schedule == "onecycle":
                self._require_scheduler().step()

            loss_sum += loss.detach() * labels.shape[0]
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            samples += labels.shape[0]
            if self._progress:
                progress_bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)

        if self._job is not None:
            # Sums, not means, so that ranks with more samples weigh more.
            local_sample_count = torch.tensor(float(samples), device=self._device)
            totals = torch.stack([loss_sum.float(), correct.float(), local_sample_count])
            loss_total, correct_total, sample_total = sum_across_ranks(totals, self._device).tolist()
            loss_sum = torch.tensor(loss_total)
            correct = torch.tensor(int(correct_total))
            samples = int(sample_total)
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
        all_probabilities: list[torch.Tensor] = []

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
                    all_probabilities.append(torch.softmax(logits.float(), dim=1).cpu())
                    all_labels.append(labels.cpu())
        finally:
            self._model.train(was_training)

        labels_array, predictions, probabilities, total_loss = self._combine_ranks(
            all_labels, all_predictions, all_probabilities, loss_sum
        )
        if labels_array.numel() == 0:
            raise TrainingError(f"the loader given to {description!r} yielded no batches")
        finite_probabilities = bool(torch.isfinite(probabilities).all())
        if not finite_probabilities:
            self._log(
                logging.WARNING,
                "the model returned non-finite logits in %r, so its ROC-AUC is None",
                description,
            )
        return Evaluation.from_predictions(
            labels_array,
            predictions,
            loss=total_loss / labels_array.numel(),
            class_names=self._resolved_class_names(),
            probabilities=probabilities if finite_probabilities else None,
        )

    def _combine_ranks(
        self,
        labels: list[torch.Tensor],
        predictions: list[torch.Tensor],
        probabilities: list[torch.Tensor],
        loss_sum: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Concatenate one evaluation's batches, over all ranks under DDP.

        Every rank gets every sample's label, prediction and probabilities, so
        each computes the same metrics with each sample counted once, provided
        the ranks evaluated disjoint shards. A rank with an empty shard still
        takes part, so that no rank waits forever.
        """
        num_classes = self._num_outputs or 0
        local = {
            "labels": torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64),
            "predictions": (
                torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)
            ),
            "probabilities": (
                torch.cat(probabilities).numpy()
                if probabilities
                else np.zeros((0, num_classes), dtype=np.float32)
            ),
        }
        total_loss = float(loss_sum.item())
        if self._job is not None:
            local = gather_arrays(local)
            total_loss = float(sum_across_ranks(loss_sum.reshape(1), self._device).item())
        return (
            torch.from_numpy(local["labels"]),
            torch.from_numpy(local["predictions"]),
            torch.from_numpy(local["probabilities"]),
            total_loss,
        )

    # -- batches -----------------------------------------------------------

    def _unpack_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the images on the device and the labels where the loader left them."""
        images, labels = self._split_batch(batch)
        return self._to_device_images(images), labels

    def _split_batch(self, batch: Any) -> tuple[Any, torch.Tensor]:
        """Return the images as the loader gave them and the checked int64 labels."""
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
        return images, labels.long()

    def _to_device_images(self, images: Any) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TrainingError(f"images must be a torch.Tensor, got {type(images).__name__}")
        # Cast where the tensor is (the CPU for a DataLoader), before the move.
        return images.to(dtype=torch.float32).to(self._device, non_blocking=True)

    def _forward(self, images: torch.Tensor, network: nn.Module | None = None) -> torch.Tensor:
        """Run ``network`` (the plain model by default) under the resolved autocast."""
        dtype = _AUTOCAST_DTYPES.get(self._precision)
        with torch.autocast(device_type=self._device.type, dtype=dtype, enabled=dtype is not None):
            logits: torch.Tensor = (network or self._model)(images)
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

    # -- loss and schedule ---------------------------------------------------

    def _loss_weights(self) -> torch.Tensor | None:
        """Return the class weights on the device, checked against the model's outputs."""
        if self._class_weights is None:
            return None
        if self._class_weight_tensor is None:
            if len(self._class_weights) != self._num_outputs:
                raise TrainingError(
                    f"class_weights has {len(self._class_weights)} values but the model has "
                    f"{self._num_outputs} outputs: {self._class_weights!r}; pass one weight "
                    "per class"
                )
            self._class_weight_tensor = torch.tensor(
                self._class_weights, dtype=torch.float32, device=self._device
            )
        return self._class_weight_tensor

    def _balanced_weights(self, loader: Batches) -> list[float]:
        """Count the labels of one pass over ``loader`` and weight classes inversely."""
        counts: torch.Tensor | None = None
        for batch in loader:
            images, labels = self._split_batch(batch)
            if self._num_outputs is None:
                images = self._to_device_images(images)
            self._check_labels(images, labels)
            batch_counts = torch.bincount(labels.cpu(), minlength=self._num_outputs or 0)
            counts = batch_counts if counts is None else counts + batch_counts
        if counts is None:
            raise TrainingError(
                "the training loader yielded no batches; check its dataset and batch_size"
            )
        if self._job is not None:
            counts = sum_across_ranks(counts, self._device).long()

        names = self._resolved_class_names()
        for index, count in enumerate(counts.tolist()):
            if count == 0:
                raise TrainingError(
                    f"class {names[index]!r} (index {index}) has no samples in the training "
                    "loader, so class_weights='balanced' cannot weight it; add samples of "
                    "that class or pass explicit class_weights"
                )
        total = int(counts.sum())
        weights = [total / (len(names) * count) for count in counts.tolist()]
        self._log(logging.INFO, "balanced class weights: %s", dict(zip(names, weights, strict=True)))
        return weights

    def _create_epoch_scheduler(self) -> LRScheduler | None:
        if self._schedule == "cosine":
            return CosineAnnealingLR(self._optimizer, T_max=self._max_epochs)
        if self._schedule == "constant":
            return ConstantLR(self._optimizer, factor=1.0, total_iters=0)
        return None

    def _create_one_cycle_scheduler(self, train_loader: Batches) -> None:
        """Create the per-batch one-cycle scheduler on the first fit, then resume its state."""
        if self._schedule != "onecycle":
            return
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            raise TrainingError(
                f"schedule='onecycle' needs the number of batches per epoch, but the "
                f"train_loader, a {type(train_loader).__name__}, has no len(); pass a "
                "DataLoader or a list, or use schedule='cosine'"
            ) from None
        if steps_per_epoch < 1:
            raise TrainingError(
                "the training loader yielded no batches; check its dataset and batch_size"
            )

        if self._scheduler is None:
            self._scheduler = OneCycleLR(
                self._optimizer,
                max_lr=self._learning_rate,
                total_steps=steps_per_epoch * self._max_epochs,
            )
            if self._pending_schedule_state is not None:
                # OneCycleLR's constructor overwrote the learning rate and betas of the
                # loaded optimizer, so the saved optimizer state is loaded again.
                optimizer_state, scheduler_state = self._pending_schedule_state
                if scheduler_state is not None:
                    self._scheduler.load_state_dict(scheduler_state)
                self._optimizer.load_state_dict(optimizer_state)
                self._pending_schedule_state = None

        # A resumed schedule keeps its saved length, and OneCycleLR raises once a
        # step goes past it, so a loader of another length is rejected up front.
        assert isinstance(self._scheduler, OneCycleLR)
        planned_steps = self._scheduler.total_steps
        if planned_steps != steps_per_epoch * self._max_epochs:
            raise TrainingError(
                f"the one-cycle schedule was created for {planned_steps} steps "
                f"({planned_steps // self._max_epochs} batches per epoch), but the "
                f"train_loader has {steps_per_epoch} batches per epoch; resume with a "
                "train_loader of the original length"
            )

    def _require_scheduler(self) -> LRScheduler:
        if self._scheduler is None:
            raise TrainingError(f"the {self._schedule!r} scheduler was not created before training")
        return self._scheduler

    def _patience_exhausted(self) -> bool:
        """Return whether early stopping ends training now, logging when it does."""
        patience = self._early_stopping_patience
        if patience is None or self._best_epoch is None:
            return False
        stale_epochs = self._epoch - self._best_epoch
        if stale_epochs < patience:
            return False
        self._log(
            logging.INFO,
            "stopping early after epoch %d: %s has not improved for %d epochs since epoch %d",
            self._epoch,
            self._monitor,
            stale_epochs,
            self._best_epoch,
        )
        return True

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
        # Every rank has the same weights, so rank 0 writes for all of them.
        if self._checkpoint_dir is None or self.rank != 0:
            return
        if improved:
            self._best_checkpoint_path = self.save_checkpoint(self._checkpoint_dir / "best.pt")
        self.save_checkpoint(self._checkpoint_dir / "last.pt")

    def _restore_best_weights(self) -> None:
        if self._best_state is None or self._best_epoch == self._epoch:
            return
        self._model.load_state_dict(self._best_state)
        self._log(
            logging.INFO,
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
            "scheduler_state": self._scheduler_state(),
            "scaler_state": self._scaler.state_dict(),
            "epoch": self._epoch,
            "history": self.history,
            "class_names": self.class_names,
            "best_epoch": self._best_epoch,
            "monitor": self._monitor,
            "precision": self._precision,
            "schedule": self._schedule,
        }
        if self._best_state is not None and self._best_epoch != self._epoch:
            payload["best_model_state"] = self._best_state
        return payload

    def _scheduler_state(self) -> dict[str, Any] | None:
        """Return the scheduler state, or the one loaded for a one-cycle run not yet resumed."""
        if self._scheduler is not None:
            return self._scheduler.state_dict()
        if self._pending_schedule_state is not None:
            return self._pending_schedule_state[1]
        return None

    def _log(self, level: int, message: str, *arguments: object) -> None:
        """Log on rank 0 only, because under DDP every rank reaches the same events."""
        if self.rank == 0:
            logger.log(level, message, *arguments)

    def _check_shards(self, train_loader: Batches) -> None:
        """Under DDP, reject ranks with different numbers of steps and warn about unsharded loaders.

        DDP averages gradients in every step, so a rank with more batches than
        the others would wait for them forever.
        """
        if self._job is None:
            return
        if _sampler_with_epochs(train_loader) is None:
            self._log(
                logging.WARNING,
                "the train_loader has no sampler with set_epoch, so each of the %d ranks may train "
                "on the whole data set; use BuiltMart.loader or a DistributedSampler",
                self._job.world_size,
            )
        try:
            steps = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            return
        gathered = gather_arrays({"steps": np.array([steps])})["steps"]
        if int(gathered.min()) != int(gathered.max()):
            raise TrainingError(
                f"the ranks' train_loaders have different numbers of batches per epoch "
                f"({gathered.tolist()!r}); DDP needs the same number on every rank, so give each "
                "rank an equal shard (BuiltMart.loader with shuffle=True does)"
            )

    def _log_epoch(self, row: HistoryRow) -> None:
        validation = (
            "no validation"
            if row["val_loss"] is None
            else (
                f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f}, "
                f"val_macro_f1 {row['val_macro_f1']:.4f}"
            )
        )
        self._log(
            logging.INFO,
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


def _validate_loss_settings(
    *,
    class_weights: Sequence[float] | str | None,
    label_smoothing: float,
    max_grad_norm: float | None,
) -> None:
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be 'balanced', a sequence of weights or None, "
                f"got {class_weights!r}"
            )
    elif class_weights is not None:
        weights = list(class_weights)
        if not weights or not all(_is_finite_number(weight) and weight > 0 for weight in weights):
            raise ValueError(
                f"class_weights must be a non-empty sequence of positive numbers, got {weights!r}"
            )
    if not _is_finite_number(label_smoothing) or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    if max_grad_norm is not None and (not _is_finite_number(max_grad_norm) or max_grad_norm <= 0):
        raise ValueError(
            f"max_grad_norm must be a positive number or None, got {max_grad_norm!r}"
        )


def _validate_loop_settings(
    *,
    schedule: str,
    early_stopping_patience: int | None,
    callbacks: Sequence[object],
) -> None:
    if schedule not in get_args(Schedule):
        raise ValueError(
            f"schedule must be one of {list(get_args(Schedule))!r}, got {schedule!r}"
        )
    if early_stopping_patience is not None and (
        isinstance(early_stopping_patience, bool)
        or not isinstance(early_stopping_patience, int)
        or early_stopping_patience < 1
    ):
        raise ValueError(
            "early_stopping_patience must be an integer >= 1 or None, "
            f"got {early_stopping_patience!r}"
        )
    for callback in callbacks:
        if not callable(callback):
            raise ValueError(
                f"callbacks must be callables taking (trainer, row), got {callback!r}"
            )


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seed_everything(seed: int) -> None:
    # NumPy accepts seeds below 2**32 only.
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _device_logs_silenced(silenced: bool) -> Iterator[None]:
    """Drop the device and precision choices that ranks other than 0 would log again."""
    if not silenced:
        yield
        return
    device_logger = logging.getLogger(resolve_device.__module__)
    def drop_all(record: logging.LogRecord) -> bool:
        return False

    device_logger.addFilter(drop_all)
    try:
        yield
    finally:
        device_logger.removeFilter(drop_all)


def _sampler_with_epochs(loader: object) -> Any:
    """Return the loader's sampler if it has ``set_epoch``, looking inside wrapping loaders."""
    for candidate in (loader, getattr(loader, "loader", None)):
        sampler = getattr(candidate, "sampler", None)
        if callable(getattr(sampler, "set_epoch", None)):
            return sampler
    return None


def _set_sampler_epoch(loader: object, epoch: int) -> None:
    sampler = _sampler_with_epochs(loader)
    if sampler is not None:
        sampler.set_epoch(epoch)


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
