"""Run a forking server under a child subreaper, so that its CPU is never lost.

A process's CPU reaches its parent's ``cutime``/``cstime`` only if the parent waits for it.
vsftpd's per-session processes do not always wait for each other: an orphan is re-parented
and reaped outside the measured tree, and its CPU (the transfer itself) vanishes. As a
subreaper (``PR_SET_CHILD_SUBREAPER``) this process adopts such orphans and reaps them, so
their CPU lands in its own ``cutime``/``cstime``, inside the tree :mod:`procstat` sums.

    python3 -m benchmarks.reaper /usr/sbin/vsftpd vsftpd.conf
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

__all__ = ["main"]

_PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    """Become a subreaper, start ``argv``, reap every process until it has exited."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    child = subprocess.Popen(argv)
    while True:
        pid, status = os.wait()
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
