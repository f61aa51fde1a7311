"""Decoding stored images into arrays, and the perceptual hash used to find near duplicates.

Every image is decoded fully at ingest (:func:`inspect_image`), so a truncated
or mislabelled file is caught there and never inside a training epoch. Marts
call :func:`to_uint8_array` to turn stored bytes into the canonical
channels-first ``uint8`` array of a chosen size.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from .exceptions import DuplicateNameError, ImageDecodeError, MissingDependencyError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "WINDOW_PERCENTILES",
    "ArrayDecoder",
    "register_decoder",
    "window_to_uint8",
    "ImageInfo",
    "hamming_distance",
    "near_duplicate_components",
    "inspect_image",
    "perceptual_hash",
    "to_uint8_array",
]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest width x height accepted at ingest (a 8000 x 8000 image)."""

_BIT_DEPTHS = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "YCbCr": 8,
               "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}

ResizeMode = Literal["pad", "stretch", "crop"]

WINDOW_PERCENTILES = (0.5, 99.5)
"""Percentiles of an image's own intensities that map to 0 and 255 when a
deep image (16-bit, int16 MRI, float) is reduced to 8 bits."""


_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """Properties of an image, found by decoding it fully at ingest.

    Attributes:
        format: The container format as Pillow names it (``"JPEG"``, ``"PNG"``).
        width: Width in pixels, after the EXIF orientation is applied.
        height: Height in pixels, after the EXIF orientation is applied.
        mode: The Pillow mode of the stored pixels (``"L"``, ``"RGB"``, ``"I;16"``).
        bit_depth: Bits per channel.
        phash: The 64-bit perceptual hash as 16 hex digits.
        exif_orientation: The EXIF orientation tag (2 to 8) when the file has
            one that rotates or flips the pixels, else ``None``.
    """

    format: str
    width: int
    height: int
    mode: str
    bit_depth: int
    phash: str
    exif_orientation: int | None = None


def _open(
    data: bytes, *, max_pixels: int, name: str, draft_side: int | None = None, draft_mode: str | None = None
) -> Image.Image:
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty (0 bytes); re-export or remove it")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check is global state; the cap below is per call.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {image.width}x{image.height} pixels exceeds the limit of "
                    f"{max_pixels:,} pixels; downscale the file or raise max_pixels"
                )
            if draft_side is not None and image.format == "JPEG":
                # libjpeg still decodes the whole entropy-coded stream (so a
                # truncated file fails) but skips most of the inverse DCT work.
                image.draft(draft_mode or image.mode, (draft_side, draft_side))
            image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        # Pillow checks its own, larger limit while reading the header, before
        # the per-call cap above can run.
        raise ImageDecodeError(
            f"{name}: the image exceeds the limit of {max_pixels:,} pixels ({error}); "
            "downscale the file before ingesting it"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"{name}: {_decode_failure(error)}") from error
    return image


