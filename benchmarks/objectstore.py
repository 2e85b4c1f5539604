"""The object-store row: STOR and RETR of one file through trio_ftp into an S3 API (moto's
standalone server on loopback), against s3fs writing and reading the same object directly
(the limit), and the server's memory while the upload streams through.

    python3 -m benchmarks --object-store-only --quick

The server is the real command line (``python3 -m trio_ftp --root s3://bench/ftp``, the
endpoint and keys in ``AWS_*`` variables), the FTP client the benchmark's fast client
(``sendfile`` up, ``recv_into`` down); the direct client is s3fs in this process,
``put_file`` and ``get_file`` (its streamed, sequential paths). Memory is the server's
resident set, sampled every 5 ms during each upload, minus its size before the first one
(after a 7-byte warm-up transfer, which loads botocore's service model once).
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.children import Children, python_module
from benchmarks.transfers import retr, stor

__all__ = ["ObjectStoreResult", "render", "run_object_store"]

MiB = 1 << 20
BUCKET = "bench"
PREFIX = "ftp"
LOGIN = ("bench", "pw")
#: The backend's default part size (trio_ftp.pathio._fsspec.DEFAULT_PART_SIZE).
PART_SIZE = 8 * MiB
_KEYS = {
    "AWS_ACCESS_KEY_ID": "bench-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class ObjectStoreResult:
    """Every sample of the row (MB/s), and the server's memory."""

    size: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_increase: int = 0  # bytes over the server's resident set before the uploads
    big_size: int = 0  # the one bigger upload (full mode), 0 if none
    big_peak_rss_increase: int = 0

    def add(self, key: str, seconds: float) -> None:
        self.samples.setdefault(key, []).append(self.size / MiB / seconds)

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(port: int, process: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/moto-api/")
            connection.getresponse().read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)  # a poll of a condition, bounded by the deadline
        finally:
            connection.close()


def _rss(pid: int) -> int:
    """Resident set of ``pid`` in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _PeakSampler:
    """The highest resident set of a process while the ``with`` block runs."""

    def __init__(self, pid: int, every: float = 0.005) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss(self.pid))


def _write_random(path: Path, size: int) -> None:
    """An incompressible file of ``size`` bytes (a whole number of MiB)."""
    with open(path, "wb") as file:
        for _ in range(size // MiB):
            file.write(os.urandom(MiB))


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_object_store(
    children: Children,
    workdir: Path,
    *,
    size: int,
    rounds: int,
    log: Callable[[str], None],
    big_size: int = 0,
) -> ObjectStoreResult:
    """Start moto and trio_ftp, run ``rounds`` of the four measurements, then (when
    ``big_size``) one upload of ``big_size`` bytes for its memory alone; stop both."""
    import s3fs  # the s3 extra: imported only when the row runs

    moto_port = _free_port()
    moto = children.start(
        ["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], log=workdir / "moto.log"
    )
    server = None
    try:
        _wait_http(moto_port, moto)
        environment = {**_KEYS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}"}
        store = s3fs.S3FileSystem(
            key=_KEYS["AWS_ACCESS_KEY_ID"],
            secret=_KEYS["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=environment["AWS_ENDPOINT_URL"],
            client_kwargs={"region_name": _KEYS["AWS_DEFAULT_REGION"]},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        store.call_s3("create_bucket", Bucket=BUCKET)
        source = workdir / "object-store.bin"
        _write_random(source, size)
        argv = python_module("trio_ftp", "--root", f"s3://{BUCKET}/{PREFIX}", "--port", "0")
        argv += ["--user", ":".join(LOGIN), "--no-anonymous", "--log-level", "WARNING"]
        server = children.start(argv, env=environment, log=workdir / "trio_ftp-s3.log")
        assert server.stdout is not None
        banner = server.stdout.readline().decode()
        port = int(banner.split("://127.0.0.1:")[1].split("/")[0])
        spec: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "user": LOGIN[0],
            "password": LOGIN[1],
        }
        result = ObjectStoreResult(size)
        # Warm-up: the first request loads botocore's service model and opens the
        # connection pool (tens of MiB, once per process): not the upload's memory.
        warm = workdir / "warm-up.bin"
        warm.write_bytes(b"warm-up")
        stor({**spec, "path": "warm-up.bin", "source": str(warm)})
        retr({**spec, "path": "warm-up.bin"})
        idle = _rss(server.pid)
        received = workdir / "object-store.out"
        key = f"{BUCKET}/{PREFIX}/direct.bin"
        for round_ in range(rounds):
            result.add("direct STOR", _timed(lambda: store.put_file(str(source), key)))
            with _PeakSampler(server.pid) as sampler:
                up = stor({**spec, "path": "ftp.bin", "source": str(source)})
            if up["bytes"] != size:
                raise RuntimeError(f"STOR moved {up['bytes']} bytes of {size}")
            result.add("trio_ftp STOR", up["seconds"])
            result.peak_rss_increase = max(result.peak_rss_increase, sampler.peak - idle)
            result.add("direct RETR", _timed(lambda: store.get_file(key, str(received))))
            down = retr({**spec, "path": "ftp.bin"})
            if down["bytes"] != size:
                raise RuntimeError(f"RETR moved {down['bytes']} bytes of {size}")
            result.add("trio_ftp RETR", down["seconds"])
            store.rm([key, f"{BUCKET}/{PREFIX}/ftp.bin"])
            received.unlink(missing_ok=True)
            log(
                f"object store round {round_ + 1}/{rounds}: "
                + ", ".join(f"{k} {v[-1]:.0f} MB/s" for k, v in result.samples.items())
                + f", server peak RSS +{result.peak_rss_increase / MiB:.1f} MiB"
            )
        if big_size:
            big = workdir / "object-store-big.bin"
            _write_random(big, big_size)
            with _PeakSampler(server.pid) as sampler:
                up = stor({**spec, "path": "big.bin", "source": str(big)})
            if up["bytes"] != big_size:
                raise RuntimeError(f"STOR moved {up['bytes']} bytes of {big_size}")
            big.unlink()
            store.rm(f"{BUCKET}/{PREFIX}/big.bin")
            result.big_size = big_size
            result.big_peak_rss_increase = sampler.peak - idle
            log(
                f"object store: {big_size // MiB} MiB STOR at {big_size / MiB / up['seconds']:.0f}"
                f" MB/s, server peak RSS +{result.big_peak_rss_increase / MiB:.1f} MiB"
            )
        return result
    finally:
        if server is not None:
            children.stop(server)
        children.stop(moto)


def render(result: ObjectStoreResult, part_size: int = PART_SIZE) -> str:
    """The row as a Markdown table: direct s3fs against trio_ftp, each way, and memory."""
    size = f"{result.size // MiB} MiB"
    lines = [
        f"| object store (moto S3 on loopback, {size}) | s3fs direct | trio_ftp | ratio |",
        "|---|--:|--:|--:|",
    ]
    for verb in ("STOR", "RETR"):
        direct, served = result.median(f"direct {verb}"), result.median(f"trio_ftp {verb}")
        lines.append(f"| {verb} (MB/s) | {direct:.0f} | {served:.0f} | {served / direct:.2f}x |")
    memory = [(size, result.peak_rss_increase)]
    if result.big_size:
        memory.append((f"{result.big_size // MiB} MiB", result.big_peak_rss_increase))
    for label, increase in memory:
        lines.append(
            f"| server memory during a {label} STOR | | +{increase / MiB:.1f} MiB | "
            f"{increase / part_size:.1f} parts of {part_size // MiB} MiB |"
        )
    return "\n".join(lines)
