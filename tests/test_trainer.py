"""Tests for the Trainer on tiny synthetic data, on the CPU."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from brainlake.exceptions import TrainingError
from brainlake.models import create_model
from brainlake.training import Evaluation, Trainer
from brainlake.training.trainer import HistoryRow

SIZE = 32


def separable_dataset(samples: int = 32, seed: int = 0) -> TensorDataset:
    """Images of two classes: a bright square top-left (class 0) or bottom-right (class 1)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, 1, SIZE, SIZE, generator=generator) * 0.3
    labels = torch.arange(samples) % 2
    half = SIZE // 2
    images[labels == 0, :, :half, :half] += 1.5
    images[labels == 1, :, half:, half:] += 1.5
    return TensorDataset(images, labels)


def make_loader(dataset: TensorDataset, *, shuffle: bool = False) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=8, shuffle=shuffle)


def make_model(name: str = "cnn1", num_classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes)


def make_trainer(model: nn.Module, **options: Any) -> Trainer:
    settings: dict[str, Any] = {"device": "cpu", "max_epochs": 3, "progress": False}
    settings.update(options)
    return Trainer(model, **settings)


def parameters_of(model: nn.Module) -> list[torch.Tensor]:
    return [tensor.detach().clone() for tensor in model.state_dict().values()]


def test_fit_improves_accuracy() -> None:
    train = make_loader(separable_dataset(32, seed=0), shuffle=True)
    val = make_loader(separable_dataset(16, seed=1))
    trainer = make_trainer(make_model(), max_epochs=6, learning_rate=3e-3)
    before = trainer.evaluate(val)

    history = trainer.fit(train, val)

    after = trainer.evaluate(val)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert after.accuracy >= 0.9
    assert after.accuracy > before.accuracy
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # type: ignore[operator]


def test_history_rows_and_schedule() -> None:
    trainer = make_trainer(make_model(), max_epochs=3, learning_rate=1e-3)

    history = trainer.fit(make_loader(separable_dataset(16)), make_loader(separable_dataset(8)))

    assert set(history[0]) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_macro_f1",
        "lr",
        "seconds",
    }
    learning_rates = [float(row["lr"] or 0.0) for row in history]
    assert learning_rates[0] == pytest.approx(1e-3)
    assert learning_rates == sorted(learning_rates, reverse=True)
    assert learning_rates[1] == pytest.approx(1e-3 * 0.75)
    assert trainer.history == history
    assert trainer.epoch == 3
    assert trainer.best_epoch in (1, 2, 3)


def test_fit_without_validation() -> None:
    trainer = make_trainer(make_model(), max_epochs=2)

    history = trainer.fit(make_loader(separable_dataset(16)))

    assert history[0]["val_loss"] is None
    assert history[0]["val_accuracy"] is None
    assert trainer.best_epoch == 2


def test_best_checkpoint_written_and_loadable(tmp_path: Path) -> None:
    model = make_model()
    trainer = make_trainer(
        model, max_epochs=3, checkpoint_dir=tmp_path / "run", class_names=["left", "right"]
    )

    trainer.fit(make_loader(separable_dataset(16)), make_loader(separable_dataset(8, seed=1)))

    best_path = tmp_path / "run" / "best.pt"
    assert trainer.best_checkpoint_path == best_path
    assert (tmp_path / "run" / "last.pt").is_file()
    assert not list((tmp_path / "run").glob("*.partial"))
    checkpoint = torch.load(best_path, weights_only=True)
    assert checkpoint["epoch"] == trainer.best_epoch
    assert checkpoint["class_names"] == ["left", "right"]
    assert len(checkpoint["history"]) == trainer.best_epoch
    # fit restores the best weights, so the model equals best.pt.
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint["model_state"][name]), name

    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["epoch"] == 3
    assert len(last["history"]) == 3


