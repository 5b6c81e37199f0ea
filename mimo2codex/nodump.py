"""Keeping other processes of the same user out of the proxy's memory (Linux).

The provider key reaches the proxy through its environment. Without this, any process of the same
user (a command Codex runs for the model, even in its read-only sandbox) reads it from
`/proc/<pid>/environ`, or from the heap through `/proc/<pid>/mem` or ptrace. A process that is not
dumpable (`prctl(PR_SET_DUMPABLE, 0)`) has its `/proc/<pid>/*` files owned by root, and the kernel
refuses those reads and ptrace to anyone without CAP_SYS_PTRACE.

Side effects: no core dumps; gdb, strace, py-spy and lsof need root; `/proc/<pid>/{fd,maps,...}`
of the proxy are root's to read (`stat` and `status` stay readable; the process still reads all
of its own). What mitmproxy reads in /proc (its own files; mitmweb 12's process list for local
mode reads other processes') is not affected. execve() resets the flag, so
programs the proxy starts (mitmweb opening a browser) are dumpable as usual and do not protect
what they inherit: see `secrets.hold_env`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

PR_GET_DUMPABLE = 3  # <linux/prctl.h>
PR_SET_DUMPABLE = 4

log = logging.getLogger("mimo2codex")


def forbid() -> bool:
    """Make this process non-dumpable; False (and a debug line) where that is not available."""
    if not sys.platform.startswith("linux"):
        log.debug("no PR_SET_DUMPABLE on %s: same-user processes can still read this process's memory", sys.platform)
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    except (OSError, AttributeError) as e:  # AttributeError: a libc without prctl
        log.debug("could not make the process non-dumpable: %s", e)
        return False
    return True


def dumpable() -> bool | None:
    """Whether this process is dumpable (None where unknown)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
    except (OSError, AttributeError):
        return None
