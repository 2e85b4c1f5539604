"""CPU time and memory of a server read from /proc, the same way for every server.

A server is a process *tree*: the Python servers are one process (with threads, which
``/proc/<pid>/stat`` already sums), vsftpd forks a process or two per session. Summing
``utime + stime + cutime + cstime`` over the live tree counts every process once: a live
process by itself, a reaped one in its parent's ``cutime``/``cstime``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

__all__ = ["cpu_seconds", "pss_kib", "settle_tree", "tree"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:  # the process is gone
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by ``root``'s tree (threads and reaped children
    included)."""
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is not None:  # fields[11:15]: utime stime cutime cstime
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS


def _rollup(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    values[name] = int(rest.split()[0])
    except OSError:  # the process is gone
        pass
    return values


def pss_kib(root: int) -> tuple[int, int]:
    """Proportional set size of ``root``'s tree in KiB: ``(all of it, its anonymous and
    shmem part)``. PSS charges a shared page once in total, so a forking server is not
    charged its libraries once per process. The second figure leaves out file-backed pages
    (interpreter, libraries): their share moves whenever any process on the machine maps or
    unmaps the same files, which is noise to a per-connection delta."""
    total = private = 0
    for pid in tree(root):
        values = _rollup(pid)
        total += values.get("Pss", 0)
        private += values.get("Pss_Anon", 0) + values.get("Pss_Shmem", 0)
    return total, private


def settle_tree(root: int, processes: int, timeout: float = 2.0) -> None:
    """Wait until ``root``'s tree is back to ``processes`` processes, so that per-session
    processes have exited and been reaped (their CPU is then in the parent's ``cutime``)."""
    deadline = time.monotonic() + timeout
    while len(tree(root)) > processes and time.monotonic() < deadline:
        time.sleep(0.02)


def samples(root: int, interval: float) -> Iterator[tuple[int, int]]:
    """:func:`pss_kib` of ``root``'s tree every ``interval`` seconds, forever."""
    while True:
        yield pss_kib(root)
        time.sleep(interval)