def test_load_checkpoint_restores_state(tmp_path: Path) -> None:
    trainer = make_trainer(make_model(), max_epochs=2, class_names=["left", "right"])
    trainer.fit(make_loader(separable_dataset(16)), make_loader(separable_dataset(8)))
    path = trainer.save_checkpoint(tmp_path / "saved.pt")

    restored = make_trainer(make_model(seed=5), max_epochs=2)
    restored.load_checkpoint(path)

    assert restored.epoch == 2
    assert restored.history == trainer.history
    assert restored.best_epoch == trainer.best_epoch
    assert restored.class_names == ["left", "right"]
    for old, new in zip(parameters_of(trainer.model), parameters_of(restored.model), strict=True):
        assert torch.equal(old, new)
    with pytest.raises(TrainingError, match=r"all max_epochs=2 epochs are already complete"):
        restored.fit(make_loader(separable_dataset(16)))


def test_load_checkpoint_rejects_other_class_names(tmp_path: Path) -> None:
    trainer = make_trainer(make_model(), max_epochs=1, class_names=["left", "right"])
    path = trainer.save_checkpoint(tmp_path / "saved.pt")

    other = make_trainer(make_model(), class_names=["up", "down"])
    with pytest.raises(TrainingError, match=r"saved with class_names \['left', 'right'\]"):
        other.load_checkpoint(path)


def test_load_checkpoint_rejects_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)

    with pytest.raises(TrainingError, match=r"is not a brainlake checkpoint: it lacks the keys"):
        make_trainer(make_model()).load_checkpoint(path)


class CrashingLoader:
    """Yield the batches of ``loader`` but raise on the epoch numbered ``crash_at``."""

    def __init__(self, loader: DataLoader[Any], crash_at: int) -> None:
        self.loader = loader
        self.crash_at = crash_at
        self.epochs_started = 0

    def __iter__(self) -> Iterator[Any]:
        self.epochs_started += 1
        if self.epochs_started == self.crash_at:
            raise KeyboardInterrupt
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_resume_matches_uninterrupted_run(tmp_path: Path, schedule: str) -> None:
    dataset = separable_dataset(16)
    val = make_loader(separable_dataset(8, seed=1))
    uninterrupted = make_trainer(make_model(), max_epochs=3, schedule=schedule)
    uninterrupted.fit(make_loader(dataset, shuffle=True), val)

    interrupted = make_trainer(
        make_model(), max_epochs=3, checkpoint_dir=tmp_path, schedule=schedule
    )
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(CrashingLoader(make_loader(dataset, shuffle=True), crash_at=3), val)
    resumed = make_trainer(make_model(seed=9), max_epochs=3, schedule=schedule)
    resumed.load_checkpoint(tmp_path / "last.pt")
    assert resumed.epoch == 2
    resumed.fit(make_loader(dataset, shuffle=True), val)

    assert resumed.history[2]["train_loss"] == uninterrupted.history[2]["train_loss"]
    assert resumed.best_epoch == uninterrupted.best_epoch
    for old, new in zip(
        parameters_of(uninterrupted.model), parameters_of(resumed.model), strict=True
    ):
        assert torch.equal(old, new)


def test_seeded_runs_are_identical() -> None:
    results = []
    for _ in range(2):
        trainer = make_trainer(make_model("cnn1"), max_epochs=2, seed=7)
        trainer.fit(make_loader(separable_dataset(16), shuffle=True))
        results.append(parameters_of(trainer.model))

    for first, second in zip(*results, strict=True):
        assert torch.equal(first, second)


