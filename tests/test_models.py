"""Tests for the model registry and the built-in models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from brainlake.exceptions import DuplicateNameError, UnknownModelError
from brainlake.models import (
    ModelCard,
    create_model,
    is_model,
    list_models,
    model_card,
    register_model,
)
from brainlake.models import _registry
from brainlake.models.cnn import ConvNet
from brainlake.training import Trainer

BUILT_IN_MODELS = ["cnn1", "cnn2", "cnn3", "fc", "resnet18"]


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test register models without leaking them into other tests."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    yield


def _tiny_factory(num_classes: int, in_channels: int, *, width: int = 8) -> nn.Module:
    """Two linear layers on an 8x8 average-pooled image."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(8),
        nn.Flatten(),
        nn.Linear(in_channels * 64, width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
    )


def test_built_in_models_are_registered() -> None:
    assert list_models() == BUILT_IN_MODELS


@pytest.mark.parametrize("name", list_models())
def test_model_forward_and_train_step(name: str) -> None:
    for in_channels in (1, 3):
        torch.manual_seed(0)
        model = create_model(name, num_classes=4, in_channels=in_channels)

        model.train()
        for size in (64, 96):
            logits = model(torch.randn(2, in_channels, size, size))
            assert logits.shape == (2, 4), (in_channels, size)

        model.eval()
        with torch.no_grad():
            single = model(torch.randn(1, in_channels, 80, 72))
        assert single.shape == (1, 4)
        assert torch.isfinite(single).all()

    model = create_model(name, num_classes=3, in_channels=1)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    batch = (torch.randn(4, 1, 64, 64), torch.tensor([0, 1, 2, 1]))
    trainer = Trainer(model, device="cpu", max_epochs=1, progress=False)
    history = trainer.fit([batch])
    assert len(history) == 1
    assert history[0]["train_loss"] is not None
    changed = [
        not torch.equal(old, new) for old, new in zip(before, model.parameters(), strict=True)
    ]
    assert any(changed)


def test_create_model_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2, got 1"):
        create_model("cnn2", num_classes=1)
    with pytest.raises(ValueError, match=r"in_channels must be an integer >= 1, got 0"):
        create_model("cnn2", num_classes=4, in_channels=0)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2, got True"):
        create_model("cnn2", num_classes=True)


def test_create_model_passes_options() -> None:
    model = create_model("fc", num_classes=2, hidden_sizes=(16,), grid=4)
    linear_layers = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert [layer.in_features for layer in linear_layers] == [16, 16]
    with pytest.raises(TypeError):
        create_model("cnn2", num_classes=2, no_such_option=1)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownModelError, match=r"no model is registered as 'resnet99'") as caught:
        create_model("resnet99", num_classes=4)
    message = str(caught.value)
    for name in BUILT_IN_MODELS:
        assert repr(name) in message
    assert isinstance(caught.value, KeyError)


def test_model_card_unknown_name() -> None:
    with pytest.raises(UnknownModelError, match=r"'vit'.*known models: 'cnn1'"):
        model_card("vit")


def test_list_models_glob_filter() -> None:
    assert list_models("cnn*") == ["cnn1", "cnn2", "cnn3"]
    assert list_models("*18") == ["resnet18"]
    assert list_models("cnn[13]") == ["cnn1", "cnn3"]
    assert list_models("vit*") == []


def test_is_model() -> None:
    assert is_model("cnn2")
    assert not is_model("CNN2")
    assert not is_model("")


@pytest.mark.usefixtures("isolated_registry")
def test_register_user_model_and_create() -> None:
    register_model("tiny", description="A test model.", default_input_size=(32, 48))(
        _tiny_factory
    )

    assert is_model("tiny")
    assert "tiny" in list_models()
    model = create_model("tiny", num_classes=5, in_channels=2, width=6)
    assert model(torch.randn(3, 2, 20, 20)).shape == (3, 5)
    card = model_card("tiny")
    assert card.description == "A test model."
    assert card.default_input_size == (32, 48)
    assert card.num_parameters == (64 * 8 + 8) + (8 * 4 + 4)


@pytest.mark.usefixtures("isolated_registry")
def test_register_description_from_docstring() -> None:
    register_model("tiny")(_tiny_factory)

    card = model_card("tiny")
    assert card.description == "Two linear layers on an 8x8 average-pooled image."
    assert card.default_input_size == (128, 128)
    assert card.reference is None


@pytest.mark.usefixtures("isolated_registry")
def test_register_duplicate_rejected() -> None:
    with pytest.raises(DuplicateNameError, match=r"'cnn2' is already registered.*override=True"):
        register_model("cnn2")(_tiny_factory)
    assert isinstance(create_model("cnn2", num_classes=4), ConvNet)


