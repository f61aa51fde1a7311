"""Plain convolutional classifiers of increasing depth: ``cnn1``, ``cnn2`` and ``cnn3``.

All three share :class:`ConvNet`: stages of 3x3 convolution, batch norm and ReLU,
each stage closed by 2x2 max pooling, then global average pooling, dropout and
one linear layer. Global pooling means no layer depends on the input size.
Max pooling rounds up (``ceil_mode=True``), so even inputs smaller than
``2 ** len(stages)`` pixels give a valid 1x1 map instead of an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from brainlake.models._registry import register_model

__all__ = ["ConvNet", "cnn1", "cnn2", "cnn3"]


class ConvNet(nn.Module):
    """A stack of conv-BN-ReLU stages with max pooling and a global-pool head.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        stage_channels: Output channels of each stage, in order. Each stage halves
            the height and width.
        convs_per_stage: Number of conv-BN-ReLU layers in each stage before its
            max pooling (2 gives VGG-style double convolutions).
        dropout: Dropout probability before the final linear layer.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        stage_channels: Sequence[int],
        convs_per_stage: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not stage_channels:
            raise ValueError("stage_channels must name at least one stage, got an empty sequence")
        if convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be at least 1, got {convs_per_stage!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        stages: list[nn.Module] = []
        width = in_channels
        for channels in stage_channels:
            stages.append(_stage(width, channels, convs_per_stage))
            width = channels
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``[batch, num_classes]`` for images ``[batch, C, H, W]``."""
        features = torch.flatten(self.pool(self.features(x)), 1)
        logits: torch.Tensor = self.classifier(self.dropout(features))
        return logits

    def _init_weights(self) -> None:
        # He initialization keeps activation variance steady through ReLU
        # stacks. torch's default conv init (kaiming_uniform_ with a=sqrt(5))
        # draws smaller weights, with standard deviation 1/sqrt(3 * fan_in).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def _stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        source = in_channels if index == 0 else out_channels
        layers += [
            # The bias would be cancelled by the batch norm that follows.
            nn.Conv2d(source, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(kernel_size=2, ceil_mode=True))
    return nn.Sequential(*layers)


@register_model(
    "cnn1",
    description=(
        "Shallow CNN: 3 stages of one conv-BN-ReLU-maxpool (16, 32, 64 channels), "
        "global average pooling, dropout 0.2, linear."
    ),
    default_input_size=128,
)
def cnn1(num_classes: int, in_channels: int, *, dropout: float = 0.2) -> ConvNet:
    """Build a shallow CNN: 3 stages of one 3x3 conv each, with 16, 32 and 64 channels.

    A fast baseline with an 8x downsampled 64-channel map before pooling.
    """
    return ConvNet(
        num_classes, in_channels, stage_channels=(16, 32, 64), convs_per_stage=1, dropout=dropout
    )


@register_model(
    "cnn2",
    description=(
        "4-stage CNN: one conv-BN-ReLU-maxpool per stage (32, 64, 128, 256 channels), "
        "global average pooling, dropout 0.3, linear."
    ),
    default_input_size=128,
)
def cnn2(num_classes: int, in_channels: int, *, dropout: float = 0.3) -> ConvNet:
    """Build a 4-stage CNN: one 3x3 conv per stage, with 32, 64, 128 and 256 channels.

    The default choice for 128 px MRI slices: deep enough to reach a 16x
    downsampled 256-channel map, small enough to train on a CPU.
    """
    return ConvNet(
        num_classes,
        in_channels,
        stage_channels=(32, 64, 128, 256),
        convs_per_stage=1,
        dropout=dropout,
    )


@register_model(
    "cnn3",
    description=(
        "VGG-style CNN: 5 stages of two conv-BN-ReLU layers and a maxpool "
        "(32, 64, 128, 256, 512 channels), global average pooling, dropout 0.5, linear."
    ),
    default_input_size=128,
)
def cnn3(num_classes: int, in_channels: int, *, dropout: float = 0.5) -> ConvNet:
    """Build a VGG-style CNN: 5 stages of two 3x3 convs, with 32 to 512 channels.

    Ten convolutional layers and a 32x downsampled map; the deepest plain CNN
    here, for larger inputs or when cnn2 underfits.
    """
    return ConvNet(
        num_classes,
        in_channels,
        stage_channels=(32, 64, 128, 256, 512),
        convs_per_stage=2,
        dropout=dropout,
    )
