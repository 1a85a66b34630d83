"""Process memory: the choice between reusing freed memory (fast) and giving it back (lean).

glibc serves large allocations from mmap and returns them on free, but it raises that mmap
threshold dynamically each time a large block is freed; after a few training steps the
activations of every step come from the heap instead. The heap reuses them without asking the
kernel for fresh pages, which is fast, but it keeps what was freed (on the 2-core machine, about
+150 MiB of RSS above the live working set of one step). Fixing the threshold sends every large
block back to the kernel when it is freed: the resident memory stays at what is live, and every
step pays for zeroed fresh pages (15-31 % of a plain cached epoch's time there, docs/benchmarks.md).
Training chooses with activation checkpointing, its memory-lean mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024  # glibc's own initial value, kept fixed


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None  # glibc's: musl and macOS lack it


def release_freed_memory() -> bool:
    """Keep glibc's mmap threshold fixed from now on, so large freed blocks return to the system at once.

    Returns False where the C library is not glibc (the setting then does not exist).
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