@pytest.mark.usefixtures("isolated_registry")
def test_register_override_replaces() -> None:
    register_model("cnn2", override=True)(_tiny_factory)

    model = create_model("cnn2", num_classes=4)
    assert isinstance(model, nn.Sequential)


@pytest.mark.usefixtures("isolated_registry")
def test_factory_must_return_module() -> None:
    def returns_string(num_classes: int, in_channels: int) -> Any:
        return "not a model"

    register_model("broken")(returns_string)

    with pytest.raises(TypeError, match=r"'broken' returned str"):
        create_model("broken", num_classes=2)


def test_register_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"model name must be a non-empty string, got ''"):
        register_model("")
    with pytest.raises(ValueError, match=r"default_input_size .* got \(0, 64\)"):
        register_model("tiny", default_input_size=(0, 64))


@pytest.mark.parametrize("name", list_models())
def test_model_card_counts_parameters(name: str) -> None:
    card = model_card(name)

    assert isinstance(card, ModelCard)
    assert card.name == name
    assert card.description
    model = create_model(name, num_classes=4, in_channels=1)
    assert card.num_parameters == sum(parameter.numel() for parameter in model.parameters())


def test_models_grow_with_depth() -> None:
    counts = [model_card(name).num_parameters for name in ("cnn1", "cnn2", "cnn3")]
    assert counts == sorted(counts)


def test_cnn2_architecture() -> None:
    model = create_model("cnn2", num_classes=4)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [32, 64, 128, 256]
    assert sum(isinstance(module, nn.BatchNorm2d) for module in model.modules()) == 4
    assert sum(isinstance(module, nn.Dropout) for module in model.modules()) == 1


def test_cnn3_uses_double_convolutions() -> None:
    model = create_model("cnn3", num_classes=4)
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert len(convs) == 10
    assert [conv.out_channels for conv in convs[::2]] == [32, 64, 128, 256, 512]


def test_models_accept_large_input() -> None:
    model = create_model("cnn1", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 512, 512)).shape == (1, 2)
        assert model(torch.randn(1, 1, 5, 7)).shape == (1, 2)


@pytest.fixture(scope="module")
def imagenet_like_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet-18 state dict with 3 input channels and 1000 classes."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_resnet18_weights_one_channel(imagenet_like_weights: Path) -> None:
    source = torch.load(imagenet_like_weights, weights_only=True)

    model = create_model("resnet18", num_classes=4, in_channels=1, weights=imagenet_like_weights)

    state = model.state_dict()
    assert state["conv1.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(
        state["conv1.weight"], source["conv1.weight"].mean(dim=1, keepdim=True)
    )
    assert torch.equal(state["layer3.1.conv2.weight"], source["layer3.1.conv2.weight"])
    assert torch.equal(state["bn1.running_var"], source["bn1.running_var"])
    assert state["fc.weight"].shape == (4, 512)


def test_resnet18_weights_three_channels_keep_head(imagenet_like_weights: Path) -> None:
    source = torch.load(imagenet_like_weights, weights_only=True)

    model = create_model("resnet18", num_classes=1000, in_channels=3, weights=imagenet_like_weights)

    state = model.state_dict()
    assert torch.equal(state["conv1.weight"], source["conv1.weight"])
    assert torch.equal(state["fc.weight"], source["fc.weight"])


def test_resnet18_weights_other_channel_count(imagenet_like_weights: Path) -> None:
    source = torch.load(imagenet_like_weights, weights_only=True)

    model = create_model("resnet18", num_classes=4, in_channels=4, weights=imagenet_like_weights)

    stem = model.state_dict()["conv1.weight"]
    assert stem.shape == (64, 4, 7, 7)
    torch.testing.assert_close(
        stem.sum(dim=1, keepdim=True), source["conv1.weight"].mean(dim=1, keepdim=True)
    )


def test_resnet18_weights_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=r"absent\.pth.*never downloads"):
        create_model("resnet18", num_classes=4, weights=missing)


def test_resnet18_weights_wrong_content(tmp_path: Path) -> None:
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(ValueError, match=r"does not contain a state dict"):
        create_model("resnet18", num_classes=4, weights=not_a_state_dict)

    other_model = tmp_path / "cnn2.pth"
    torch.save(create_model("cnn2", num_classes=4).state_dict(), other_model)
    with pytest.raises(ValueError, match=r"is not a torchvision ResNet-18 state dict"):
        create_model("resnet18", num_classes=4, weights=other_model)
