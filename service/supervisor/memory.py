"""Memory limits of workers: declared `memory_mb` means something.

A worker is forked from the zygote, so its resident set starts at the zygote's (the imported interpreter
and handlers, shared copy-on-write), which the zygote reports when it is ready. The limit is what the job
declared plus a margin, on top of that baseline: `memory_mb × (1 + MARGIN) + baseline`. The supervisor
samples each busy worker's resident set every 100 ms from /proc and kills one above its limit (outcome
`memory_exceeded`).
"""

from __future__ import annotations

import os

MARGIN = 0.10
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int) -> int | None:
    """The resident set of a process, or None if it is gone (read from /proc: no library call per sample)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def limit_bytes(memory_mb: int, baseline: int) -> int:
    return int(memory_mb * (1 + MARGIN) * (1 << 20)) + baseline