def test_different_seeds_differ() -> None:
    results = []
    for seed in (1, 2):
        trainer = make_trainer(make_model("cnn1"), max_epochs=1, seed=seed)
        trainer.fit(make_loader(separable_dataset(16), shuffle=True))
        results.append(parameters_of(trainer.model))

    assert any(not torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_bad_label_names_it_before_any_step() -> None:
    model = make_model(num_classes=3)
    before = parameters_of(model)
    images = torch.randn(4, 1, SIZE, SIZE)
    labels = torch.tensor([0, 2, 5, 1])

    expected = r"label 5 is outside the model's 3 outputs \(valid labels are 0..2\)"
    with pytest.raises(TrainingError, match=expected):
        make_trainer(model).fit([(images, labels)])

    for old, new in zip(before, parameters_of(model), strict=True):
        assert torch.equal(old, new)


def test_negative_label_rejected_in_evaluate() -> None:
    images = torch.randn(2, 1, SIZE, SIZE)
    with pytest.raises(TrainingError, match=r"label -1 is outside"):
        make_trainer(make_model()).evaluate([(images, torch.tensor([0, -1]))])


def test_malformed_batches_rejected() -> None:
    trainer = make_trainer(make_model())
    images = torch.randn(2, 1, SIZE, SIZE)

    with pytest.raises(TrainingError, match=r"integer tensor of class indices, got torch.float32"):
        trainer.fit([(images, torch.tensor([0.0, 1.0]))])
    with pytest.raises(TrainingError, match=r"must be a pair \(images, labels\), got 3 items"):
        trainer.fit([(images, torch.tensor([0, 1]), "extra")])
    with pytest.raises(TrainingError, match=r"must be a pair \(images, labels\), got a Tensor"):
        trainer.fit([images])
    with pytest.raises(TrainingError, match=r"training loader yielded no batches"):
        trainer.fit([])


def test_model_must_return_logits() -> None:
    # The final Flatten(0) turns [batch, 1] into [batch]: no class dimension.
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1), nn.Flatten(0))
    batch = (torch.randn(2, 1, SIZE, SIZE), torch.tensor([0, 1]))

    with pytest.raises(TrainingError, match=r"returned shape \(1,\) for one image"):
        make_trainer(model).fit([batch])


def test_class_name_count_must_match_outputs() -> None:
    trainer = make_trainer(make_model(num_classes=2), class_names=["a", "b", "c"])
    batch = (torch.randn(2, 1, SIZE, SIZE), torch.tensor([0, 1]))

    with pytest.raises(TrainingError, match=r"class_names has 3 names but the model has 2 outputs"):
        trainer.evaluate([batch])


def test_images_cast_to_float32() -> None:
    trainer = make_trainer(make_model(), max_epochs=1)
    images = torch.randn(4, 1, SIZE, SIZE, dtype=torch.float64)

    history = trainer.fit([(images, torch.tensor([0, 1, 0, 1], dtype=torch.uint8))])

    assert history[0]["train_loss"] is not None
    assert next(trainer.model.parameters()).dtype == torch.float32


def test_evaluate_report() -> None:
    trainer = make_trainer(make_model(), class_names=["left", "right"])
    loader = make_loader(separable_dataset(12))
    trainer.model.train()

    evaluation = trainer.evaluate(loader)

    assert isinstance(evaluation, Evaluation)
    assert evaluation.num_samples == 12
    assert evaluation.class_names == ["left", "right"]
    assert sum(map(sum, evaluation.confusion_matrix)) == 12
    assert evaluation.roc_auc is not None
    assert 0.0 <= evaluation.roc_auc <= 1.0
    assert evaluation.per_class["left"]["roc_auc"] is not None
    assert "left" in str(evaluation)
    assert trainer.model.training


