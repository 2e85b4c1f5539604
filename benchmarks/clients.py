"""The harness's handle on a client process (:mod:`benchmarks.client_worker`): send a
request, wait a bounded time for the answer, replace the process if it hangs."""

from __future__ import annotations

import json
import select
import subprocess
from typing import Any

from benchmarks.children import Children, python_module

__all__ = ["ClientWorker"]


class ClientWorker:
    """One client process, reused for many requests (no start-up cost per measurement)."""

    def __init__(self, children: Children) -> None:
        self._children = children
        self._process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return self._children.start(python_module("benchmarks.client_worker"), stdin=True)

    @property
    def pid(self) -> int:
        """The client process's id."""
        return self._process.pid

    def send(self, request: dict[str, Any]) -> None:
        """Send a request without waiting for its answer (see :meth:`receive`)."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        """The answer to the last request; a hung client is replaced and TimeoutError
        raised."""
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            self._children.stop(self._process)
            self._process = self._start()
            raise TimeoutError("the client process did not answer in time")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and return its answer."""
        self.send(request)
        return self.receive(timeout)
