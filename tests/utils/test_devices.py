"""`cnnzoo/utils/devices.py` and `dtype="auto"`: bf16 units read from real CPU flags and nvidia-smi."""

import pytest

import cnnzoo
from cnnzoo.utils import devices


def test_cpu_flags_decide_bf16(tmp_path):
    with_bf16 = tmp_path / "cpuinfo_bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    without = tmp_path / "cpuinfo_plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert devices.cpu_bf16.__wrapped__(str(with_bf16)) is True
    assert devices.cpu_bf16.__wrapped__(str(without)) is False
    assert devices.cpu_bf16.__wrapped__(str(tmp_path / "missing")) is False
    real = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    assert devices.cpu_bf16() == ("avx512_bf16" in real or "amx_bf16" in real)


def test_hidden_gpus_leave_the_cpu_to_decide(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    devices.gpu_compute_capabilities.cache_clear()
    try:
        assert devices.gpu_compute_capabilities() == []
        ok, why = devices.bf16_units()
        assert ok == devices.cpu_bf16() and "CPU" in why
    finally:
        devices.gpu_compute_capabilities.cache_clear()


def test_dtype_auto_is_the_policy_the_device_supports():
    from cnnzoo.errors import ConfigError
    from cnnzoo.zoo.precision import auto_dtype, check_dtype, dtype_of

    expected = "mixed_bfloat16" if devices.bf16_units()[0] else "float32"
    assert auto_dtype() == check_dtype("auto") == expected
    assert dtype_of(cnnzoo.get("digits_cnn", dtype="auto", compile=False)) == expected
    with pytest.raises(ConfigError, match="'auto'"):
        check_dtype("automatic")
