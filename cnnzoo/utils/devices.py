"""What the machine computes bfloat16 on: CPU flags and GPU compute capability, read without any Keras backend.

`dtype="auto"` (`cnnzoo.zoo.precision.auto_dtype`) picks `mixed_bfloat16` where
the device has bf16 units and float32 elsewhere:

- a visible NVIDIA GPU (`nvidia-smi`, honouring `CUDA_VISIBLE_DEVICES`): compute
  capability 8.0 or more (Ampere and later) for every visible GPU;
- else the CPU: the `avx512_bf16` or `amx_bf16` flags of `/proc/cpuinfo` (Linux).
"""

import functools
import os
import shutil
import subprocess

__all__ = ["cpu_bf16", "gpu_compute_capabilities", "bf16_units"]

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_MIN_CAPABILITY = 8.0


@functools.lru_cache(maxsize=1)
def cpu_bf16(cpuinfo="/proc/cpuinfo"):
    """True when the CPU flags name bfloat16 instructions (`avx512_bf16`, `amx_bf16`); False elsewhere.

    Example:

    >>> cpu_bf16()  # doctest: +SKIP
    True
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return any(flag in flags for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


@functools.lru_cache(maxsize=1)
def gpu_compute_capabilities():
    """The compute capabilities of the visible NVIDIA GPUs (floats, e.g. `[9.0]`); `[]` when there are none.

    Example:

    >>> gpu_compute_capabilities()  # doctest: +SKIP
    [9.0]
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    chosen = None if visible is None else {v.strip() for v in visible.split(",")}
    caps = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and (chosen is None or parts[0] in chosen):
            try:
                caps.append(float(parts[1]))
            except ValueError:
                continue
    return caps


def bf16_units():
    """`(has bf16 units, why)`: the GPUs decide when there are any, else the CPU flags.

    Example:

    >>> bf16_units()  # doctest: +SKIP
    (True, 'the CPU has avx512_bf16/amx_bf16')
    """
    caps = gpu_compute_capabilities()
    if caps:
        ok = min(caps) >= BF16_MIN_CAPABILITY
        return ok, f"GPU compute capability {min(caps):g} ({'>=' if ok else '<'} {BF16_MIN_CAPABILITY:g})"
    if cpu_bf16():
        return True, "the CPU has avx512_bf16/amx_bf16"
    return False, "no GPU, and the CPU has no avx512_bf16/amx_bf16"
