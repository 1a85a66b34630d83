"""The reference CPU profile: the same inputs give the same bytes on any x86-64 CPU with AVX2.

Three libraries inside torch pick their CPU kernels by the processor they find, and kernels of
other widths add in other orders, so other bits come out (and 2,500 training steps turn them into
other metrics):

- ATen, torch's own kernels (``ATEN_CPU_CAPABILITY``): AVX-512 kernels where the CPU has them;
- oneDNN, the convolutions (``ONEDNN_MAX_CPU_ISA``);
- MKL, the matrix products (``MKL_CBWR``). Its conditional numerical reproducibility also fixes
  the cache sizes its blocking assumes and its reduction order; on a non-Intel CPU MKL honours
  only the ``COMPATIBLE`` branch (its documentation: other branches fall back to the CPU's own
  there), so that is the one branch that gives Intel and AMD machines the same sums.

NumPy does the same outside torch (``NPY_DISABLE_CPU_FEATURES``): on an AVX-512 CPU its exp, log,
sin and cos take AVX-512 code of other rounding than the AVX2 or scalar code elsewhere, and the
demo renders its faces with them. The profile turns its AVX-512 groups off (the names of NumPy 2
and of NumPy 1; a name a version does not know is ignored). FFmpeg's conversions and x264 are
made CPU-independent where they are called (:mod:`tg_dfer.video`).

Sums are also split by thread (ATen's reductions, MKL's blocking), so the profile fixes torch's
thread count at :data:`REFERENCE_THREADS` whatever the cores: on one core the threads take turns
and the bytes stay the same.

Each library reads its variable once, when torch loads, so :func:`prepare_environment` must run
before the first ``import torch`` (``pipeline/__init__.py`` calls it, so every ``tg-dfer`` command
and DVC stage gets it); :func:`activate` then fixes the threads and :func:`record` says what was
in effect, checked against torch itself, for the outputs to carry.

``TG_DFER_CPU_PROFILE=native`` switches the profile off: each library then uses the whole CPU
and results depend on the machine (docs/reference-run.md).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import MutableMapping
from typing import Any

PROFILE_VARIABLE = "TG_DFER_CPU_PROFILE"
PROFILES = ("reference", "native")
REFERENCE_THREADS = 2
# What each library reads at load time, and the value that caps it.
REFERENCE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
                         "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512CD AVX512_SKX "
                                                     "AVX512_CLX AVX512_CNL"}
# Settings that would fight the reference ones (a user's own MKL cap beside MKL_CBWR).
CONFLICTING = ("MKL_ENABLE_INSTRUCTIONS",)


class ProfileError(ValueError):
    """An unknown value of TG_DFER_CPU_PROFILE."""


def requested(environ: MutableMapping[str, str] | None = None) -> str:
    """The profile asked for: ``reference`` unless TG_DFER_CPU_PROFILE says ``native``."""
    value = (os.environ if environ is None else environ).get(PROFILE_VARIABLE, "reference").strip().lower()
    if value not in PROFILES:
        raise ProfileError(f"{PROFILE_VARIABLE}={value!r}: expected one of {', '.join(PROFILES)}")
    return value


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the libraries' variables for the requested profile; call before torch is imported.

    The reference profile overrides a value the shell set (a run that asks for it gets it); the
    native profile leaves the environment alone.
    """
    environ = os.environ if environ is None else environ
    if requested(environ) != "reference":
        return
    environ.update(REFERENCE_ENVIRONMENT)
    for name in CONFLICTING:
        environ.pop(name, None)


def not_in_effect() -> list[str]:
    """Why the reference profile is not in force in this process (empty when it is)."""
    import torch

    reasons = []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.lower() != REFERENCE_ENVIRONMENT["ATEN_CPU_CAPABILITY"]:
        reasons.append(f"torch runs its {capability} kernels (this CPU lacks AVX2, or torch was imported before "
                       "tg_dfer could cap it)")
    if _numpy_avx512():
        reasons.append("numpy runs its AVX-512 kernels (numpy was imported before tg_dfer could cap it)")
    for name, value in REFERENCE_ENVIRONMENT.items():
        if os.environ.get(name) != value:
            reasons.append(f"{name} is {os.environ.get(name)!r}, not {value!r}")
    reasons += [f"{name} is set" for name in CONFLICTING if name in os.environ]
    if torch.get_num_threads() != REFERENCE_THREADS:
        reasons.append(f"{torch.get_num_threads()} torch threads, not {REFERENCE_THREADS}")
    return reasons


def _numpy_avx512() -> bool:
    """Whether this process's numpy dispatches AVX-512 code (it reads its variable when imported)."""
    import numpy

    features = getattr(getattr(numpy, "_core", None), "_multiarray_umath", None)
    found = getattr(features, "__cpu_features__", {})
    return any(found.get(name) for name in ("X86_V4", "AVX512F", "AVX512_SKX"))


def activate() -> dict[str, Any]:
    """Fix the threads and deterministic kernels of the requested profile; the previous settings,
    for :func:`restore`. Warns (once per process) when the reference profile cannot take effect."""
    import torch

    previous = {"threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled()}
    if requested() == "reference":
        torch.set_num_threads(REFERENCE_THREADS)
        torch.use_deterministic_algorithms(True, warn_only=True)
        reasons = not_in_effect()
        if reasons:
            warnings.warn(f"the reference CPU profile is not in effect ({'; '.join(reasons)}): results depend on "
                          f"this machine (docs/reference-run.md)", RuntimeWarning, stacklevel=2)
    return previous


def restore(previous: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(previous["threads"])
    torch.use_deterministic_algorithms(previous["deterministic"], warn_only=True)


def record(device: str = "cpu") -> dict[str, Any]:
    """What the outputs carry: the profile that computed them, the same on every machine it covers.

    ``reference`` records only its settings (equal records, equal bytes); anything else records
    the machine (``native``, with why the reference was not in force) or the GPU (``gpu``: the
    profile covers CPU kernels only).
    """
    if not device.startswith("cpu"):
        return {"name": "gpu", "device": device}
    reasons = not_in_effect() if "torch" in sys.modules else ["torch is not loaded"]
    if requested() == "reference" and not reasons:
        return {"name": "reference", **{name.lower(): value for name, value in REFERENCE_ENVIRONMENT.items()},
                "threads": REFERENCE_THREADS}
    import torch

    why = f"{PROFILE_VARIABLE}=native" if requested() == "native" else "; ".join(reasons)
    return {"name": "native", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "why": why}


def from_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The record an h5 file or checkpoint carries (a JSON string in HDF5); files of earlier schemas have none."""
    value = attrs.get("cpu_profile")
    if value is None:
        return {"name": "unrecorded"}
    return json.loads(value) if isinstance(value, (str, bytes)) else dict(value)


def combined(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One record for a result made by several runs: theirs when all agree, else ``mixed`` with each."""
    distinct = {repr(sorted(value.items())): value for value in records.values()}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    return {"name": "mixed", "runs": records}
