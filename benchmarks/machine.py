"""What the table needs around it: the machine and versions it ran on, the column titles,
and the footnotes that say where servers were measured differently."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import ssl
import subprocess
from typing import Any

from benchmarks.servers import (
    FLOOR,
    FLOOR_TASKS,
    FLOOR_TASKS_2P,
    LIMIT,
    WORKERS_PYFTPDLIB,
    WORKERS_TRIO,
    ServerKind,
)
from benchmarks.settings import Mode

__all__ = ["caption", "describe", "footnotes", "headers"]

_MARKS = {
    "aioftp": "¹",
    "vsftpd": "²",
    LIMIT.name: "³",
    FLOOR.name: "⁴",
    WORKERS_TRIO: "⁵",
    WORKERS_PYFTPDLIB: "⁵",
    FLOOR_TASKS.name: "⁶",
    FLOOR_TASKS_2P.name: "⁶",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _vsftpd_version() -> str | None:
    try:
        answer = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "vsftpd"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return answer.stdout.strip() or None


def describe(mode: Mode, elapsed: float) -> dict[str, Any]:
    """The machine, the software versions and the run's settings, for the JSON file."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "versions": {
            name: _version(name)
            for name in ("trio_ftp", "trio", "pyftpdlib", "aioftp", "pyOpenSSL")
        }
        | {"vsftpd": _vsftpd_version()},
        "mode": mode.name,
        "rounds": mode.rounds,
        "elapsed_seconds": round(elapsed, 1),
    }


def caption(meta: dict[str, Any]) -> str:
    """One line above the table: mode, machine, versions."""
    versions = ", ".join(
        f"{name} {version}" for name, version in meta["versions"].items() if version
    )
    return (
        f"*{meta['mode'].capitalize()} mode, median of {meta['rounds']} rounds; "
        f"{meta['cpu']}, {meta['cores']} cores, Linux {meta['kernel']}, "
        f"Python {meta['python']}, {meta['openssl']}; {versions}.*"
    )


def headers(kinds: list[ServerKind]) -> dict[str, str]:
    """Column titles, with the footnote marks."""
    titles = {kind.name: kind.name + _MARKS.get(kind.name, "") for kind in kinds}
    if LIMIT in kinds:
        titles[LIMIT.name] = "loopback limit" + _MARKS[LIMIT.name]
    if FLOOR in kinds:
        titles[FLOOR.name] = "trio floor" + _MARKS[FLOOR.name]
    if FLOOR_TASKS in kinds:
        titles[FLOOR_TASKS.name] = "floor, tasks" + _MARKS[FLOOR_TASKS.name]
    if FLOOR_TASKS_2P in kinds:
        titles[FLOOR_TASKS_2P.name] = "floor, tasks, 2p" + _MARKS[FLOOR_TASKS_2P.name]
    return titles


def footnotes(kinds: list[ServerKind], mode: Mode) -> list[str]:
    """The notes under the table, for the servers that ran."""
    names = {kind.name for kind in kinds}
    notes = [
        "Medians; in parentheses the ratio to pyftpdlib. ↑ higher is better, ↓ lower. "
        "MB = 10⁶ bytes. The client rows are the benchmark client's own CPU (it runs in its "
        "own process), shown to prove it is not the bottleneck.",
    ]
    if "aioftp" in names:
        notes.append(
            "¹ aioftp cannot do explicit FTPS (`AUTH TLS`): its FTPS rows use implicit TLS "
            "(TLS from the first byte on control and data connections)."
        )
    if "vsftpd" in names:
        notes.append(
            "² vsftpd logs in anonymously (chrooted into the same root, uploads allowed): "
            "local accounts would need PAM and a system user. It forks a process or two per "
            "session; its CPU and memory are summed over its process tree (reaped sessions "
            "included). It has no MLSD."
        )
    if LIMIT.name in names:
        notes.append(
            "³ Not an FTP server: a bare `os.sendfile` sender read by the same client, the "
            "most this machine's loopback carries."
        )
    if FLOOR.name in names:
        notes.append(
            "⁴ Not an FTP server: a bare trio program (`benchmarks/serve.py`) that answers the "
            "same session dialogue (with TLS through `trio.SSLStream` in the FTPS row) with "
            "canned replies and checks nothing: the most sessions per second, and the least "
            "CPU per FTPS session, any trio server can reach on this machine with CPython."
        )
    if names & {WORKERS_TRIO, WORKERS_PYFTPDLIB}:
        notes.append(
            "⁵ Every core: `trio_ftp-2w` is `trio_ftp.serve_workers` with 2 worker processes "
            "sharing the port through `SO_REUSEPORT` (the `trio_ftp` column is one process); "
            "`pyftpdlib-2p` is pyftpdlib's prefork mode, `serve_forever(worker_processes=2)`. "
            "Measured in the concurrent session rows only. The client shares the same cores."
        )
    if names & {FLOOR_TASKS.name, FLOOR_TASKS_2P.name}:
        notes.append(
            "⁶ Not an FTP server: the trio floor built as this project builds a server (one "
            "nursery per session, an idle deadline around each command read, the data "
            "accept and the transfer as child tasks with their own cancel scopes, the "
            "`226` sent by the transfer task), still with canned replies and no checks: "
            "what the structure alone costs. Sessions, FTPS sessions and mirror rows; "
            "`2p`: two such processes accepting from one socket (as pyftpdlib's prefork "
            "mode), in the sessions rows."
        )
    return notes
