"""The reference CPU profile's settings and records (what happens at torch load: tests/e2e/test_cpu_kernels.py)."""

from __future__ import annotations

import pytest

from tg_dfer import cpu_profile


# numpy's AVX-512 groups by the names of numpy 2 and numpy 1
NUMPY_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL"


def test_the_reference_profile_overrides_the_shell_and_native_leaves_it_alone():
    shell = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "PATH": "/bin"}
    reference = dict(shell)
    cpu_profile.prepare_environment(reference)
    assert reference == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
                         "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX512, "PATH": "/bin"}
    native = {**shell, cpu_profile.PROFILE_VARIABLE: "native"}
    cpu_profile.prepare_environment(native)
    assert native == {**shell, cpu_profile.PROFILE_VARIABLE: "native"}


def test_an_unknown_profile_is_named():
    with pytest.raises(cpu_profile.ProfileError, match="TG_DFER_CPU_PROFILE='fast': expected one of reference, native"):
        cpu_profile.requested({cpu_profile.PROFILE_VARIABLE: "fast"})


def test_records_of_one_profile_combine_into_it_and_differing_ones_into_mixed():
    reference = {"name": "reference", "threads": 2}
    assert cpu_profile.combined({"features": reference, "fold1": dict(reference)}) == reference
    native = {"name": "native", "threads": 8, "why": "TG_DFER_CPU_PROFILE=native"}
    assert cpu_profile.combined({"features": reference, "fold1": native}) == {
        "name": "mixed", "runs": {"features": reference, "fold1": native}}
    assert cpu_profile.from_attrs({"cpu_profile": '{"name": "reference", "threads": 2}'}) == reference
    assert cpu_profile.from_attrs({}) == {"name": "unrecorded"}


def test_a_gpu_run_records_the_device_not_the_cpu():
    assert cpu_profile.record("cuda:0") == {"name": "gpu", "device": "cuda:0"}


def test_this_process_runs_under_the_reference_profile_and_records_it_once_activated():
    # conftest imports the stage layer before torch, as the tg-dfer command does.
    previous = cpu_profile.activate()
    try:
        assert cpu_profile.not_in_effect() == []
        assert cpu_profile.record("cpu") == {"name": "reference", "aten_cpu_capability": "avx2",
                                             "onednn_max_cpu_isa": "AVX2", "mkl_cbwr": "COMPATIBLE",
                                             "npy_disable_cpu_features": NUMPY_AVX512, "threads": 2}
    finally:
        cpu_profile.restore(previous)
