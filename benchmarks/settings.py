"""The sizes, repetitions and durations of quick and full mode, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "MODES", "QUICK", "Mode"]

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Mode:
    """How big and how long each measurement is; every row is repeated ``rounds`` times."""

    name: str
    rounds: int
    transfer_size: int  # the RETR / STOR / FTPS RETR file
    session_levels: tuple[int, ...]  # concurrent clients for the sessions/s rows
    session_seconds: float  # measured window of each sessions/s run
    session_warmup: float  # sessions started before the window opens are not counted
    session_clients: int  # client processes sharing the concurrent sessions
    idle_connections: int
    listing_files: int
    tls_sessions: int  # sequential FTPS sessions per CPU measurement
    small_files: int  # files of 4 KiB in the mirror rows (download, upload, FTPS upload)
    object_store_size: int  # the object-store row's file (moto S3)
    object_store_big: int  # one more upload, for the server's memory alone (0: none)


QUICK = Mode(
    name="quick",
    rounds=3,
    transfer_size=256 * MiB,
    session_levels=(50, 200),
    session_seconds=1.5,
    session_warmup=0.5,
    session_clients=1,
    idle_connections=200,
    listing_files=10_000,
    tls_sessions=100,
    small_files=500,
    object_store_size=256 * MiB,
    object_store_big=0,
)

FULL = Mode(
    name="full",
    rounds=5,
    transfer_size=GiB,
    session_levels=(50, 200),
    session_seconds=5.0,
    session_warmup=1.0,
    session_clients=1,
    idle_connections=1000,
    listing_files=10_000,
    tls_sessions=500,
    small_files=2000,
    object_store_size=256 * MiB,
    object_store_big=GiB,
)

MODES = {mode.name: mode for mode in (QUICK, FULL)}
