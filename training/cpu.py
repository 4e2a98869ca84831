"""What the CPU offers, and which TensorFlow kernels to run on it. Imports no TensorFlow:
`choose_cpu_kernels` must run before TensorFlow starts."""

from __future__ import annotations

import os

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with one of these
# (tensorflow/core/util/util.cc, IsMKLEnabled); everywhere else it runs Eigen's.
TF_ONEDNN_CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8",
                       "amx_bf16")
# Measured only with AVX2 code, so a CPU with AVX-512 (a Skylake-SP Xeon, say) is left to
# TensorFlow too.
UNMEASURED_CPU_FLAGS = ("avx512f",)


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_cpu_kernels(environ=None, flags=None):
    """Turn TensorFlow's oneDNN kernels on for an AVX2-only x86 CPU on Linux (AVX2 and FMA, no
    AVX-512, AVX_VNNI or AMX: an AMD EPYC of family 23 or 25, say), where TensorFlow would
    leave them off, unless the user set `TF_ENABLE_ONEDNN_OPTS`. The flags come from
    /proc/cpuinfo, so elsewhere (macOS, Windows) nothing changes.

    There GoogLeNet trains ~1.4x faster with oneDNN than with Eigen (docs/training.md,
    "Against torchvision on AVX2"). Takes effect only before TensorFlow is imported. Returns
    True when it turned them on; elsewhere (TensorFlow's own choice already, the user's
    setting, an older x86 or another architecture) it leaves the environment as it was.
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_ENV in environ:
        return False
    flags = cpu_flags() if flags is None else set(flags)
    if flags & {*TF_ONEDNN_CPU_FLAGS, *UNMEASURED_CPU_FLAGS} or not {"avx2", "fma"} <= flags:
        return False
    environ[ONEDNN_ENV] = "1"
    return True
