"""Decoding at ingest, conversion to arrays, and the perceptual hash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainlake.exceptions import ImageDecodeError
from brainlake.imaging import hamming_distance, inspect_image, perceptual_hash, to_uint8_array


@pytest.fixture(scope="module")
def slice_bytes(sample_dir: Path) -> bytes:
    return (sample_dir / "Training" / "glioma" / "Tr-gl_0145.jpg").read_bytes()


def _encode(image: Image.Image, format_name: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def test_inspect_reports_format_size_mode(slice_bytes: bytes) -> None:
    info = inspect_image(slice_bytes)
    assert info.format == "JPEG"
    assert (info.width, info.height) == (512, 512)
    assert info.mode == "RGB"
    assert info.bit_depth == 8
    assert len(info.phash) == 16


def test_truncated_jpeg_is_rejected(slice_bytes: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        inspect_image(slice_bytes[: len(slice_bytes) // 2], name="cut.jpg")


def test_empty_file_is_rejected() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        inspect_image(b"", name="zero.jpg")


def test_text_file_is_rejected() -> None:
    with pytest.raises(ImageDecodeError, match="not an image in a supported format"):
        inspect_image(b"this is not an image\n", name="notes.jpg")


def test_pixel_cap_applies_per_call(slice_bytes: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        inspect_image(slice_bytes, max_pixels=100_000)
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS > 100_000


def test_array_has_requested_shape(slice_bytes: bytes) -> None:
    gray = to_uint8_array(slice_bytes, size=64, channels=1)
    rgb = to_uint8_array(slice_bytes, size=48, channels=3, resize="stretch")
    assert gray.shape == (1, 64, 64)
    assert gray.dtype == np.uint8
    assert rgb.shape == (3, 48, 48)


def test_pad_keeps_aspect_ratio() -> None:
    wide = Image.new("L", (200, 100), color=255)
    array = to_uint8_array(_encode(wide, "PNG"), size=100, channels=1, resize="pad")
    assert array[0, 0, :].max() == 0
    assert array[0, 50, :].min() == 255


def test_sixteen_bit_png_uses_full_range() -> None:
    ramp = np.tile(np.linspace(1000, 3000, 64, dtype=np.uint16), (64, 1))
    data = _encode(Image.fromarray(ramp), "PNG")
    assert inspect_image(data).bit_depth == 16
    array = to_uint8_array(data, size=64, channels=1)
    assert array.min() == 0
    assert array.max() == 255


def test_phash_matches_reencoded_resized_copy(slice_bytes: bytes, sample_dir: Path) -> None:
    original = Image.open(io.BytesIO(slice_bytes))
    copy = Image.open(io.BytesIO(_encode(original.resize((300, 300)), "JPEG", quality=70)))
    other = Image.open(sample_dir / "Training" / "notumor" / "Tr-no_0653.jpg")
    near = hamming_distance(perceptual_hash(original), perceptual_hash(copy))
    far = hamming_distance(perceptual_hash(original), perceptual_hash(other))
    assert near <= 6
    assert far > 12


def test_cap_below_pillow_limit_names_size() -> None:
    image = Image.new("L", (3000, 2000))
    with pytest.raises(ImageDecodeError, match="3000x2000 pixels exceeds the limit of 1,000,000"):
        inspect_image(_encode(image, "PNG"), max_pixels=1_000_000, name="wide.png")


def test_crop_keeps_the_centre() -> None:
    wide = Image.new("L", (300, 100), color=0)
    wide.paste(255, (100, 0, 200, 100))
    array = to_uint8_array(_encode(wide, "PNG"), size=50, channels=1, resize="crop")
    assert array.shape == (1, 50, 50)
    # Only the outermost columns blend with the black sides when resampled.
    assert array[0, :, 2:-2].min() >= 250
