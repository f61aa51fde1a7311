"""Random augmentation of whole image batches with tensor operations.

:class:`Augmentation` transforms a collated ``(B, C, H, W)`` batch of
normalised float images at once: random flips per sample, one batched affine
warp (rotation, translation and scale) and intensity jitter per sample. Each
step is a handful of tensor operations on the whole batch, so the same code
runs in a DataLoader worker on the CPU or in the training loop on the GPU,
wherever the batch lives.

Every random number comes from the :class:`torch.Generator` passed in, so a
generator seeded the same way reproduces the same augmented batches.
:func:`seeded_generator` derives one such generator per seed, epoch and
DataLoader worker.

Example:
    >>> import torch
    >>> from brainlake.augment import Augmentation, seeded_generator
    >>> augment = Augmentation(rotate_degrees=15.0)
    >>> generator = seeded_generator(0, epoch=0, worker=0, device="cpu")
    >>> augment(torch.zeros(8, 1, 64, 64), generator).shape
    torch.Size([8, 1, 64, 64])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Augmentation", "seeded_generator"]

# Columns of the uniform draw made once per call, one row per sample.
_HFLIP, _VFLIP, _ANGLE, _SCALE, _SHIFT_X, _SHIFT_Y, _BRIGHTNESS, _CONTRAST = range(8)
_DRAWS_PER_SAMPLE = 8


def _check_range(name: str, value: float, low: float, high: float, *, high_open: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite real number in ``[low, high]`` (or ``[low, high)``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    above = value >= high if high_open else value > high
    if value < low or above:
        closing = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{closing}, got {value!r}")


@dataclass(frozen=True)
class Augmentation:
    """Random flips, an affine warp and intensity jitter for normalised image batches.

    The defaults suit axial brain MRI slices: left-right flips are anatomically
    plausible, upside-down slices are not, and the small rotation, shift, zoom
    and intensity changes mimic differences in patient position and scanner
    settings. Setting every probability and magnitude to zero (and ``scale``
    to ``(1.0, 1.0)``) makes the augmentation the identity.

    Attributes:
        hflip: Probability of mirroring a sample left to right.
        vflip: Probability of mirroring a sample top to bottom.
        rotate_degrees: Maximum rotation in degrees; each sample is rotated
            by an angle drawn uniformly from ``[-rotate_degrees, rotate_degrees]``.
        translate: Maximum shift as a fraction of the image side. Each
            sample is shifted along each axis by a fraction drawn uniformly
            from ``[-translate, translate]`` of that axis's length.
        scale: Range of the zoom factor, drawn uniformly per sample; above 1
            enlarges the content.
        brightness: Maximum additive offset, in normalised intensity units
            (one unit is the training split's standard deviation); drawn
            uniformly from ``[-brightness, brightness]`` per sample.
        contrast: Maximum relative contrast change; each sample's deviations
            from its own mean are multiplied by a factor drawn uniformly from
            ``[1 - contrast, 1 + contrast]``.

    Raises:
        ValueError: If a field is out of range; the message names the field
            and the value.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rotate_degrees: float = 10.0
    translate: float = 0.05
    scale: tuple[float, float] = (0.95, 1.05)
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        _check_range("hflip", self.hflip, 0.0, 1.0)
        _check_range("vflip", self.vflip, 0.0, 1.0)
        _check_range("rotate_degrees", self.rotate_degrees, 0.0, 180.0)
        _check_range("translate", self.translate, 0.0, 1.0)
        _check_range("brightness", self.brightness, 0.0, math.inf, high_open=True)
        # A factor of zero or below would flatten or invert the image.
        _check_range("contrast", self.contrast, 0.0, 1.0, high_open=True)
        self._check_scale()

    def _check_scale(self) -> None:
        scale = self.scale
        if not isinstance(scale, (tuple, list)) or len(scale) != 2:
            raise ValueError(f"scale must be a pair (min, max) of zoom factors, got {scale!r}")
        low, high = scale
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise ValueError(f"scale must hold two finite numbers, got {scale!r}")
        if not 0.0 < low <= high:
            raise ValueError(f"scale must satisfy 0 < min <= max, got {scale!r}")

    @property
    def warps(self) -> bool:
        """Whether the affine warp can move pixels, so that it must run."""
        return self.rotate_degrees > 0.0 or self.translate > 0.0 or tuple(self.scale) != (1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        """Whether every transform is disabled, so that a call returns its input unchanged."""
        return (
            self.hflip == 0.0
            and self.vflip == 0.0
            and not self.warps
            and self.brightness == 0.0
            and self.contrast == 0.0
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch, drawing every random number from ``generator``.

        Each call draws one ``(B, 8)`` block of uniform numbers from
        ``generator``, whatever transforms are enabled. So the parameters of
        every sample depend only on the generator's state and the batch size,
        and a generator seeded the same way gives the same output on the same
        device. Results on the CPU and on a GPU differ, because the two
        devices draw different random streams.

        Pixels that the warp brings in from outside the image take each
        sample's per-channel minimum, which is the background of an MRI slice.
        Plain zero padding would fill them with the data set's mean intensity
        instead, because the images are already normalised.

        Args:
            images: A floating-point batch of shape ``(B, C, H, W)``.
            generator: The source of randomness; it must be on ``images.device``.

        Returns:
            A new tensor of the same shape, dtype and device, or ``images``
            itself when :attr:`is_identity` is true.

        Raises:
            ValueError: If ``images`` is not a floating-point 4-D tensor, or
                ``generator`` is on another device.
        """
        _check_batch(images, generator)
        draws = torch.rand(
            (images.shape[0], _DRAWS_PER_SAMPLE), generator=generator, device=images.device, dtype=torch.float32
        )
        if self.is_identity:
            return images

        # 1. Flips, chosen per sample.
        if self.hflip > 0.0:
            images = _flip_where(images, draws[:, _HFLIP] < self.hflip, dim=-1)
        if self.vflip > 0.0:
            images = _flip_where(images, draws[:, _VFLIP] < self.vflip, dim=-2)

        # 2. One affine warp for the whole batch.
        if self.warps:
            images = _warp(images, self._affine_matrices(draws, images.shape[-2], images.shape[-1]))

        # 3. Intensity jitter, per sample.
        if self.brightness > 0.0 or self.contrast > 0.0:
            images = self._jitter(images, draws)
        return images

    def _affine_matrices(self, draws: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Build the ``(B, 2, 3)`` matrices that map output to input coordinates for ``affine_grid``."""
        angle = torch.deg2rad((2.0 * draws[:, _ANGLE] - 1.0) * self.rotate_degrees)
        low, high = self.scale
        zoom = low + draws[:, _SCALE] * (high - low)
        # affine_grid works in coordinates normalised to [-1, 1] per axis, so a
        # shift by a fraction f of the side is 2f there.
        shift_x = (2.0 * draws[:, _SHIFT_X] - 1.0) * self.translate * 2.0
        shift_y = (2.0 * draws[:, _SHIFT_Y] - 1.0) * self.translate * 2.0

        # The inverse of "zoom, rotate, then shift": undo the shift, rotate
        # back, divide by the zoom. The aspect ratio enters the off-diagonal
        # terms so that a rotation of a non-square image does not shear it.
        cos = torch.cos(angle) / zoom
        sin = torch.sin(angle) / zoom
        a00, a01 = cos, sin * (height / width)
        a10, a11 = -sin * (width / height), cos
        b0 = -(a00 * shift_x + a01 * shift_y)
        b1 = -(a10 * shift_x + a11 * shift_y)
        return torch.stack(
            [torch.stack([a00, a01, b0], dim=1), torch.stack([a10, a11, b1], dim=1)],
            dim=1,
        )

    def _jitter(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1, 1)
        offset = ((2.0 * draws[:, _BRIGHTNESS] - 1.0) * self.brightness).view(shape).to(images.dtype)
        factor = (1.0 + (2.0 * draws[:, _CONTRAST] - 1.0) * self.contrast).view(shape).to(images.dtype)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (images - mean) * factor + (mean + offset)


def _check_batch(images: torch.Tensor, generator: torch.Generator) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape!r}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be normalised floating-point tensors, got dtype {images.dtype}. "
            "Augment the batches a mart loader yields, not the raw uint8 arrays"
        )
    if generator.device.type != images.device.type:
        raise ValueError(
            f"generator is on {generator.device} but images are on {images.device}. "
            f"Create it with seeded_generator(..., device={str(images.device)!r})"
        )


def _flip_where(images: torch.Tensor, selected: torch.Tensor, *, dim: int) -> torch.Tensor:
    # torch.where keeps the batch on the device: no host round trip to pick samples.
    return torch.where(selected.view(-1, 1, 1, 1), images.flip(dim), images)


def _warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    # grid_sample pads with zeros. Shifting each channel so that its minimum is
    # zero makes that padding match the background, and the shift is undone after.
    background = images.amin(dim=(2, 3), keepdim=True)
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + background


def seeded_generator(seed: int, epoch: int, worker: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Create a generator whose stream is distinct for each seed, epoch and worker.

    The three numbers go through :class:`numpy.random.SeedSequence`, which
    hashes them into a well-mixed 64-bit seed. So neighbouring epochs or
    workers get unrelated streams, where ``seed + epoch`` would make epoch 1
    of seed 0 repeat epoch 0 of seed 1. The same three numbers and device
    always give the same stream.

    Args:
        seed: The run's augmentation seed.
        epoch: The epoch number, so that each epoch gets new augmentations.
        worker: The DataLoader worker id
            (``torch.utils.data.get_worker_info().id``), or 0 when batches are
            augmented in the main process.
        device: The device of the batches to augment, such as ``"cuda"``.

    Returns:
        A generator on ``device``, ready to pass to :meth:`Augmentation.__call__`.

    Raises:
        ValueError: If ``seed``, ``epoch`` or ``worker`` is negative or not an integer.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("worker", worker)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    state = np.random.SeedSequence([int(seed), int(epoch), int(worker)]).generate_state(1, dtype=np.uint64)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state[0]))
    return generator
