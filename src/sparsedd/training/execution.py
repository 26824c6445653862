"""How a run executes on its device: ``precision=auto`` and ``compile=auto`` resolved.

``auto`` picks a setting only where a measurement showed that it pays on that kind of device
(docs/speed.md): bf16 autocast where the device computes bf16 natively, and torch.compile on a
CPU running bf16. On CUDA, compile stays off under ``auto`` until ``bench/gpu_check.sh`` has
measured it there.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

import torch

#: Environment variables naming torch's compile caches (Inductor's kernels, Triton's on a
#: GPU); by default they lie in $TMPDIR, outside any folder a user gave.
COMPILE_CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


def cache_folder() -> Path:
    """sparsedd's own cache folder: ``$XDG_CACHE_HOME/sparsedd`` (default ``~/.cache/sparsedd``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparsedd"


def use_own_compile_cache() -> None:
    """Point torch's compile caches into ``cache_folder()/torch-compile`` (where a user has
    not set them), so that a run leaves nothing in $TMPDIR and later runs reuse the kernels."""
    for variable, name in COMPILE_CACHE_VARIABLES.items():
        os.environ.setdefault(variable, str(cache_folder() / "torch-compile" / name))


# torch creates its Inductor cache folder on a first optimizer step, compiled or not.
use_own_compile_cache()

# x86 CPU flags (Linux /proc/cpuinfo) of native bf16 matrix products: AVX512-BF16 and AMX.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX)."""
    return bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)


def device_has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA: Ampere or newer; CPU: by its flags)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: ``auto`` becomes bf16 only where the device has it natively."""
    if precision != "auto":
        return precision
    return "bf16" if device_has_native_bf16(device) else "fp32"


def has_cpp_compiler() -> bool:
    """Whether a C++ compiler is on PATH (torch.compile's CPU backend builds C++ kernels)."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def resolve_compile(compile: bool | None, precision: str, device: torch.device) -> bool:
    """Whether to torch.compile: ``None`` (auto) only where measured to pay, a CPU in bf16."""
    if compile is not None:
        return compile
    return device.type == "cpu" and precision == "bf16" and has_cpp_compiler()


def quiet_compile_imports() -> None:
    """Import torch.compile's C++ toolchain module now, before any progress line: importing it
    logs "No CUDA runtime is found, using CUDA_HOME=..." on a machine with a CUDA toolkit and no
    GPU, which said nothing the run needs and landed among the progress lines."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        logger.setLevel(level)


def describe_execution(precision: str, compiled: bool) -> str:
    """How a round was computed, as recorded with it: ``bf16+compile``, ``fp32``."""
    return "+".join([precision] + (["compile"] if compiled else []))


def mul_each_(tensors: list[torch.Tensor], factors: list[torch.Tensor] | float) -> None:
    """``tensors[i] *= factors[i]`` (or a scalar) in place, for masks and weight decay.

    On CUDA one multi-tensor kernel (``torch._foreach_mul_``) replaces a launch per tensor; on
    the CPU the public per-tensor loop measured as fast (docs/speed.md), so it is used there.
    """
    if not tensors:
        return
    if tensors[0].is_cuda:
        torch._foreach_mul_(tensors, factors)
        return
    if isinstance(factors, (int, float)):
        for t in tensors:
            t.mul_(factors)
        return
    for t, f in zip(tensors, factors, strict=True):
        t.mul_(f)


__all__ = [
    "cache_folder",
    "cpu_has_native_bf16",
    "describe_execution",
    "device_has_native_bf16",
    "mul_each_",
    "resolve_compile",
    "resolve_precision",
    "use_own_compile_cache",
]
