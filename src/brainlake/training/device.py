"""Device and numeric precision resolution for training.

:func:`resolve_device` turns ``"auto"`` or a device string into a
:class:`torch.device` that exists on this machine, and :func:`resolve_precision`
picks the autocast precision for it. Hardware detection sits in small private
functions (``_cuda_available`` and friends) so that tests can replace them.
"""

from __future__ import annotations

import logging
import re
from typing import Literal, get_args

import torch

from brainlake.exceptions import DeviceError

__all__ = ["Precision", "PrecisionRequest", "resolve_device", "resolve_precision"]

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
"""A resolved training precision: full float32, or autocast to bfloat16 or float16."""

PrecisionRequest = Literal["auto", "fp32", "bf16", "fp16"]
"""A precision as a user requests it; ``"auto"`` picks one per device."""

_DEVICE_PATTERN = re.compile(r"^(?P<type>cpu|cuda|mps)(?::(?P<index>\d+))?$")
_ACCEPTED_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'mps'"


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _cuda_device_count() -> int:
    return torch.cuda.device_count()


def _cuda_bf16_supported() -> bool:
    # Without emulation: emulated bf16 is slower than fp16 on GPUs that lack it.
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def _mps_available() -> bool:
    return torch.backends.mps.is_available()


def _mps_bf16_supported() -> bool:
    # PyTorch's MPS backend supports bfloat16 only on macOS 14 and later.
    return torch.backends.mps.is_macos_or_newer(14, 0)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve a device request to a device that is available here.

    ``"auto"`` picks the first available of CUDA, MPS (Apple GPUs) and CPU.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            :class:`torch.device` of those types.

    Returns:
        The device. ``"cuda"`` without an index stays index-free, meaning the
        current CUDA device.

    Raises:
        DeviceError: The requested device is not available on this machine.
        ValueError: ``device`` is not one of the accepted forms.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        chosen = _auto_device()
        logger.info("device='auto' resolved to %s", chosen)
        return chosen

    device_type, index = _parse_device(device)

    if device_type == "cuda":
        _check_cuda(index)
    elif device_type == "mps" and not _mps_available():
        raise DeviceError(
            f"device {str(device)!r} is not available: this PyTorch build or machine has no MPS "
            f"support. Available devices: {_available_devices()}. "
            "Pass device='auto' to use the best available one."
        )
    if index is None:
        return torch.device(device_type)
    return torch.device(device_type, index)


def resolve_precision(
    precision: PrecisionRequest, device: str | torch.device
) -> Precision:
    """Resolve a precision request for ``device``.

    ``"auto"`` gives bf16 on CUDA GPUs that support it, fp16 (with gradient
    scaling in the trainer) on other CUDA GPUs, and fp32 on CPU and MPS.
    bf16 autocast on a CPU is fast only where the CPU has bf16 instructions
    (AVX-512 BF16 or AMX), and elsewhere it can be many times slower than fp32.
    So ``"auto"`` keeps CPUs at fp32. Request ``"bf16"`` on a CPU that has them.
    An explicit
    ``"bf16"`` or ``"fp16"`` is kept where the device supports it. Where it does
    not, the precision falls back and one warning is logged: bf16 becomes fp16
    on CUDA GPUs and fp32 on MPS before macOS 14.

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The training device, or a device string for :func:`resolve_device`.

    Raises:
        ValueError: ``precision`` is not one of the accepted values.
    """
    if precision not in get_args(PrecisionRequest):
        raise ValueError(
            f"precision must be one of {list(get_args(PrecisionRequest))!r}, got {precision!r}"
        )
    resolved_device = device if isinstance(device, torch.device) else resolve_device(device)
    device_type = resolved_device.type

    if precision == "auto":
        chosen = _auto_precision(device_type)
        logger.info("precision='auto' resolved to %s on %s", chosen, resolved_device)
        return chosen
    if precision == "fp32":
        return "fp32"

    fallback = _precision_fallback(precision, device_type)
    if fallback is None:
        return precision
    logger.warning(
        "precision=%r is not supported on %s; training in %s instead",
        precision,
        resolved_device,
        fallback,
    )
    return fallback


def _auto_device() -> torch.device:
    if _cuda_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _parse_device(device: str | torch.device) -> tuple[str, int | None]:
    if isinstance(device, torch.device):
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(
                f"device must be one of {_ACCEPTED_DEVICES}, got torch.device({str(device)!r})"
            )
        return device.type, device.index
    if not isinstance(device, str):
        raise ValueError(f"device must be a string or torch.device, got {device!r}")

    match = _DEVICE_PATTERN.match(device.strip().lower())
    if match is None or (match["index"] is not None and match["type"] != "cuda"):
        raise ValueError(f"device must be one of {_ACCEPTED_DEVICES}, got {device!r}")
    index = int(match["index"]) if match["index"] is not None else None
    return match["type"], index


def _check_cuda(index: int | None) -> None:
    requested = "cuda" if index is None else f"cuda:{index}"
    if not _cuda_available():
        raise DeviceError(
            f"device {requested!r} is not available: PyTorch finds no CUDA GPU here. "
            f"Available devices: {_available_devices()}. "
            "Pass device='auto' to use the best available one."
        )
    count = _cuda_device_count()
    if index is not None and index >= count:
        raise DeviceError(
            f"device {requested!r} is not available: this machine has {count} CUDA "
            f"GPU(s). Available devices: {_available_devices()}."
        )


def _available_devices() -> str:
    names = ["'cpu'"]
    if _cuda_available():
        names += [f"'cuda:{index}'" for index in range(_cuda_device_count())]
    if _mps_available():
        names.append("'mps'")
    return ", ".join(names)


def _auto_precision(device_type: str) -> Precision:
    if device_type == "cuda":
        return "bf16" if _cuda_bf16_supported() else "fp16"
    return "fp32"


def _precision_fallback(precision: Precision, device_type: str) -> Precision | None:
    """Return the precision to use instead of ``precision``, or ``None`` to keep it."""
    if precision == "bf16" and device_type == "cuda" and not _cuda_bf16_supported():
        return "fp16"
    if precision == "bf16" and device_type == "mps" and not _mps_bf16_supported():
        return "fp32"
    if not torch.amp.is_autocast_available(device_type):
        return "fp32"
    return None
