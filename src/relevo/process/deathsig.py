"""A child learns of its parent's death from the kernel, where it can ask for that."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

_PR_SET_PDEATHSIG = 1


def ask_signal_on_parent_death(signum: int = signal.SIGTERM) -> bool:
    """Linux: have the kernel send `signum` when the parent dies. False where unsupported.

    The pipe to the parent reaching end of file is the portable fallback (see child.py).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