class NaNModel(nn.Module):
    """A two-class model whose logits are all NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((images.shape[0], 2), float("nan")) * self.scale


def test_evaluate_nan_logits_leaves_auc_none() -> None:
    evaluation = make_trainer(NaNModel()).evaluate(make_loader(separable_dataset(8)))

    assert evaluation.roc_auc is None
    assert evaluation.per_class["0"]["roc_auc"] is None
    assert evaluation.num_samples == 8


def test_predict_probabilities() -> None:
    trainer = make_trainer(make_model())
    dataset = separable_dataset(10)

    probabilities = trainer.predict(make_loader(dataset))
    images_only = trainer.predict([dataset.tensors[0][:4]])

    assert probabilities.shape == (10, 2)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(10))
    torch.testing.assert_close(images_only, probabilities[:4])


def test_epoch_logged(caplog: pytest.LogCaptureFixture) -> None:
    trainer = make_trainer(make_model(), max_epochs=2)

    with caplog.at_level(logging.INFO, logger="brainlake.training.trainer"):
        trainer.fit(make_loader(separable_dataset(8)), make_loader(separable_dataset(8)))

    messages = [record.getMessage() for record in caplog.records]
    epoch_lines = [message for message in messages if message.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert epoch_lines[0].startswith("epoch 1/2: train_loss ")
    assert "val_accuracy" in epoch_lines[0]


def test_properties() -> None:
    trainer = make_trainer(make_model(), checkpoint_dir=None)

    assert trainer.device == torch.device("cpu")
    assert trainer.precision == "fp32"
    assert trainer.history == []
    assert trainer.best_epoch is None
    assert trainer.best_checkpoint_path is None
    assert trainer.class_names is None


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_epochs", 0, r"max_epochs must be an integer >= 1, got 0"),
        ("learning_rate", -1.0, r"learning_rate must be a positive number, got -1.0"),
        ("weight_decay", float("nan"), r"weight_decay must be a number >= 0, got nan"),
        ("seed", -3, r"seed must be an integer >= 0, got -3"),
        ("monitor", "accuracy", r"monitor must be one of \['val_accuracy'.*got 'accuracy'"),
        ("class_names", ["a", "a"], r"class_names must be distinct non-empty strings"),
        ("class_names", "ab", r"not the string 'ab'"),
        ("precision", "half", r"precision must be one of"),
        ("class_weights", "inverse", r"class_weights must be 'balanced'.*got 'inverse'"),
        ("class_weights", [1.0, -1.0], r"positive numbers, got \[1.0, -1.0\]"),
        ("class_weights", [], r"non-empty sequence of positive numbers, got \[\]"),
        ("label_smoothing", 1.0, r"label_smoothing must be a number in \[0, 1\), got 1.0"),
        ("max_grad_norm", 0.0, r"max_grad_norm must be a positive number or None, got 0.0"),
        ("schedule", "step", r"schedule must be one of \['cosine'.*got 'step'"),
        ("early_stopping_patience", 0, r"early_stopping_patience must be an integer >= 1"),
        ("callbacks", [1], r"callbacks must be callables taking \(trainer, row\), got 1"),
    ],
)
def test_invalid_settings(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_trainer(make_model(), **{option: value})


def test_monitor_val_loss_selects_lowest() -> None:
    trainer = make_trainer(make_model(), max_epochs=3, monitor="val_loss")

    history = trainer.fit(make_loader(separable_dataset(16)), make_loader(separable_dataset(8)))

    losses = [row["val_loss"] for row in history]
    assert trainer.best_epoch == losses.index(min(losses)) + 1  # type: ignore[type-var]


def imbalanced_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two batches with 9 samples of class 0 and 3 of class 1."""
    dataset = separable_dataset(12)
    images = dataset.tensors[0]
    labels = torch.tensor([0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1])
    return [(images[:6], labels[:6]), (images[6:], labels[6:])]


def first_train_loss(**options: Any) -> float:
    trainer = make_trainer(make_model(), max_epochs=1, **options)
    history = trainer.fit(make_loader(separable_dataset(16)))
    return float(history[0]["train_loss"] or 0.0)


def test_class_weights_change_loss() -> None:
    unweighted = first_train_loss()
    weighted = first_train_loss(class_weights=[1.0, 4.0])

    assert weighted != pytest.approx(unweighted, rel=1e-4)
    assert first_train_loss(class_weights=[1.0, 1.0]) == pytest.approx(unweighted)


