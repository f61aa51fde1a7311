"""Batch augmentation: identity, reproducible streams, geometry, intensity and argument checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from brainlake.augment import Augmentation, seeded_generator

# Every transform off: the augmentation must return its input exactly.
NOTHING = Augmentation(
    hflip=0.0, vflip=0.0, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
)


def _batch(size: int = 8, channels: int = 1, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(size, channels, side, side, generator=torch.Generator().manual_seed(seed))


def _bright_square(side: int = 64, half: int = 12) -> torch.Tensor:
    image = torch.zeros(1, 1, side, side)
    centre = side // 2
    image[..., centre - half : centre + half, centre - half : centre + half] = 1.0
    return image


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    weights = image[0, 0].clamp(min=0.0)
    rows = torch.arange(image.shape[-2], dtype=torch.float32).view(-1, 1)
    columns = torch.arange(image.shape[-1], dtype=torch.float32).view(1, -1)
    total = float(weights.sum())
    return float((weights * rows).sum()) / total, float((weights * columns).sum()) / total


def test_disabled_augmentation_is_identity() -> None:
    images = _batch()
    augmented = NOTHING(images, seeded_generator(0, 0, 0))
    assert NOTHING.is_identity
    assert torch.equal(augmented, images)


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype_preserved(channels: int) -> None:
    images = _batch(channels=channels)
    augmented = Augmentation()(images, seeded_generator(0, 0, 0))
    assert augmented.shape == images.shape
    assert augmented.dtype == torch.float32
    assert augmented.device == images.device
    assert not torch.equal(augmented, images)


def test_input_batch_not_modified() -> None:
    images = _batch()
    before = images.clone()
    Augmentation(vflip=0.5)(images, seeded_generator(0, 0, 0))
    assert torch.equal(images, before)


def test_same_seed_same_output() -> None:
    images = _batch()
    first = Augmentation()(images, seeded_generator(7, 2, 1))
    second = Augmentation()(images, seeded_generator(7, 2, 1))
    assert torch.equal(first, second)


@pytest.mark.parametrize(("epoch", "worker"), [(1, 0), (0, 1)])
def test_other_epoch_or_worker_differs(epoch: int, worker: int) -> None:
    images = _batch()
    reference = Augmentation()(images, seeded_generator(7, 0, 0))
    other = Augmentation()(images, seeded_generator(7, epoch, worker))
    assert not torch.equal(reference, other)


def test_seeded_generators_are_distinct() -> None:
    # Seeding with seed + epoch would collide here (0 + 1 == 1 + 0), but the derived seeds must not.
    seeds = {seeded_generator(seed, epoch, worker).initial_seed()
             for seed in range(3) for epoch in range(3) for worker in range(3)}
    assert len(seeds) == 27


def test_consecutive_batches_differ() -> None:
    # One generator serves a whole epoch, so it must move on after each batch.
    generator = seeded_generator(0, 0, 0)
    images = _batch()
    assert not torch.equal(Augmentation()(images, generator), Augmentation()(images, generator))


def test_geometry_independent_of_jitter_fields() -> None:
    # Each call draws the same block of numbers whatever is enabled, so turning
    # brightness on leaves every sample's rotation as it was: the two outputs
    # differ by one constant per sample.
    images = _batch()
    rotate_only = Augmentation(hflip=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0)
    rotate_and_brighten = Augmentation(hflip=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.5, contrast=0.0)
    rotated = rotate_only(images, seeded_generator(3, 0, 0))
    brightened = rotate_and_brighten(images, seeded_generator(3, 0, 0))
    offsets = (brightened - rotated).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5)
    assert float(offsets.abs().max()) > 0.0


def test_hflip_mirrors_exactly() -> None:
    images = _batch(channels=3)
    mirrored = Augmentation(
        hflip=1.0, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )(images, seeded_generator(0, 0, 0))
    assert torch.equal(mirrored, images.flip(-1))


def test_vflip_mirrors_exactly() -> None:
    images = _batch()
    mirrored = Augmentation(
        hflip=0.0, vflip=1.0, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )(images, seeded_generator(0, 0, 0))
    assert torch.equal(mirrored, images.flip(-2))


def test_hflip_half_flips_some_samples() -> None:
    images = _batch(size=64)
    augmented = Augmentation(
        hflip=0.5, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )(images, seeded_generator(0, 0, 0))
    flipped = sum(torch.equal(augmented[i], images[i].flip(-1)) for i in range(64))
    unchanged = sum(torch.equal(augmented[i], images[i]) for i in range(64))
    assert flipped + unchanged == 64
    assert 16 <= flipped <= 48


def test_rotation_keeps_square_centred() -> None:
    square = _bright_square()
    rotate = Augmentation(
        hflip=0.0, rotate_degrees=30.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )
    rotated = rotate(square.repeat(16, 1, 1, 1), seeded_generator(0, 0, 0))
    assert not torch.equal(rotated[0], square[0])
    for sample in rotated:
        row, column = _centroid(sample.unsqueeze(0))
        assert row == pytest.approx(31.5, abs=0.5)
        assert column == pytest.approx(31.5, abs=0.5)
        # Bilinear sampling blurs the edges but keeps the mass of a square
        # that stays inside the frame.
        assert float(sample.mean()) == pytest.approx(float(square.mean()), rel=0.03)


def test_rotation_of_wide_image_is_rigid() -> None:
    # A disc stays a disc under any rotation. Rotating in affine_grid's
    # normalised coordinates without correcting for the 32x96 aspect ratio
    # would stretch it into an ellipse.
    rows = torch.arange(32, dtype=torch.float32).view(-1, 1) - 15.5
    columns = torch.arange(96, dtype=torch.float32).view(1, -1) - 47.5
    disc = ((rows**2 + columns**2) <= 10.0**2).float().expand(8, 1, 32, 96)
    rotate = Augmentation(
        hflip=0.0, rotate_degrees=60.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )
    rotated = rotate(disc, seeded_generator(0, 0, 0))
    for sample in rotated:
        weights = sample[0]
        total = float(weights.sum())
        row_spread = float((weights * rows**2).sum()) / total
        column_spread = float((weights * columns**2).sum()) / total
        assert total == pytest.approx(float(disc[0].sum()), rel=0.03)
        assert row_spread == pytest.approx(column_spread, rel=0.1)


def test_translation_moves_square_within_bound() -> None:
    square = _bright_square()
    shift = Augmentation(
        hflip=0.0, rotate_degrees=0.0, translate=0.1, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )
    shifted = shift(square.repeat(32, 1, 1, 1), seeded_generator(0, 0, 0))
    offsets = []
    for sample in shifted:
        row, column = _centroid(sample.unsqueeze(0))
        offsets.append(max(abs(row - 31.5), abs(column - 31.5)))
    # At most 10% of 64 pixels, and the draws must actually move the square.
    assert max(offsets) <= 6.4 + 0.5
    assert max(offsets) > 1.0


def test_zoom_scales_square_area() -> None:
    square = _bright_square()
    zoom = Augmentation(
        hflip=0.0, rotate_degrees=0.0, translate=0.0, scale=(2.0, 2.0), brightness=0.0, contrast=0.0
    )
    zoomed = zoom(square, seeded_generator(0, 0, 0))
    assert float(zoomed.sum()) == pytest.approx(4.0 * float(square.sum()), rel=0.05)


def test_warp_fills_with_background() -> None:
    # A normalised slice has a negative background, so the corners that a
    # rotation brings in must take that value, not zero.
    images = torch.full((4, 1, 32, 32), -0.8)
    images[:, :, 8:24, 8:24] = 1.5
    rotate = Augmentation(
        hflip=0.0, rotate_degrees=45.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0
    )
    rotated = rotate(images, seeded_generator(0, 0, 0))
    assert torch.allclose(rotated[:, :, 0, 0], torch.full((4, 1), -0.8))
    assert float(rotated.min()) >= -0.8 - 1e-5


def test_brightness_shifts_mean_only() -> None:
    images = _batch(size=32)
    brighten = Augmentation(
        hflip=0.0, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.5, contrast=0.0
    )
    augmented = brighten(images, seeded_generator(0, 0, 0))
    offsets = (augmented - images).flatten(1)
    # Each sample moves by one constant, within the bound, and samples differ.
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5)
    assert float(offsets.abs().max()) <= 0.5
    assert float(offsets[:, 0].std()) > 0.05
    assert torch.allclose(augmented.std(dim=(1, 2, 3)), images.std(dim=(1, 2, 3)), rtol=1e-4)


def test_contrast_scales_around_sample_mean() -> None:
    images = _batch(size=32)
    stretch = Augmentation(
        hflip=0.0, rotate_degrees=0.0, translate=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.3
    )
    augmented = stretch(images, seeded_generator(0, 0, 0))
    ratios = augmented.std(dim=(1, 2, 3)) / images.std(dim=(1, 2, 3))
    assert torch.allclose(augmented.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5)
    assert float(ratios.min()) >= 0.7 - 1e-4
    assert float(ratios.max()) <= 1.3 + 1e-4
    assert float(ratios.std()) > 0.05


def test_large_batch_runs() -> None:
    images = torch.randn(256, 1, 128, 128)
    augmented = Augmentation()(images, seeded_generator(0, 0, 0))
    assert augmented.shape == images.shape
    assert bool(torch.isfinite(augmented).all())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hflip", 1.5),
        ("hflip", -0.1),
        ("vflip", float("nan")),
        ("rotate_degrees", -1.0),
        ("rotate_degrees", 270.0),
        ("translate", 1.5),
        ("brightness", -0.1),
        ("brightness", float("inf")),
        ("contrast", 1.0),
        ("contrast", -0.2),
        ("hflip", "0.5"),
    ],
)
def test_invalid_field_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must .*got {value!r}"):
        Augmentation(**{field: value})


@pytest.mark.parametrize("scale", [(1.1, 0.9), (0.0, 1.0), (1.0,), (1.0, float("nan")), 1.0])
def test_invalid_scale_rejected(scale: Any) -> None:
    with pytest.raises(ValueError, match=r"^scale must .*got "):
        Augmentation(scale=scale)


def test_integer_images_rejected() -> None:
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="floating-point.*torch.uint8"):
        Augmentation()(images, seeded_generator(0, 0, 0))


def test_three_dimensional_images_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) tensor, got \(1, 8, 8\)"):
        Augmentation()(torch.zeros(1, 8, 8), seeded_generator(0, 0, 0))


@pytest.mark.parametrize(("seed", "epoch", "worker"), [(-1, 0, 0), (0, -1, 0), (0, 0, 1.5)])
def test_seeded_generator_rejects_bad_numbers(seed: Any, epoch: Any, worker: Any) -> None:
    with pytest.raises(ValueError, match="must be a non-negative integer"):
        seeded_generator(seed, epoch, worker)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda() -> None:
    images = _batch().cuda()
    first = Augmentation()(images, seeded_generator(0, 0, 0, device="cuda"))
    second = Augmentation()(images, seeded_generator(0, 0, 0, device="cuda"))
    assert first.device == images.device
    assert torch.equal(first, second)
    with pytest.raises(ValueError, match="generator is on cpu"):
        Augmentation()(images, seeded_generator(0, 0, 0))
