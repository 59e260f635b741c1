"""Which CPU numba compiles for (librosa's and umap-learn's kernels).

numba 0.68 / llvmlite 0.50 compile for the host CPU by name; on a CPU that LLVM names
`emeraldrapids` (Xeon 5th gen, AVX-512 + AMX) the compiled librosa kernels crash the process
(segmentation fault in `librosa.onset.onset_detect`), while the same code compiled for
`sapphirerapids`, `skylake-avx512` or `haswell` runs. So unless the user chose one, numba is
pinned to a well-known target that matches the CPU's instruction set: `skylake-avx512` where
AVX-512 is there, `haswell` where AVX2 is, else `generic`. Must run before numba is imported.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "NUMBA_CPU_NAME"


def _flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def numba_target(flags: set[str] | None = None) -> str:
    """The numba CPU name for a CPU with these instruction-set flags."""
    flags = _flags() if flags is None else flags
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"} <= flags:
        return "skylake-avx512"
    if {"avx2", "fma", "bmi2"} <= flags:
        return "haswell"
    return "generic"


def pin_numba_target() -> str:
    """Set $NUMBA_CPU_NAME (unless set already) for this process and its children; the name in force."""
    if not os.environ.get(ENV):
        os.environ[ENV] = numba_target()
    return os.environ[ENV]