def test_balanced_class_weights_from_counts() -> None:
    trainer = make_trainer(make_model(), max_epochs=1, class_weights="balanced")
    assert trainer.class_weights is None

    trainer.fit(imbalanced_batches())

    # 12 samples, 2 classes: 12 / (2 * 9) and 12 / (2 * 3).
    assert trainer.class_weights == pytest.approx([2 / 3, 2.0])


def test_balanced_weights_name_missing_class() -> None:
    images = torch.randn(4, 1, SIZE, SIZE)
    trainer = make_trainer(make_model(), class_weights="balanced", class_names=["left", "right"])

    with pytest.raises(TrainingError, match=r"class 'right' \(index 1\) has no samples"):
        trainer.fit([(images, torch.zeros(4, dtype=torch.int64))])


def test_class_weights_must_match_outputs() -> None:
    trainer = make_trainer(make_model(), class_weights=[1.0, 2.0, 3.0])

    with pytest.raises(TrainingError, match=r"class_weights has 3 values but the model has 2"):
        trainer.fit(make_loader(separable_dataset(8)))


def test_label_smoothing_changes_loss() -> None:
    plain = first_train_loss()
    smoothed = first_train_loss(label_smoothing=0.2)

    assert smoothed != pytest.approx(plain, rel=1e-4)


def gradient_norms_per_step(trainer: Trainer) -> list[float]:
    """Record the total gradient norm that each optimizer step receives."""
    norms: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        gradients = [
            parameter.grad.norm()
            for group in optimizer.param_groups
            for parameter in group["params"]
            if parameter.grad is not None
        ]
        norms.append(float(torch.stack(gradients).norm()))

    trainer._optimizer.register_step_pre_hook(record)
    return norms


def test_max_grad_norm_bounds_gradients() -> None:
    loader = make_loader(separable_dataset(16))
    unclipped = make_trainer(make_model(), max_epochs=1)
    unclipped_norms = gradient_norms_per_step(unclipped)
    clipped = make_trainer(make_model(), max_epochs=1, max_grad_norm=0.01)
    clipped_norms = gradient_norms_per_step(clipped)

    unclipped.fit(loader)
    clipped.fit(loader)

    assert len(clipped_norms) == 2
    assert max(unclipped_norms) > 0.01
    assert max(clipped_norms) <= 0.01 * (1 + 1e-4)


def learning_rates_per_step(trainer: Trainer) -> list[float]:
    rates: list[float] = []

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        rates.append(float(optimizer.param_groups[0]["lr"]))

    trainer._optimizer.register_step_pre_hook(record)
    return rates


def test_constant_schedule_keeps_learning_rate() -> None:
    trainer = make_trainer(make_model(), max_epochs=3, learning_rate=2e-3, schedule="constant")
    rates = learning_rates_per_step(trainer)

    history = trainer.fit(make_loader(separable_dataset(16)))

    assert [row["lr"] for row in history] == [2e-3, 2e-3, 2e-3]
    assert rates == [2e-3] * 6


def test_onecycle_rises_then_falls() -> None:
    trainer = make_trainer(make_model(), max_epochs=4, learning_rate=2e-3, schedule="onecycle")
    rates = learning_rates_per_step(trainer)

    history = trainer.fit(make_loader(separable_dataset(32)))

    assert len(rates) == 16
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1
    # The peak falls between two steps, so the largest step rate is just below it.
    assert max(rates) == pytest.approx(2e-3, rel=0.01)
    assert rates[: peak + 1] == sorted(rates[: peak + 1])
    assert rates[peak:] == sorted(rates[peak:], reverse=True)
    assert rates[-1] < rates[0]
    assert history[0]["lr"] == rates[0]


def test_onecycle_needs_loader_length() -> None:
    batches = make_loader(separable_dataset(8))
    trainer = make_trainer(make_model(), schedule="onecycle")

    with pytest.raises(TrainingError, match=r"has no len\(\)"):
        trainer.fit(batch for batch in batches)


