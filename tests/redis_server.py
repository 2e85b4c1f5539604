"""A real ``redis-server`` for tests: on a free loopback port, in a temporary directory,
stopped by its PID (and restartable on the same port, for the tests of an outage)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from processes import free_port, stop_process

from trio_ftp.stores import RedisStore, ResilientStore, StateStore

#: Seconds redis-server may take to answer PING after it starts.
START_TIMEOUT = 10.0

#: Seconds a store call may take in tests about counting (not about outages): on a loaded
#: CI machine the server's 0.5 s budget was once exceeded, and the fallback then counted
#: per process, which those tests would take for a counting bug.
PATIENT_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` process; ``start()`` and ``stop()`` as often as a test needs."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        assert self.process is None, "already running"
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed (Debian package redis-server)")
        argv = [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
        ]  # fmt: skip
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        with redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1) as client:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server on port {self.port} did not start")
                time.sleep(0.02)  # a poll of a condition, bounded by the deadline

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait for its end."""
        process, self.process = self.process, None
        stop_process(process)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` in ``directory``, stopped on the way out."""
    server = RedisServer(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def patient(store: StateStore) -> ResilientStore:
    """``store`` as the server would wrap it, with :data:`PATIENT_TIMEOUT` per call."""
    return ResilientStore(store, timeout=PATIENT_TIMEOUT)


def patient_redis(url: str) -> ResilientStore:
    """A :class:`RedisStore` on ``url`` whose calls (and client sockets) wait
    :data:`PATIENT_TIMEOUT`, for tests about shared counting."""
    return patient(RedisStore(url, timeout=PATIENT_TIMEOUT))