def _decode_failure(error: Exception) -> str:
    """Describe a Pillow failure in stable words (Pillow's own text can hold memory addresses)."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image in a supported format (JPEG, PNG, BMP, TIFF); convert it or remove it"
    if "truncated" in str(error).lower():
        return "the image data ends early (the file is truncated); copy the file again from its source"
    return f"the image cannot be decoded ({error}); check that the file is complete, or remove it"


def _open_header(data: bytes, *, max_pixels: int, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(
            f"{name}: the image exceeds the limit of {max_pixels:,} pixels ({error}); "
            "downscale the file before ingesting it"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        if not data:
            raise ImageDecodeError(f"{name}: the file is empty (0 bytes); re-export or remove it") from error
        raise ImageDecodeError(f"{name}: {_decode_failure(error)}") from error


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> ImageInfo:
    """Decode ``data`` fully and describe it.

    Args:
        data: The encoded image bytes.
        max_pixels: Reject images with more pixels than this. Pillow's own
            decompression-bomb limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``)
            still applies above it; brainlake never changes that global.
        name: How error messages refer to the image (usually its source path).

    Returns:
        The image's format, size, mode, bit depth and perceptual hash.

    Raises:
        ImageDecodeError: If the bytes are empty, truncated, not an image, or too large.
    """
    decoder = _array_decoder_for(data)
    if decoder is not None:
        pixels = _decode_array(decoder, data, max_pixels=max_pixels, name=name)
        return ImageInfo(
            format=decoder.format,
            width=int(pixels.shape[1]),
            height=int(pixels.shape[0]),
            mode=_array_mode(pixels),
            bit_depth=int(pixels.dtype.itemsize * 8),
            phash=perceptual_hash(_array_to_image(pixels)),
        )

    header = _open_header(data, max_pixels=max_pixels, name=name)
    width, height = header.size
    orientation = header.getexif().get(_EXIF_ORIENTATION)
    if orientation in (5, 6, 7, 8):
        width, height = height, width

    image = _open(data, max_pixels=max_pixels, name=name, draft_side=_PHASH_SIDE * 2)
    format_name = image.format or "UNKNOWN"
    mode = header.mode
    oriented = ImageOps.exif_transpose(image)
    return ImageInfo(
        format=format_name,
        width=width,
        height=height,
        mode=mode,
        bit_depth=_BIT_DEPTHS.get(mode, 8),
        phash=perceptual_hash(oriented),
        exif_orientation=orientation if isinstance(orientation, int) and 2 <= orientation <= 8 else None,
    )


def _to_grayscale_or_rgb(
    image: Image.Image, channels: int, window: tuple[float, float] = (0.5, 99.5)
) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(window_to_uint8(np.asarray(image), window), mode="L")
    if image.mode in ("P", "PA", "LA", "RGBA", "1", "CMYK", "YCbCr"):
        image = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA", "RGBA") else image.convert("RGB")
    return image.convert("L" if channels == 1 else "RGB")


def to_uint8_array(
    data: bytes,
    *,
    size: int,
    channels: Literal[1, 3] = 1,
    resize: ResizeMode = "pad",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
    window: tuple[float, float] = WINDOW_PERCENTILES,
) -> NDArray[np.uint8]:
    """Decode ``data`` into a ``(channels, size, size)`` uint8 array.

    Args:
        data: The encoded image bytes.
        size: The side of the square output in pixels.
        channels: 1 for grayscale, 3 for RGB.
        resize: ``"pad"`` keeps the aspect ratio and pads the short side with
            black; ``"stretch"`` scales each axis independently; ``"crop"``
            keeps the aspect ratio and cuts the long side to a centred square.
        max_pixels: Reject images with more pixels than this.
        name: How error messages refer to the image.
        window: For deep images (16-bit, int16, float), the intensity
            percentiles that map to 0 and 255; 8-bit images are kept as they are.

    Returns:
        A C-contiguous array of shape ``(channels, size, size)``.

    Raises:
        ImageDecodeError: If the bytes cannot be decoded.
        ValueError: If ``size``, ``channels`` or ``resize`` is invalid.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if resize not in ("pad", "stretch", "crop"):
        raise ValueError(f"resize must be 'pad', 'stretch' or 'crop', got {resize!r}")

    decoder = _array_decoder_for(data)
    if decoder is not None:
        image = _array_to_image(_decode_array(decoder, data, max_pixels=max_pixels, name=name), window)
    else:
        # For JPEG, libjpeg decodes at 1/2, 1/4 or 1/8 scale when the target
        # allows, much cheaper than a full decode followed by a big downscale.
        image = _open(data, max_pixels=max_pixels, name=name, draft_side=size,
                      draft_mode="L" if channels == 1 else "RGB")
        image = ImageOps.exif_transpose(image)
    image = _to_grayscale_or_rgb(image, channels, window)

    if resize == "stretch":
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    elif resize == "crop":
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
    else:
        image = ImageOps.pad(image, (size, size), method=Image.Resampling.BILINEAR, color=0)

    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[np.newaxis, :, :]
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def window_to_uint8(pixels: NDArray[Any], window: tuple[float, float] = WINDOW_PERCENTILES) -> NDArray[np.uint8]:
    """Reduce a deep grayscale array to uint8 by its own intensity percentiles.

    Intensities at or below the 0.5th percentile become 0 and those at or above
    the 99.5th become 255, linearly in between, so a few extreme pixels do
    not compress the contrast of the rest. Already 8-bit arrays are returned
    unchanged.
    """
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    if not 0.0 <= window[0] < window[1] <= 100.0:
        raise ValueError(f"window must be two percentiles with 0 <= low < high <= 100, got {window!r}")
    low, high = np.percentile(values, window)
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    return np.asarray(scaled.round(), dtype=np.uint8)


@dataclass(frozen=True)
class ArrayDecoder:
    """A decoder for a format Pillow cannot read, such as MATLAB files or DICOM.

    Attributes:
        format: The format name stored in the catalog (``"MAT"``, ``"DICOM"``).
        sniff: Returns whether the bytes are in this format (a cheap check of
            a signature, not a decode).
        decode: Returns the image as a 2-D ``(height, width)`` array, oriented
            for display, in its stored dtype.
        extra: The optional dependency group that ``decode`` needs, named in
            the error when it is missing.
    """

    format: str
    sniff: Callable[[bytes], bool]
    decode: Callable[[bytes], NDArray[Any]]
    extra: str | None = None


_ARRAY_DECODERS: dict[str, ArrayDecoder] = {}


