"""What the helpers that run a real server program for tests share (redis_server.py,
moto_server.py, haproxy_server.py, the worker tests): free loopback ports, and stopping the
process by its PID."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Sequence

import pytest

#: Seconds a stopped program has to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: Where :func:`free_port_range` looks: below Linux's ephemeral range (32768-60999), so the
#: kernel does not hand the ports to bind(0) or to clients' outgoing connections meanwhile.
RANGE_PORTS = (20000, 32000)
#: Attempts :func:`free_port_range` makes before it fails the test.
RANGE_ATTEMPTS = 50


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_range(count: int, hosts: Sequence[str] = ("127.0.0.1",)) -> range:
    """``count`` contiguous ports, each bindable on every one of ``hosts`` (a passive slice,
    or the PORT, PORT+1, ... a program derives from one port). Starts are random, so
    parallel tests rarely try the same ports; every port is checked."""
    choose = random.Random(os.urandom(8))
    low, high = RANGE_PORTS
    for _ in range(RANGE_ATTEMPTS):
        first = choose.randrange(low, high - count)
        ports = range(first, first + count)
        if all(_bindable(host, port) for port in ports for host in hosts):
            return ports
    pytest.fail(f"no {count} contiguous free ports in {low}-{high} after {RANGE_ATTEMPTS} tries")


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
