"""Device resolution: auto is the CPU on a machine without CUDA; a missing device is an error."""

import pytest
import torch

from diagnostics.devices import DeviceError, resolve_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("").type == expected
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_missing_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")


def test_unknown_device():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_settings_reject_a_bad_device(monkeypatch):
    from pydantic import ValidationError

    from service.settings import Settings

    monkeypatch.setenv("DRIFTSCOPE_DEVICE", "gpu0")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("DRIFTSCOPE_DEVICE", "cuda:1")
    assert Settings().device == "cuda:1"
