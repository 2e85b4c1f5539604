"""What the helpers that run a real server program for tests share (redis_server.py,
moto_server.py): a free loopback port, and stopping the process by its PID."""

from __future__ import annotations

import socket
import subprocess

#: Seconds a stopped program has to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Stop ``process`` (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`) and reap it."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
