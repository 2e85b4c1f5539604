"""A real S3 API for tests: moto's standalone server (``moto_server``, from ``moto[server]``)
on a free loopback port, in a temporary directory, stopped by its PID."""

from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs
from processes import free_port, stop_process

#: Seconds moto_server may take to answer its first request.
START_TIMEOUT = 30.0
REGION = "us-east-1"
KEY = "testing-key"
SECRET = "testing-secret"


class MotoServer:
    """One ``moto_server`` process serving the S3 API on ``endpoint``."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.log_path = directory / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def environment(self) -> dict[str, str]:
        """What s3fs (botocore) reads to reach this server, for a server subprocess."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """The same as keywords of ``FsspecPathIO.for_root``."""
        return {
            "key": KEY,
            "secret": SECRET,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": REGION},
        }

    def start(self) -> None:
        """Start it and wait until it answers HTTP."""
        assert self.process is None, "already running"
        executable = shutil.which("moto_server")
        if executable is None:
            pytest.fail("moto_server is not installed (pip install 'moto[server]')")
        argv = [executable, "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"moto_server on port {self.port} did not start: {self.log()}")
            time.sleep(0.05)  # a poll of a condition, bounded by the deadline

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/moto-api/")
            connection.getresponse().read()
        except OSError:
            return False
        finally:
            connection.close()
        return True

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait for its end."""
        process, self.process = self.process, None
        stop_process(process)

    def log(self) -> str:
        """What the server wrote so far (one line per request)."""
        return self.log_path.read_text(errors="replace")

    def log_end(self) -> int:
        """Where the log ends now: a ``since`` for :meth:`logged` and :meth:`wait_logged`."""
        return self.log_path.stat().st_size

    def logged(self, pattern: str, since: int) -> str | None:
        """The first request line written after ``since`` that ``pattern`` (a regular
        expression) finds, or None. moto logs a request once it has answered it."""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return next((line for line in lines if re.search(pattern, line)), None)

    def wait_logged(self, pattern: str, since: int, timeout: float = 10.0) -> str:
        """:meth:`logged`, waited for (bounded): fails the test when it does not come."""
        deadline = time.monotonic() + timeout
        while (line := self.logged(pattern, since)) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server did not log {pattern!r} within {timeout} s")
            time.sleep(0.02)  # a poll of a condition, bounded by the deadline
        return line

    def file_system(self) -> s3fs.S3FileSystem:
        """A fresh s3fs client of this server, to check objects directly."""
        return s3fs.S3FileSystem(
            skip_instance_cache=True, use_listings_cache=False, **self.storage_options
        )

    def new_bucket(self) -> str:
        """Create a bucket with a fresh name; returns the name."""
        name = f"bucket-{uuid.uuid4().hex[:16]}"
        self.file_system().call_s3("create_bucket", Bucket=name)
        return name


@contextlib.contextmanager
def running_moto(directory: Path) -> Iterator[MotoServer]:
    """A started :class:`MotoServer` in ``directory``, stopped on the way out."""
    server = MotoServer(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server per test process (each test makes its own bucket)."""
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server
