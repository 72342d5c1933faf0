"""The CPU numerics profile (bench.numerics): set before torch starts, read back from the libraries,
named in every fingerprint, and what it is for: training bytes that do not depend on which kernels a
CPU's vendor and generation would pick. Each check runs in a fresh process, because the libraries
read the profile's variables when they load."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.numerics import PROFILE_ENV, PROFILES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE_METHODS = "st_adapter,full_ft,aim"  # conv taps, every weight, attention over time


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in PROFILES["portable"].environment}
    environment.update(PYTHONPATH=REPO, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          cwd=REPO, timeout=300)


def probe_digests(**env: str) -> dict[str, str]:
    out = python(f"from bench.gate.numerics_probe import probe; import json; "
                 f"print(json.dumps(probe({PROBE_METHODS.split(',')!r})))", **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["digests"]


def test_the_portable_profile_holds_in_a_process_that_imports_bench_first():
    out = python("import bench, json; from bench.numerics import effective; print(json.dumps(effective()))")
    facts = json.loads(out.stdout)
    assert facts["holds"] and facts["profile"] == "portable-v1"
    assert (facts["aten_isa"], facts["mkl_cbwr"], facts["mkldnn"], facts["nnpack"]) == ("AVX2", "COMPATIBLE", False, False)
    assert not {"X86_V4", "AVX512_ICL", "AVX512_SPR"} & set(facts["numpy_simd"])


def test_a_process_whose_mkl_started_before_the_profile_is_named_not_portable():
    """MKL read its (absent) MKL_CBWR at its first call: the read-back says so, and so does the
    fingerprint, which then hashes the CPU instead of the profile."""
    out = python("import torch; torch.randn(8, 8) @ torch.randn(8, 8)\n"
                 "import bench, json; from bench.store.provenance import fingerprint; print(json.dumps(fingerprint()))")
    facts = json.loads(out.stdout)
    assert not facts["numerics"]["holds"] and "not in effect: mkl_cbwr" in facts["numerics"]["profile"]
    assert facts["cpu"] == facts["machine"]


@pytest.fixture(scope="module")
def portable() -> dict[str, str]:
    return probe_digests()


@pytest.mark.slow
@pytest.mark.parametrize("emulated", [{"ATEN_CPU_CAPABILITY": "default"}, {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
                                      {"ONEDNN_MAX_CPU_ISA": "AVX"}, {"MKL_CBWR": "AUTO"}],
                         ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_training_bytes_do_not_depend_on_the_kernels_a_cpu_would_pick(emulated, portable):
    """What another CPU changes (the ATen ISA, MKL's code path, oneDNN's) leaves the portable
    profile's trained bytes as they are; the native profile's move (so the check can fail)."""
    assert probe_digests(**emulated) == portable


@pytest.mark.slow
def test_without_the_profile_the_kernels_a_cpu_picks_change_the_bytes():
    native = {PROFILE_ENV: "native"}
    assert probe_digests(**native, ATEN_CPU_CAPABILITY="default") != probe_digests(**native)


def test_the_fingerprint_hashes_the_profile_not_the_cpu_model(monkeypatch):
    """Under the portable profile an Intel and an AMD machine are one environment; natively they are
    two."""
    from bench.store import provenance
    intel = {"vendor": "GenuineIntel", "model": "Intel(R) Xeon(R)", "isa": "AVX512"}
    amd = {"vendor": "AuthenticAMD", "model": "AMD EPYC", "isa": "AVX2"}
    digests = {}
    for name, cpu in (("intel", intel), ("amd", amd)):
        monkeypatch.setattr(provenance, "_cpu_facts", lambda cpu=cpu: dict(cpu))
        print_ = provenance.fingerprint()
        assert print_["machine"] == cpu and print_["numerics"]["profile"] == "portable-v1" and "cpu" not in print_
        digests[name] = print_["digest"]
    assert digests["intel"] == digests["amd"]
    import bench.numerics
    monkeypatch.setattr(bench.numerics, "effective", lambda: {"profile": "native-v1", "holds": True})
    natively = {}
    for name, cpu in (("intel", intel), ("amd", amd)):
        monkeypatch.setattr(provenance, "_cpu_facts", lambda cpu=cpu: dict(cpu))
        natively[name] = provenance.fingerprint()["digest"]
    assert natively["intel"] != natively["amd"]


def test_an_unknown_profile_is_refused_with_the_choices():
    out = subprocess.run([sys.executable, "-m", "bench.run", "--help"], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO, PROFILE_ENV: "fastest"}, timeout=120)
    assert out.returncode == 2
    assert "BENCH_NUMERICS='fastest'" in out.stderr and "native" in out.stderr and "portable" in out.stderr
