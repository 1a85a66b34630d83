"""The reference CPU profile takes effect when torch loads: the kernels it caps give the same bytes
whatever the shell set and whatever the cores; switched off, they give other bytes on AVX-512."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tg_dfer import cpu_profile

from helpers import REPO

# A product (MKL), a convolution (oneDNN), an elementwise + sum (ATen, split by thread), in the
# process the way a stage runs: the stage layer imported first, then the command's threads.
PROBE = """
import hashlib, sys
import pipeline.cli
import torch
from tg_dfer import cpu_profile
cpu_profile.activate()
generator = torch.Generator().manual_seed(0)
a, b = torch.randn(384, 768, generator=generator), torch.randn(768, 512, generator=generator)
image, kernel = torch.randn(4, 3, 64, 64, generator=generator), torch.randn(16, 3, 7, 7, generator=generator)
values = torch.randn(4_000_000, generator=generator)
parts = [a @ b, torch.nn.functional.conv2d(image, kernel, stride=2), (values.exp() * values).sum().reshape(1)]
digest = hashlib.sha256(b"".join(part.contiguous().numpy().tobytes() for part in parts)).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), digest)
"""
AVX512 = "avx512f" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else False


def probe(env: dict[str, str], prefix: tuple[str, ...] = ()) -> tuple[str, str, str]:
    clean = {key: value for key, value in os.environ.items()
             if key not in cpu_profile.REFERENCE_ENVIRONMENT and key != cpu_profile.PROFILE_VARIABLE}
    done = subprocess.run([*prefix, sys.executable, "-c", PROBE], env={**clean, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    capability, threads, digest = done.stdout.split()
    return capability, threads, digest


def test_the_profile_caps_the_kernels_whatever_the_shell_asked_for():
    plain = probe({})
    assert plain[:2] == ("AVX2", "2")
    hostile = probe({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
                     "MKL_ENABLE_INSTRUCTIONS": "AVX512", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "7"})
    assert hostile == plain


@pytest.mark.skipif(shutil.which("taskset") is None or (os.cpu_count() or 1) < 2, reason="needs taskset and 2 cores")
def test_one_core_gives_the_bytes_of_two():
    assert probe({}, ("taskset", "-c", "0")) == probe({})


@pytest.mark.skipif(not AVX512, reason="the kernels differ only on a CPU with AVX-512")
def test_switched_off_the_machine_shows_through():
    native = probe({cpu_profile.PROFILE_VARIABLE: "native", "OMP_NUM_THREADS": "2"})
    assert native[0] == "AVX512" and native[2] != probe({})[2]