def test_onecycle_rejects_other_loader_length() -> None:
    trainer = make_trainer(make_model(), max_epochs=3, schedule="onecycle")
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(CrashingLoader(make_loader(separable_dataset(16)), crash_at=2))

    with pytest.raises(TrainingError, match=r"created for 6 steps \(2 batches per epoch\)"):
        trainer.fit(make_loader(separable_dataset(32)))


def test_load_checkpoint_rejects_other_schedule(tmp_path: Path) -> None:
    path = make_trainer(make_model(), schedule="constant").save_checkpoint(tmp_path / "saved.pt")

    with pytest.raises(TrainingError, match=r"saved with schedule 'constant'"):
        make_trainer(make_model()).load_checkpoint(path)


def test_early_stopping_after_patience(caplog: pytest.LogCaptureFixture) -> None:
    # A linear model without batch norm and a negligible learning rate keeps the
    # validation accuracy of epoch 1, so epochs 2 and 3 are not improvements.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 2))
    trainer = make_trainer(model, max_epochs=8, learning_rate=1e-12, early_stopping_patience=2)

    with caplog.at_level(logging.INFO, logger="brainlake.training.trainer"):
        history = trainer.fit(make_loader(separable_dataset(16)), make_loader(separable_dataset(8)))

    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert trainer.epoch == 3
    assert trainer.best_epoch == 1
    messages = [record.getMessage() for record in caplog.records]
    stop_lines = [message for message in messages if "stopping early" in message]
    assert stop_lines == [
        "stopping early after epoch 3: val_accuracy has not improved for 2 epochs since epoch 1"
    ]


def test_early_stopping_needs_validation() -> None:
    trainer = make_trainer(make_model(), early_stopping_patience=2)

    with pytest.raises(ValueError, match=r"early_stopping_patience=2 needs a val_loader"):
        trainer.fit(make_loader(separable_dataset(8)))


def test_callbacks_receive_every_row() -> None:
    received: list[tuple[Trainer, HistoryRow]] = []
    epochs_seen: list[int] = []
    trainer = make_trainer(
        make_model(),
        max_epochs=3,
        callbacks=[
            lambda trainer, row: received.append((trainer, row)),
            lambda trainer, row: epochs_seen.append(trainer.epoch),
        ],
    )

    history = trainer.fit(make_loader(separable_dataset(8)), make_loader(separable_dataset(8)))

    assert [row for _, row in received] == history
    assert all(seen is trainer for seen, _ in received)
    assert epochs_seen == [1, 2, 3]


def test_hyperparameters_list_every_setting() -> None:
    trainer = make_trainer(make_model(), learning_rate=2e-3, weight_decay=0.01, schedule="constant",
                           label_smoothing=0.1, max_grad_norm=1.0, class_weights=[1.0, 2.0])

    settings = trainer.hyperparameters

    assert settings["learning_rate"] == 2e-3
    assert settings["weight_decay"] == 0.01
    assert settings["schedule"] == "constant"
    assert settings["label_smoothing"] == 0.1
    assert settings["max_grad_norm"] == 1.0
    assert settings["class_weights"] == [1.0, 2.0]
    assert settings["max_epochs"] == 3
    assert settings["precision"] == "fp32"
    assert settings["device"] == "cpu"
    assert settings["world_size"] == 1


def test_fit_sets_sampler_epoch_each_epoch() -> None:
    from brainlake.mart import ShardSampler

    dataset = separable_dataset(16)
    sampler = ShardSampler(len(dataset), num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=8, sampler=sampler)
    seen: list[tuple[int, list[int]]] = []

    def record(trainer: Trainer, row: HistoryRow) -> None:
        seen.append((sampler.epoch, list(sampler)))

    make_trainer(make_model(), max_epochs=2, callbacks=[record]).fit(loader)

    assert [epoch for epoch, _ in seen] == [1, 2]
    assert seen[0][1] != seen[1][1]
    assert sorted(seen[0][1]) == list(range(16))
