"""torchvision's ResNet-18 with its stem adapted to any channel count, registered as ``resnet18``.

Pretrained ImageNet weights load only from a local file: the architecture is
torchvision's, so its published state dict fits once the first convolution and,
for a different class count, the final linear layer are adapted. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet

from brainlake.models._registry import register_model

__all__ = ["adapt_stem_weight", "resnet18"]

logger = logging.getLogger(__name__)

_HEAD_KEYS = ("fc.weight", "fc.bias")


@register_model(
    "resnet18",
    description=(
        "torchvision's ResNet-18 (11 M parameters) with the first convolution rebuilt "
        "for the input channel count; optional ImageNet weights from a local file."
    ),
    default_input_size=224,
    reference="He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
)
def resnet18(
    num_classes: int,
    in_channels: int,
    *,
    weights: str | os.PathLike[str] | None = None,
) -> ResNet:
    """Build torchvision's ResNet-18 for ``in_channels`` input channels.

    For ``in_channels`` other than 3 the 7x7 stem convolution is replaced by one
    with the same shape apart from its input channels, initialized as torchvision
    initializes its convolutions.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        weights: Local path of a torchvision ResNet-18 state dict, such as the
            ImageNet file at ``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url``
            downloaded beforehand. The stem weights are adapted with
            :func:`adapt_stem_weight`. The final layer's weights are dropped and
            left freshly initialized when ``num_classes`` differs from the file's.

    Raises:
        FileNotFoundError: ``weights`` does not name an existing file.
        ValueError: The file is not a ResNet-18 state dict.
    """
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if weights is not None:
        _load_local_weights(model, Path(weights), in_channels=in_channels, num_classes=num_classes)
    return model


def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Convert an RGB stem convolution weight ``[out, 3, kh, kw]`` to ``in_channels`` inputs.

    Three channels keep the weight unchanged. Any other count gives every input
    channel the mean of the RGB kernels divided by ``in_channels``: one channel
    gets exactly the mean, and an image repeated across all channels produces
    the same response as that one-channel model.

    Raises:
        ValueError: ``weight`` is not a 4-D tensor with 3 input channels.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(
            f"expected a stem weight of shape [out, 3, kh, kw], got {tuple(weight.shape)!r}"
        )
    if in_channels == 3:
        return weight.clone()
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) / in_channels


def _load_local_weights(model: ResNet, path: Path, *, in_channels: int, num_classes: int) -> None:
    state = _read_state_dict(path)

    state["conv1.weight"] = adapt_stem_weight(state["conv1.weight"], in_channels)

    # A head trained for another class count cannot be reused, so it keeps
    # the fresh initialization from the constructor.
    dropped_head = state["fc.weight"].shape[0] != num_classes
    if dropped_head:
        logger.info(
            "dropping the final layer of %s: it has %d outputs and the model %d",
            path,
            state["fc.weight"].shape[0],
            num_classes,
        )
        for key in _HEAD_KEYS:
            state.pop(key, None)

    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ValueError(f"{str(path)!r} does not fit a ResNet-18: {error}") from error
    allowed_missing = set(_HEAD_KEYS) if dropped_head else set()
    if set(missing) - allowed_missing or unexpected:
        raise ValueError(
            f"{str(path)!r} is not a torchvision ResNet-18 state dict: "
            f"missing keys {sorted(set(missing) - allowed_missing)!r}, "
            f"unexpected keys {sorted(unexpected)!r}"
        )
    logger.info("loaded ResNet-18 weights from %s", path)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} not found. brainlake never downloads weights: "
            "download the file yourself (for ImageNet weights, from "
            f"{torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url}) and pass its local path"
        )
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise ValueError(
            f"{str(path)!r} does not contain a state dict (a mapping of names to tensors); "
            "save one with torch.save(model.state_dict(), path)"
        )
    state = dict(loaded)
    for key in ("conv1.weight", *_HEAD_KEYS):
        if key not in state:
            raise ValueError(
                f"{str(path)!r} is not a torchvision ResNet-18 state dict: it has no {key!r}"
            )
    return state