def register_decoder(decoder: ArrayDecoder, *, override: bool = False) -> ArrayDecoder:
    """Add a decoder for a format Pillow cannot read.

    Raises:
        DuplicateNameError: If a decoder for that format exists and ``override`` is false.
    """
    if decoder.format in _ARRAY_DECODERS and not override:
        raise DuplicateNameError(
            f"a decoder for format {decoder.format!r} is already registered; pass override=True to replace it"
        )
    _ARRAY_DECODERS[decoder.format] = decoder
    return decoder


def _array_decoder_for(data: bytes) -> ArrayDecoder | None:
    for decoder in _ARRAY_DECODERS.values():
        if decoder.sniff(data):
            return decoder
    return None


def _decode_array(decoder: ArrayDecoder, data: bytes, *, max_pixels: int, name: str) -> NDArray[Any]:
    try:
        pixels = decoder.decode(data)
    except (ImageDecodeError, MissingDependencyError):
        raise
    except ImportError as error:
        raise MissingDependencyError(
            f"{name}: reading {decoder.format} files needs the {decoder.extra!r} extra; "
            f"install it with: pip install 'brainlake[{decoder.extra}]'"
        ) from error
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ImageDecodeError(f"{name}: not a readable {decoder.format} image ({error})") from error
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ImageDecodeError(f"{name}: {decoder.format} image has shape {pixels.shape}; expected a 2-D slice")
    if pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise ImageDecodeError(
            f"{name}: {pixels.shape[1]}x{pixels.shape[0]} pixels exceeds the limit of "
            f"{max_pixels:,} pixels; raise max_pixels if the image is genuine"
        )
    return pixels


def _array_mode(pixels: NDArray[Any]) -> str:
    names = {"uint8": "L", "uint16": "I;16", "int16": "I;16S", "int32": "I", "float32": "F", "float64": "F;64"}
    return names.get(str(pixels.dtype), str(pixels.dtype))


def _array_to_image(pixels: NDArray[Any], window: tuple[float, float] = WINDOW_PERCENTILES) -> Image.Image:
    return Image.fromarray(window_to_uint8(pixels, window), mode="L")


def _dct_matrix(n: int) -> NDArray[np.float64]:
    k = np.arange(n)[:, np.newaxis]
    i = np.arange(n)[np.newaxis, :]
    matrix: NDArray[np.float64] = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0, :] = np.sqrt(1.0 / n)
    return matrix


_PHASH_SIDE = 32
_DCT_32 = _dct_matrix(_PHASH_SIDE)


def perceptual_hash(image: Image.Image) -> str:
    """Return the 64-bit DCT perceptual hash of ``image`` as 16 hex digits.

    The image is reduced to 32x32 grayscale. Each of the 8x8 lowest
    frequencies of its 2-D DCT gives one bit, set when the coefficient exceeds
    the median of those frequencies (the DC term left out of the median). Re-encoding or resizing an image
    changes few bits, so near duplicates lie within a small Hamming distance.
    """
    gray = _to_grayscale_or_rgb(image, 1).resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, dtype=np.float64)
    coefficients = (_DCT_32 @ pixels @ _DCT_32.T)[:8, :8]
    median = np.median(coefficients.ravel()[1:])
    bits = (coefficients.ravel() > median).astype(np.uint8)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming_distance(first: str, second: str) -> int:
    """Return how many bits differ between two hex perceptual hashes."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def near_duplicate_components(hashes: Sequence[str], max_distance: int) -> list[list[int]]:
    """Group perceptual hashes that lie within ``max_distance`` bits of each other.

    Two hashes are linked when their Hamming distance is at most
    ``max_distance``; a group is a connected component of those links, so a
    chain of small steps can join two images further apart than the limit.

    Args:
        hashes: 16-hex-digit hashes as :func:`perceptual_hash` returns them.
        max_distance: The largest number of differing bits (0 to 64) that links two hashes.

    Returns:
        The indices of each group of two or more hashes, each sorted, groups in
        order of their first index.

    Raises:
        ValueError: If ``max_distance`` is outside 0..64.
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be between 0 and 64 bits, got {max_distance!r}")
    values = np.array([int(value, 16) for value in hashes], dtype=np.uint64)
    parent = np.arange(len(values))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = int(parent[index])
        return index

    # Compare each hash with all later ones in one vectorised step per row:
    # O(n^2) bit counts, about a second for 15,000 images.
    for index in range(len(values) - 1):
        distances = np.bitwise_count(values[index + 1 :] ^ values[index])
        for offset in np.flatnonzero(distances <= max_distance):
            first, second = find(index), find(index + 1 + int(offset))
            if first != second:
                parent[max(first, second)] = min(first, second)

    members: dict[int, list[int]] = {}
    for index in range(len(values)):
        members.setdefault(find(index), []).append(index)
    return [group for group in members.values() if len(group) > 1]
