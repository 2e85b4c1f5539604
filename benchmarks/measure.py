"""One measurement of one server: run a client request, sample the server's CPU or memory
around it, and turn the answer into metric values (one sample per metric key).

The metric keys are those of :data:`benchmarks.report.METRICS`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procstat
from benchmarks.children import Children
from benchmarks.clients import ClientWorker
from benchmarks.datafiles import SMALL_SIZE, DataSet
from benchmarks.servers import HOST, RunningServer, remove_uploads, start_server
from benchmarks.tlscerts import TLSFiles

__all__ = ["MeasurementError", "Probe"]

GiB = 1 << 30
Sample = dict[str, float]


class MeasurementError(Exception):
    """A measurement failed (the client got an error, or the result is incomplete)."""


@dataclass
class Probe:
    """What a measurement needs besides the server: the data, the clients, the TLS files."""

    data: DataSet
    client: ClientWorker
    session_clients: Sequence[ClientWorker]
    children: Children
    workdir: Path
    tls: TLSFiles

    # plumbing ------------------------------------------------------------------------------
    def _spec(self, server: RunningServer, **fields: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "host": HOST,
            "port": server.port,
            "user": server.kind.login[0],
            "password": server.kind.login[1],
        }
        if server.tls:
            spec["tls"] = server.kind.tls_mode
            spec["ca"] = str(self.tls.ca)
        spec.update(fields)
        return spec

    def _transfer_timeout(self) -> float:
        return 60.0 + self.data.transfer_size / 4e6  # even a 4 MB/s server finishes

    @staticmethod
    def _checked(answer: dict[str, Any]) -> dict[str, Any]:
        if "error" in answer:
            raise MeasurementError(answer["error"])
        return answer

    def _run_with_cpu(
        self, server: RunningServer, spec: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], float]:
        """The client's answer and the server's CPU seconds while it ran."""
        idle = server.kind.idle_processes
        procstat.settle_tree(server.pid, idle)  # sessions of earlier rows have ended
        before = procstat.cpu_seconds(server.pid)
        answer = self._checked(self.client.request(spec, timeout))
        procstat.settle_tree(server.pid, idle)  # this one's processes are reaped
        return answer, procstat.cpu_seconds(server.pid) - before

    def _check_size(self, answer: dict[str, Any]) -> None:
        if answer["bytes"] != self.data.transfer_size:
            raise MeasurementError(f"moved {answer['bytes']} of {self.data.transfer_size} bytes")

    # measurements --------------------------------------------------------------------------
    def warm_up(self, server: RunningServer) -> None:
        """A few sessions, so that lazy imports and first-use caches are not measured."""
        spec = self._spec(server, op="sequential_sessions", path=self.data.small_path, count=3)
        self._checked(self.client.request(spec, 60.0))

    def retr(self, server: RunningServer, prefix: str = "retr") -> Sample:
        """Download the transfer file: MB/s, server and client CPU-s per GiB."""
        spec = self._spec(server, op="retr", path=self.data.transfer_path)
        answer, cpu = self._run_with_cpu(server, spec, self._transfer_timeout())
        self._check_size(answer)
        gib = answer["bytes"] / GiB
        return {
            f"{prefix}_mbps": answer["bytes"] / answer["seconds"] / 1e6,
            f"{prefix}_cpu": cpu / gib,
            f"{prefix}_client_cpu": answer["client_cpu"] / gib,
        }

    def limit(self, server: RunningServer) -> Sample:
        """The bare sendfile sender, read by the same client: the loopback limit."""
        spec = {"op": "raw_retr", "host": HOST, "port": server.port}
        answer, cpu = self._run_with_cpu(server, spec, self._transfer_timeout())
        self._check_size(answer)
        gib = answer["bytes"] / GiB
        return {
            "retr_mbps": answer["bytes"] / answer["seconds"] / 1e6,
            "retr_cpu": cpu / gib,
            "retr_client_cpu": answer["client_cpu"] / gib,
        }

    def stor(self, server: RunningServer, prefix: str = "stor") -> Sample:
        """Upload the transfer file (a fresh name every time, deleted right after)."""
        name = f"{self.data.upload_dir}/{server.kind.name}-{time.monotonic_ns()}.bin"
        source = str(self.data.real(self.data.transfer_path))
        spec = self._spec(server, op="stor", path=name, source=source)
        try:
            answer, cpu = self._run_with_cpu(server, spec, self._transfer_timeout())
            self._check_size(answer)
            stored = self.data.real(name).stat().st_size
            if stored != self.data.transfer_size:
                raise MeasurementError(f"stored {stored} of {self.data.transfer_size} bytes")
        finally:
            remove_uploads(self.data)  # before writeback: no disk I/O in later rows
        gib = answer["bytes"] / GiB
        return {
            f"{prefix}_mbps": answer["bytes"] / answer["seconds"] / 1e6,
            f"{prefix}_cpu": cpu / gib,
            f"{prefix}_client_cpu": answer["client_cpu"] / gib,
        }

    def small_files(
        self, server: RunningServer, direction: str, connections: int, prefix: str = "small"
    ) -> Sample:
        """lftp's ``mirror`` (``-R`` to upload) of the small files over ``connections``
        parallel sessions, PASV + RETR/STOR per file: files per second, and the server's
        CPU ms per file."""
        names = self.data.small_names()
        if direction == "download":
            directory = self.data.small_dir
        else:
            directory = self.data.upload_dir
            stamp = time.monotonic_ns()
            names = [f"{server.kind.name}-{stamp}-{name}" for name in names]
        spec = self._spec(
            server,
            op="small_files",
            direction=direction,
            connections=connections,
            names=names,
            directory=directory,
            size=SMALL_SIZE,
        )
        try:
            answer, cpu = self._run_with_cpu(server, spec, 60.0 + len(names) * 0.05)
            if direction == "upload":
                stored = [self.data.real(f"{directory}/{name}") for name in names]
                wrong = [path.name for path in stored if path.stat().st_size != SMALL_SIZE]
                if wrong:
                    raise MeasurementError(f"{len(wrong)} uploads stored wrong, e.g. {wrong[0]}")
        finally:
            if direction == "upload":
                remove_uploads(self.data)
        key = f"{prefix}_{direction}_{connections}"
        return {
            key: answer["files"] / answer["seconds"],
            f"{key}_cpu_ms": cpu * 1000 / answer["files"],
        }

    def listing(self, server: RunningServer, verb: str) -> Sample:
        """``LIST`` or ``MLSD`` of the big directory: ms from the command to the data's end.

        One untimed listing first: the big transfers of the other rows push the directory's
        inodes out of the kernel's caches, and a cold first listing would time the disk
        (and whichever server happens to list first), not the server.
        """
        spec = self._spec(server, op="listing", verb=verb, path=self.data.listing_path)
        self._checked(self.client.request(spec, 120.0))
        answer = self._checked(self.client.request(spec, 120.0))
        if answer["lines"] < self.data.listing_files:
            raise MeasurementError(f"{verb} gave {answer['lines']} lines")
        return {f"{verb.lower()}_ms": answer["seconds"] * 1000}

    def sessions(
        self, server: RunningServer, concurrency: int, warmup: float, seconds: float
    ) -> Sample:
        """``concurrency`` clients (split over the session client processes) looping whole
        sessions: sessions/s, p50 and p99 latency, and the CPU both sides used."""
        workers = self.session_clients
        shares = [
            concurrency // len(workers) + (i < concurrency % len(workers))
            for i in range(len(workers))
        ]
        idle = server.kind.idle_processes
        procstat.settle_tree(server.pid, idle)
        before = procstat.cpu_seconds(server.pid)
        started = time.perf_counter()
        for worker, share in zip(workers, shares, strict=True):
            worker.send(
                self._spec(
                    server,
                    op="sessions",
                    path=self.data.small_path,
                    concurrency=share,
                    warmup=warmup,
                    duration=seconds,
                )
            )
        answers = [self._checked(worker.receive(seconds + warmup + 90.0)) for worker in workers]
        wall = time.perf_counter() - started
        procstat.settle_tree(server.pid, idle)
        server_cpu = procstat.cpu_seconds(server.pid) - before
        latencies = sorted(ms for answer in answers for ms in answer["latencies_ms"])
        errors = sum(answer["errors"] for answer in answers)
        unfinished = sum(answer["unfinished"] for answer in answers)
        if not latencies:
            raise MeasurementError(f"no session completed ({answers[0].get('first_error')})")
        sample = {
            f"sessions_{concurrency}": len(latencies) / seconds,
            f"p50_{concurrency}": _percentile(latencies, 50),
            f"p99_{concurrency}": _percentile(latencies, 99),
            f"session_client_cores_{concurrency}": sum(a["client_cpu"] for a in answers) / wall,
            f"session_server_cores_{concurrency}": server_cpu / wall,
            f"session_errors_{concurrency}": float(errors),
            f"session_unfinished_{concurrency}": float(unfinished),
        }
        return sample

    def ftps_sessions(self, server: RunningServer, count: int) -> Sample:
        """``count`` sequential FTPS sessions: the server's CPU ms per session."""
        spec = self._spec(server, op="sequential_sessions", path=self.data.small_path, count=count)
        answer, cpu = self._run_with_cpu(server, spec, 30.0 + count)
        return {"ftps_session_cpu_ms": cpu * 1000 / answer["sessions"]}

    def idle_memory(self, server: RunningServer, connections: int) -> Sample:
        """Memory growth per idle logged-in connection (PSS, anonymous part; see
        :func:`procstat.pss_kib`), on a fresh server, so that memory freed by earlier rows
        cannot absorb the new connections."""
        fresh = start_server(self.children, server.kind, self.data, self.workdir)
        try:
            self.warm_up(fresh)
            baseline = _settled_pss(fresh.pid, minimum=0.25)
            spec = self._spec(fresh, op="idle_open", count=connections)
            self._checked(self.client.request(spec, 60.0 + connections * 0.1))
            try:
                loaded = _settled_pss(fresh.pid, minimum=0.5, baseline=baseline[1])
            finally:
                self._checked(self.client.request({"op": "idle_close"}, 60.0 + connections * 0.1))
        finally:
            self.children.stop(fresh.process)
        return {
            "idle_kib": (loaded[1] - baseline[1]) / connections,
            "idle_total_pss_kib": (loaded[0] - baseline[0]) / connections,
        }


def _percentile(ordered: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, round(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _settled_pss(
    pid: int, minimum: float, baseline: float | None = None, limit: float = 5.0
) -> tuple[float, float]:
    """:func:`procstat.pss_kib` of ``pid``'s tree once it stops moving: after ``minimum``
    seconds, the median of the last four samples (a quarter second apart) once their anonymous
    parts lie within 1% of the growth since ``baseline`` (8 KiB at least) of each other, or
    whatever they are after ``limit`` seconds."""
    started = time.monotonic()
    recent: list[tuple[int, int]] = []
    for sample in procstat.samples(pid, 0.25):
        recent = [*recent[-3:], sample]
        private = [anon for _, anon in recent]
        tolerance = max(8.0, 0.01 * (sample[1] - baseline)) if baseline is not None else 8.0
        steady = len(recent) == 4 and max(private) - min(private) <= tolerance
        elapsed = time.monotonic() - started
        if elapsed >= minimum and (steady or elapsed >= limit):
            return (
                statistics.median(total for total, _ in recent),
                statistics.median(private),
            )
    raise AssertionError("unreachable")
