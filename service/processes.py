"""Process plumbing shared by the actors: parent-death signals and signal dispositions.

Every child of the tree asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), so a
`kill -9` of the root (or of the supervisor) never leaves orphaned actors or workers behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once at import: every forked worker inherits it instead of dlopen()ing libc again.
_prctl = _load_prctl()


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent exits; exit at once if the parent is already gone."""
    if _prctl is not None:  # not Linux: best effort only
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(0)


def name_process(role: str) -> None:
    """`ps` shows `taskq: scheduler` rather than a multiprocessing command line."""
    import setproctitle

    setproctitle.setproctitle(f"taskq: {role}")
