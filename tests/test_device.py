"""Tests for device and precision resolution, with hardware detection faked."""

from __future__ import annotations

import logging

import pytest
import torch

from brainlake.exceptions import DeviceError
from brainlake.training import device as device_module
from brainlake.training import resolve_device, resolve_precision


def fake_hardware(
    monkeypatch: pytest.MonkeyPatch,
    *,
    cuda: int = 0,
    cuda_bf16: bool = True,
    mps: bool = False,
    mps_bf16: bool = True,
) -> None:
    """Pretend the machine has ``cuda`` CUDA GPUs and, if ``mps``, an Apple GPU."""
    monkeypatch.setattr(device_module, "_cuda_available", lambda: cuda > 0)
    monkeypatch.setattr(device_module, "_cuda_device_count", lambda: cuda)
    monkeypatch.setattr(device_module, "_cuda_bf16_supported", lambda: cuda_bf16)
    monkeypatch.setattr(device_module, "_mps_available", lambda: mps)
    monkeypatch.setattr(device_module, "_mps_bf16_supported", lambda: mps_bf16)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(2, True, "cuda"), (1, False, "cuda"), (0, True, "mps"), (0, False, "cpu")],
)
def test_auto_device_order(
    monkeypatch: pytest.MonkeyPatch, cuda: int, mps: bool, expected: str
) -> None:
    fake_hardware(monkeypatch, cuda=cuda, mps=mps)

    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device() == torch.device(expected)


def test_explicit_devices_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hardware(monkeypatch, cuda=2, mps=True)

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(" CUDA:0 ") == torch.device("cuda", 0)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_cuda_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hardware(monkeypatch, cuda=0, mps=True)

    expected = r"'cuda' is not available.*Available devices: 'cpu', 'mps'"
    with pytest.raises(DeviceError, match=expected):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match=r"'cuda:0' is not available"):
        resolve_device(torch.device("cuda", 0))


def test_cuda_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hardware(monkeypatch, cuda=2)

    with pytest.raises(DeviceError, match=r"'cuda:2' is not available.*2 CUDA.*'cuda:0', 'cuda:1'"):
        resolve_device("cuda:2")


def test_mps_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hardware(monkeypatch, cuda=0, mps=False)

    with pytest.raises(DeviceError, match=r"'mps' is not available.*Available devices: 'cpu'\."):
        resolve_device("mps")


@pytest.mark.parametrize("request_", ["gpu", "cuda:x", "cpu:0", "tpu", "", "cuda:-1"])
def test_unknown_device_string(request_: str) -> None:
    with pytest.raises(ValueError, match=r"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N'"):
        resolve_device(request_)


def test_unknown_device_type() -> None:
    with pytest.raises(ValueError, match=r"torch.device\('meta'\)"):
        resolve_device(torch.device("meta"))
    with pytest.raises(ValueError, match=r"string or torch.device, got 0"):
        resolve_device(0)  # type: ignore[arg-type]


def test_auto_logs_choice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_hardware(monkeypatch, cuda=0, mps=False)

    with caplog.at_level(logging.INFO, logger="brainlake.training.device"):
        resolve_device("auto")

    assert "device='auto' resolved to cpu" in caplog.text


@pytest.mark.parametrize(
    ("device", "cuda_bf16", "expected"),
    [
        ("cuda", True, "bf16"),
        ("cuda", False, "fp16"),
        ("cpu", True, "fp32"),
        ("mps", True, "fp32"),
    ],
)
def test_auto_precision(
    monkeypatch: pytest.MonkeyPatch, device: str, cuda_bf16: bool, expected: str
) -> None:
    fake_hardware(monkeypatch, cuda=1, cuda_bf16=cuda_bf16, mps=True)

    assert resolve_precision("auto", torch.device(device)) == expected
    assert resolve_precision("auto", device) == expected


@pytest.mark.parametrize(
    ("precision", "device"),
    [
        ("fp32", "cuda"),
        ("fp16", "cuda"),
        ("bf16", "cuda"),
        ("bf16", "cpu"),
        ("fp16", "cpu"),
        ("fp32", "cpu"),
    ],
)
def test_explicit_precision_kept(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    precision: str,
    device: str,
) -> None:
    fake_hardware(monkeypatch, cuda=1, cuda_bf16=True)

    with caplog.at_level(logging.WARNING, logger="brainlake.training.device"):
        resolved = resolve_precision(precision, torch.device(device))  # type: ignore[arg-type]

    assert resolved == precision
    assert caplog.records == []


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cuda", "fp16"), ("mps", "fp32")],
)
def test_bf16_fallback_warns_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    device: str,
    expected: str,
) -> None:
    fake_hardware(monkeypatch, cuda=1, cuda_bf16=False, mps=True, mps_bf16=False)

    with caplog.at_level(logging.DEBUG, logger="brainlake.training.device"):
        resolved = resolve_precision("bf16", torch.device(device))

    assert resolved == expected
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"precision='bf16' is not supported on {device}" in warnings[0].getMessage()
    assert f"training in {expected} instead" in warnings[0].getMessage()


def test_precision_without_autocast_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)

    with caplog.at_level(logging.WARNING, logger="brainlake.training.device"):
        assert resolve_precision("fp16", torch.device("cpu")) == "fp32"

    assert len(caplog.records) == 1


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match=r"precision must be one of .*'bf16'.*got 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))  # type: ignore[arg-type]


def test_precision_resolves_device_string(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hardware(monkeypatch, cuda=0)

    with pytest.raises(DeviceError, match=r"'cuda' is not available"):
        resolve_precision("auto", "cuda")
