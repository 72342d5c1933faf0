"""The CPU numerics profile: which kernels compute the suite's floats, fixed before torch starts.

A float result on a CPU depends on the kernels its libraries dispatch to, and each library picks
them from the CPU it finds: torch's ATen kernels by vector width (AVX-512 on an Intel Xeon, AVX2 on
an AMD EPYC of the same kind), MKL's GEMMs by vendor and generation, oneDNN's convolutions by ISA,
numpy's transcendental loops by SIMD extension. Each choice orders the float sums differently, so the
same code, lock and seed train to other weights on another CPU (measured: up to 4 top-1 points on
the default suite, Intel against AMD). The ``portable`` profile holds every one of them to one code
path that every x86-64 CPU of this kind runs the same way:

* ATen: ``ATEN_CPU_CAPABILITY=avx2``, the widest ISA both vendors have;
* MKL: ``MKL_CBWR=COMPATIBLE``, MKL's conditional numerical reproducibility mode meant for any x86
  vendor (its ``AVX2`` mode is documented for Intel CPUs only, and on an AMD CPU MKL silently falls
  back to its automatic branch: read back through ``mkl_serv_cbwr_get``, it says AUTO);
* oneDNN and NNPACK: off (``torch.backends.mkldnn``/``nnpack``: convolutions take ATen's own
  kernels; NNPACK picks its kernels from the CPU too), and ``ONEDNN_MAX_CPU_ISA=AVX2`` for any op
  that still reaches oneDNN;
* numpy: its AVX-512 loops disabled (``NPY_DISABLE_CPU_FEATURES``), so the synthetic world's
  ``sin``/``cos`` run the AVX2 loops everywhere;
* threads: fixed per run and part of the fingerprint (the launcher gives every CPU run of the
  default suite one torch thread on any number of cores, and pre-training its backbone two).

Library variables are read when the library loads, so :func:`apply` runs from ``bench/__init__``,
before anything in the suite imports torch or numpy, and exports them to every job it starts. What
took effect is read back from the libraries themselves (:func:`effective`) and recorded in every
run's fingerprint, so a process where torch was imported first is named as such, never passed off as
portable. ``BENCH_NUMERICS=native`` leaves every library to its own choice: faster on some CPUs,
reproducible only on the same CPU model. GPU kernels are untouched by either profile.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PROFILE_ENV = "BENCH_NUMERICS"
DEFAULT_PROFILE = "portable"


@dataclass(frozen=True)
class NumericsProfile:
    name: str
    version: int  # bump when the settings change what the suite computes
    environment: Mapping[str, str] = field(default_factory=dict)  # read by the libraries when they load
    mkldnn: bool | None = None  # torch.backends.mkldnn.enabled; None: torch's default
    nnpack: bool | None = None  # torch.backends.nnpack; None: torch's default

    @property
    def label(self) -> str:
        return f"{self.name}-v{self.version}"


PROFILES = {
    "portable": NumericsProfile(
        "portable", 1,
        environment={"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2",
                     "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
        mkldnn=False, nnpack=False),
    "native": NumericsProfile("native", 1),
}

# MKL's answers to mkl_cbwr_get (mkl_service.h)
_MKL_CBWR_NAMES = {0: "OFF", 1: "BRANCH_OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1",
                   8: "SSE4_2", 9: "AVX", 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}
_MKL_CBWR_ALL = -1


class NumericsError(ValueError):
    """An unknown profile name in $BENCH_NUMERICS."""


def selected() -> NumericsProfile:
    name = os.environ.get(PROFILE_ENV, DEFAULT_PROFILE).strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise NumericsError(f"${PROFILE_ENV}={name!r}: choose one of {sorted(PROFILES)} (default {DEFAULT_PROFILE})")
    return PROFILES[name]


def apply() -> NumericsProfile:
    """Export the selected profile's variables (they reach every process started from here on) and set
    torch's switches. Must run before torch or numpy loads its kernels to take full effect; whether
    it did is what :func:`effective` reads back."""
    profile = selected()
    os.environ.update(profile.environment)
    os.environ[PROFILE_ENV] = profile.name
    import torch
    if profile.mkldnn is not None:
        torch.backends.mkldnn.enabled = profile.mkldnn
    if profile.nnpack is not None:
        torch.backends.nnpack.set_flags(profile.nnpack)
    return profile


def mkl_cbwr_mode() -> str:
    """The reproducibility mode MKL is in, as MKL itself reports it (torch links MKL statically and
    exports its service functions); "unknown" where torch has no MKL."""
    import torch
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        get = ctypes.CDLL(str(library)).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return "unknown"
    get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
    mode = get(_MKL_CBWR_ALL)
    return _MKL_CBWR_NAMES.get(mode, str(mode))


def numpy_simd() -> list[str]:
    """The SIMD extensions numpy dispatches to on this machine, after the disabled ones."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return sorted(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


def label() -> str:
    """The profile in effect in this process, as the fingerprint names it."""
    return effective()["profile"]


def effective() -> dict[str, Any]:
    """What computes the floats in this process, read back from the libraries: the facts the run's
    fingerprint hashes in place of the CPU model when the portable profile holds."""
    import torch
    profile = selected()
    facts = {"aten_isa": torch.backends.cpu.get_cpu_capability(), "mkl_cbwr": mkl_cbwr_mode(),
             "mkldnn": bool(torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()),
             "nnpack": bool(torch._nnpack_available() and torch._C._get_nnpack_enabled()),
             "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"), "numpy_simd": numpy_simd()}
    expected = {"aten_isa": profile.environment.get("ATEN_CPU_CAPABILITY", "").upper() or None,
                "mkl_cbwr": profile.environment.get("MKL_CBWR"), "mkldnn": profile.mkldnn,
                "nnpack": profile.nnpack}
    disabled = set(profile.environment.get("NPY_DISABLE_CPU_FEATURES", "").split())
    missed = sorted(k for k, want in expected.items() if want is not None and facts[k] != want)
    missed += ["numpy_simd"] if disabled & set(facts["numpy_simd"]) else []
    holds = not missed
    return {"profile": profile.label if holds else f"{profile.label} (not in effect: {', '.join(missed)})",
            "holds": holds, **facts}
