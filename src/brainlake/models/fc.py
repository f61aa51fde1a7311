"""A fully connected baseline classifier, registered as ``fc``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from brainlake.models._registry import register_model

__all__ = ["FullyConnected", "fc"]


class FullyConnected(nn.Module):
    """An MLP on a fixed-size, average-pooled copy of the image.

    Adaptive average pooling first reduces any input to ``grid x grid`` pixels per
    channel, so the first linear layer has a fixed width and the model accepts
    every input size. Each hidden layer is linear, ReLU, dropout.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        grid: Height and width in pixels of the pooled image that is the MLP's input.
        hidden_sizes: Width of each hidden layer, in order.
        dropout: Dropout probability after each hidden layer.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        grid: int = 32,
        hidden_sizes: Sequence[int] = (512, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be a positive number of pixels, got {grid!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")

        self.pool = nn.AdaptiveAvgPool2d((grid, grid))
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * grid * grid
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``[batch, num_classes]`` for images ``[batch, C, H, W]``."""
        logits: torch.Tensor = self.mlp(self.pool(x))
        return logits


@register_model(
    "fc",
    description=(
        "Fully connected baseline: adaptive average pooling to 32x32, "
        "then an MLP with hidden layers of 512 and 128 units and dropout 0.3."
    ),
    default_input_size=128,
)
def fc(
    num_classes: int,
    in_channels: int,
    *,
    grid: int = 32,
    hidden_sizes: Sequence[int] = (512, 128),
    dropout: float = 0.3,
) -> FullyConnected:
    """Build the fully connected baseline; see :class:`FullyConnected` for the arguments."""
    return FullyConnected(
        num_classes, in_channels, grid=grid, hidden_sizes=hidden_sizes, dropout=dropout
    )
