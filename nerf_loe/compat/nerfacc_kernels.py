"""nerfacc's CUDA kernels, built on first use, or the reason they cannot be.

nerfacc 0.5.2 compiles its kernels just in time, the first time ``nerfacc.cuda._backend`` is
imported. With CUDA 13 that build fails: CCCL 3.0 removed ``cub::Equality``, which nerfacc's
``scan.cu`` names (measured on an H100 machine with CUDA 13.0 and torch 2.11). The fix is a
one-line alias, force-included into nerfacc's CUDA sources through ``NVCC_PREPEND_FLAGS`` for that
build only (``nerfacc_cub_equality.cuh``; it is empty for older CUBs). Any other failure (no
toolkit, a compiler mismatch) is reported as a reason, and the renderer falls back to its PyTorch
backend, which produces the same samples.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

CUB_EQUALITY_SHIM = Path(__file__).with_name("nerfacc_cub_equality.cuh")


def _short(error: BaseException) -> str:
    """The compiler's first error line, else the last line of the message (build logs are long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    picked = next((line for line in lines if "error:" in line), None)  # nvcc / gcc diagnostics
    text = picked or (lines[-1] if lines else "")
    return f"{type(error).__name__}: {text[:240]}"


@functools.cache
def nerfacc_kernels_unavailable() -> str | None:
    """``None`` once nerfacc's CUDA kernels are loaded (building them on the first call, which
    takes minutes), else why they are not; the build is tried at most once per process."""
    previous = os.environ.get("NVCC_PREPEND_FLAGS")
    os.environ["NVCC_PREPEND_FLAGS"] = f'{previous or ""} -include "{CUB_EQUALITY_SHIM}"'.strip()
    try:
        from nerfacc.cuda._backend import _C
    except Exception as error:  # a failed JIT build raises RuntimeError, a half-built cache ImportError
        return _short(error)
    finally:
        if previous is None:
            del os.environ["NVCC_PREPEND_FLAGS"]
        else:
            os.environ["NVCC_PREPEND_FLAGS"] = previous
    if _C is None:
        return "no CUDA toolkit (nvcc) to build them"
    return None
