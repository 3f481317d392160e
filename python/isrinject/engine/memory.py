"""Process memory housekeeping for long-running quanta."""

from __future__ import annotations

__all__ = ["release_freed_memory"]

import ctypes
import ctypes.util


def release_freed_memory() -> None:
    """Return freed heap memory to the operating system (glibc only; else a no-op).

    The per-stamp numpy temporaries are freed into glibc's heap, which keeps
    them mapped (≈ 0.15 GB after a 4k × 4k quantum); the output write that
    follows is the quantum's memory peak, so hand them back first.
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
