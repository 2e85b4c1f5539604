"""The client process: reads one JSON request per line on stdin, runs it, answers one JSON
line on stdout with the result and the CPU time this process used for it.

It runs apart from the harness so that its CPU can be measured and shown (a benchmark whose
client is the bottleneck measures the client).

    python3 -m benchmarks.client_worker
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks import transfers
from benchmarks.sessions import run_sessions

__all__ = ["main"]


def _operations() -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    idle = transfers.IdleConnections()
    return {
        "retr": transfers.retr,
        "raw_retr": transfers.raw_retr,
        "stor": transfers.stor,
        "listing": transfers.listing,
        "sequential_sessions": transfers.sequential_sessions,
        "small_files": transfers.small_files,
        "idle_open": idle.open,
        "idle_close": idle.close,
        "sessions": run_sessions,
    }


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    """Serve requests until stdin closes."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    operations = _operations()
    for line in sys.stdin:
        request = json.loads(line)
        cpu, wall = _cpu(), time.perf_counter()
        try:
            result = operations[request["op"]](request)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["client_cpu"] = _cpu() - cpu
        result["client_wall"] = time.perf_counter() - wall
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
