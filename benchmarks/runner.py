"""Run every row against every server, interleaved (A B C, then B C A, ...) so that a slow
patch of the machine, or what the previous measurement left behind, hurts every server
alike, and collect the samples."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.children import Children
from benchmarks.measure import MeasurementError, Probe, Sample
from benchmarks.report import Results
from benchmarks.servers import (
    FLOOR,
    FLOOR_TASKS,
    LIMIT,
    REFERENCES,
    RunningServer,
    ServerKind,
    log_tail,
    start_server,
)
from benchmarks.settings import Mode

__all__ = ["Row", "Runner", "rows_for"]


@dataclass(frozen=True)
class Row:
    """One measurement done on every server in turn."""

    name: str
    keys: tuple[str, ...]  # the metric keys it fills
    run: Callable[[RunningServer], Sample]
    tls: bool = False
    applies: Callable[[ServerKind], bool] = lambda kind: (
        kind not in REFERENCES and not kind.sessions_only
    )


def rows_for(mode: Mode, probe: Probe) -> list[Row]:
    """The rows of one round, in the order they run."""
    rows = [
        Row(
            "RETR",
            ("retr_mbps", "retr_cpu", "retr_client_cpu"),
            lambda s: probe.limit(s) if s.kind is LIMIT else probe.retr(s),
            applies=lambda kind: kind is not FLOOR and not kind.sessions_only,
        ),
        Row("STOR", ("stor_mbps", "stor_cpu", "stor_client_cpu"), probe.stor),
        Row("LIST", ("list_ms",), lambda s: probe.listing(s, "LIST")),
        Row(
            "MLSD",
            ("mlsd_ms",),
            lambda s: probe.listing(s, "MLSD"),
            applies=lambda kind: kind not in REFERENCES and kind.mlsd and not kind.sessions_only,
        ),
        Row(
            "FTPS RETR",
            ("ftps_mbps", "ftps_cpu", "ftps_client_cpu"),
            lambda s: probe.retr(s, prefix="ftps"),
            tls=True,
        ),
        Row(
            "FTPS STOR",
            ("ftps_stor_mbps", "ftps_stor_cpu", "ftps_stor_client_cpu"),
            lambda s: probe.stor(s, prefix="ftps_stor"),
            tls=True,
            # the floor too: what trio.SSLStream's receive path carries here
            applies=lambda kind: kind is not LIMIT and not kind.sessions_only,
        ),
        *_mirror_rows(probe),
        Row(
            "FTPS sessions",
            ("ftps_session_cpu_ms",),
            lambda s: probe.ftps_sessions(s, mode.tls_sessions),
            tls=True,
            # both floors too
            applies=lambda kind: (
                kind is not LIMIT and (not kind.sessions_only or kind is FLOOR_TASKS)
            ),
        ),
    ]
    for level in mode.session_levels:
        rows.append(
            Row(
                f"sessions x{level}",
                (f"sessions_{level}", f"p50_{level}", f"p99_{level}"),
                functools.partial(
                    _sessions, probe, level, mode.session_warmup, mode.session_seconds
                ),
                applies=lambda kind: kind is not LIMIT,  # the trio floor too
            )
        )
    rows.append(
        Row("idle memory", ("idle_kib",), lambda s: probe.idle_memory(s, mode.idle_connections))
    )
    return rows


def _mirror_rows(probe: Probe) -> list[Row]:
    """lftp's mirror of many small files (download, upload; 1 and 4 sessions), and the
    upload over FTPS. Both trio floors do them too: PASV, RETR and STOR are in their
    dialogue."""

    def with_floor(kind: ServerKind) -> bool:
        return kind is not LIMIT and (not kind.sessions_only or kind is FLOOR_TASKS)

    rows = [
        Row(
            f"mirror {direction[:2]} x{connections}",
            (f"small_{direction}_{connections}", f"small_{direction}_{connections}_cpu_ms"),
            functools.partial(_mirror, probe, direction, connections, "small"),
            applies=with_floor,
        )
        for direction in ("download", "upload")
        for connections in (1, 4)
    ]
    rows.append(
        Row(
            "FTPS mirror up",
            ("ftps_small_upload_1", "ftps_small_upload_1_cpu_ms"),
            functools.partial(_mirror, probe, "upload", 1, "ftps_small"),
            tls=True,
            applies=with_floor,
        )
    )
    return rows


def _mirror(
    probe: Probe, direction: str, connections: int, prefix: str, server: RunningServer
) -> Sample:
    return probe.small_files(server, direction, connections, prefix)


def _sessions(
    probe: Probe, level: int, warmup: float, seconds: float, server: RunningServer
) -> Sample:
    return probe.sessions(server, level, warmup, seconds)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(sample: Sample) -> str:
    return "  ".join(
        f"{key}={value:,.1f}" if value >= 10 else f"{key}={value:.3g}"
        for key, value in sample.items()
        if not any(word in key for word in ("client", "errors", "unfinished"))
    )


class Runner:
    """Keeps one plain and one FTPS instance of every server running, restarts any that
    dies, and runs the rounds."""

    def __init__(
        self,
        children: Children,
        kinds: list[ServerKind],
        probe: Probe,
        workdir: Path,
        results: Results,
    ) -> None:
        self.children = children
        self.kinds = kinds
        self.probe = probe
        self.workdir = workdir
        self.results = results
        self.servers: dict[tuple[str, bool], RunningServer] = {}

    def server(self, kind: ServerKind, tls: bool) -> RunningServer:
        """The running instance of ``kind`` (restarted if it died)."""
        key = (kind.name, tls)
        running = self.servers.get(key)
        if running is not None and running.process.poll() is not None:
            name = f"{kind.name}{' (TLS)' if tls else ''}"
            _log(f"  {name} died (exit {running.process.returncode}); restarting it. Its log:")
            _log(log_tail(self.workdir, kind, tls))
            running = None
        if running is None:
            files = self.probe.tls if tls else None
            running = start_server(self.children, kind, self.probe.data, self.workdir, files)
            self.servers[key] = running
            if kind is not LIMIT:  # the floor answers the warm-up's sessions too
                self.probe.warm_up(running)
        return running

    def start_all(self) -> None:
        """Start and warm up every instance before the first measurement. One that fails
        is tried again by each of its measurements, which then record the failure."""
        for kind in self.kinds:
            for tls in (False,) if kind is LIMIT or kind.sessions_only else (False, True):
                try:
                    self.server(kind, tls)
                except (MeasurementError, TimeoutError, OSError, RuntimeError) as exc:
                    _log(f"  {kind.name}{' (TLS)' if tls else ''} did not start: {exc}")

    def run(self, rows: list[Row], rounds: int) -> None:
        """``rounds`` times: every row, every server in turn."""
        for index in range(1, rounds + 1):
            started = time.monotonic()
            # Each round starts the order one server later (A B C, B C A, C A B ...): what
            # the previous row left behind (dirty pages, a busy cache) must not always
            # fall on the same server.
            shift = (index - 1) % len(self.kinds)
            order = self.kinds[shift:] + self.kinds[:shift]
            for row in rows:
                for kind in order:
                    if not row.applies(kind):
                        if kind not in REFERENCES:  # their "—" needs no "n/a"
                            self.results.not_applicable(kind.name, row.keys)
                        continue
                    self.measure(row, kind, f"[{index}/{rounds}] {row.name:<13} {kind.name:<10}")
            _log(f"round {index}/{rounds} took {time.monotonic() - started:.1f} s")

    def measure(self, row: Row, kind: ServerKind, label: str) -> None:
        """One measurement; a failure is recorded and the run goes on."""
        try:
            sample = row.run(self.server(kind, row.tls))
        except (MeasurementError, TimeoutError, OSError, RuntimeError) as exc:
            self.results.fail(kind.name, row.keys, f"{type(exc).__name__}: {exc}")
            _log(f"{label} FAILED: {type(exc).__name__}: {exc}")
        else:
            self.results.add(kind.name, sample)
            _log(f"{label} {_summary(sample)}")
