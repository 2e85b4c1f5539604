"""The fast client's measurements: one blocking connection at a time, as little Python per
byte as possible (``recv_into`` a preallocated buffer, ``sendfile`` for uploads).

Each function returns a JSON-ready dict; the worker adds the client's CPU time.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

from benchmarks.ftpwire import Control, abortive_close, client_context

__all__ = [
    "IdleConnections",
    "listing",
    "raw_retr",
    "retr",
    "sequential_sessions",
    "small_files",
    "stor",
]

_BUFFER = memoryview(bytearray(8 << 20))


def _drain(sock: socket.socket) -> int:
    """Receive until the peer closes; return the byte count."""
    total = 0
    receive = sock.recv_into
    while n := receive(_BUFFER):
        total += n
    return total


def _control(spec: dict[str, Any]) -> Control:
    """Connect and log in as ``spec`` says (plain, explicit or implicit TLS)."""
    tls = spec.get("tls")
    context = client_context(spec["ca"]) if tls else None
    control = Control(spec["host"], spec["port"], context=context, implicit=tls == "implicit")
    control.greet_and_login(spec["user"], spec["password"])
    return control


def retr(spec: dict[str, Any]) -> dict[str, Any]:
    """Download ``spec["path"]`` in binary mode; time from ``RETR`` to the ``226``."""
    control = _control(spec)
    try:
        control.command("TYPE I", 200)
        data = control.open_data()
        started = time.perf_counter()
        data = control.transfer(f"RETR {spec['path']}", data)
        size = _drain(data)
        data_end = time.perf_counter()
        cipher = data.cipher() if isinstance(data, ssl.SSLSocket) else None
        abortive_close(data)
        control.expect(2)
        ended = time.perf_counter()
    finally:
        control.quit()
    return {
        "bytes": size,
        "seconds": ended - started,
        "data_seconds": data_end - started,
        "cipher": cipher,
    }


def raw_retr(spec: dict[str, Any]) -> dict[str, Any]:
    """Read everything the bare sendfile sender sends: the loopback limit."""
    sock = socket.create_connection((spec["host"], spec["port"]), timeout=60)
    started = time.perf_counter()
    size = _drain(sock)
    ended = time.perf_counter()
    abortive_close(sock)
    return {"bytes": size, "seconds": ended - started}


def stor(spec: dict[str, Any]) -> dict[str, Any]:
    """Upload the local file ``spec["source"]`` with ``sendfile``; time from ``STOR`` to the
    ``226`` (the server has the last byte)."""
    control = _control(spec)
    try:
        control.command("TYPE I", 200)
        data = control.open_data()
        with open(spec["source"], "rb") as source:
            started = time.perf_counter()
            data = control.transfer(f"STOR {spec['path']}", data)
            size = _send_file(data, source)
        _close_data(data)
        control.expect(2)
        ended = time.perf_counter()
    finally:
        control.quit()
    return {"bytes": size, "seconds": ended - started}


def listing(spec: dict[str, Any]) -> dict[str, Any]:
    """``LIST`` or ``MLSD`` of a directory; time from the command to the end of the data."""
    control = _control(spec)
    try:
        data = control.open_data()
        started = time.perf_counter()
        data = control.transfer(f"{spec['verb']} {spec['path']}", data)
        size = lines = 0
        while n := data.recv_into(_BUFFER):
            size += n
            lines += _BUFFER[:n].tobytes().count(b"\n")
        ended = time.perf_counter()
        abortive_close(data)
        control.expect(2)
    finally:
        control.quit()
    return {"bytes": size, "lines": lines, "seconds": ended - started}


def sequential_sessions(spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` whole sessions one after another: connect, (TLS,) login, (PBSZ/PROT P,)
    TYPE I, PASV, RETR the small file, QUIT."""
    started = time.perf_counter()
    cipher = None
    for _ in range(spec["count"]):
        control = _control(spec)
        try:
            control.command("TYPE I", 200)
            data = control.open_data()
            data = control.transfer(f"RETR {spec['path']}", data)
            _drain(data)
            cipher = data.cipher() if isinstance(data, ssl.SSLSocket) else None
            abortive_close(data)
            control.expect(2)
        finally:
            control.quit()
    return {"sessions": spec["count"], "seconds": time.perf_counter() - started, "cipher": cipher}


def _send_file(data: socket.socket, source: Any) -> int:
    """Send the whole file: ``sendfile`` on a plain socket; on TLS (where ``sendfile``
    falls back to 8 KiB sends) 1 MiB blocks, as lftp and curl write."""
    if not isinstance(data, ssl.SSLSocket):
        return data.sendfile(source)
    block = memoryview(bytearray(1 << 20))
    total = 0
    while n := source.readinto(block):
        data.sendall(block[:n])
        total += n
    return total


def _close_data(data: socket.socket) -> None:
    """End an upload's data connection as lftp and curl do: TLS ``close_notify`` when the
    connection is TLS, then a normal close (the FIN is the end of the file)."""
    if isinstance(data, ssl.SSLSocket):
        data = data.unwrap()
    data.close()


def _mirror_share(spec: dict[str, Any], names: list[str], failures: list[str]) -> None:
    """One control connection moving ``names`` one after another: PASV, RETR or STOR, 226."""
    payload = bytes(spec["size"]) if spec["direction"] == "upload" else b""
    try:
        control = _control(spec)
        try:
            control.command("TYPE I", 200)
            for name in names:
                data = control.open_data()
                path = f"{spec['directory']}/{name}"
                if spec["direction"] == "download":
                    data = control.transfer(f"RETR {path}", data)
                    size = _drain(data)
                    data.close()
                    if size != spec["size"]:
                        raise RuntimeError(f"RETR {path}: {size} bytes")
                else:
                    data = control.transfer(f"STOR {path}", data)
                    data.sendall(payload)
                    _close_data(data)
                control.expect(2)
        finally:
            control.quit()
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")


def small_files(spec: dict[str, Any]) -> dict[str, Any]:
    """Move ``names`` (each ``size`` bytes) in ``connections`` parallel sessions, as lftp's
    ``mirror --parallel=N`` does: each session takes every N-th file and, per file, opens a
    passive data connection, sends RETR or STOR and waits for the 226. The time runs from
    the first login to the last 226."""
    names: list[str] = spec["names"]
    connections = spec["connections"]
    failures: list[str] = []
    threads = [
        threading.Thread(target=_mirror_share, args=(spec, names[i::connections], failures))
        for i in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return {"files": len(names), "seconds": seconds}


class IdleConnections:
    """Logged-in control connections held open (and silent) until :meth:`close`."""

    def __init__(self) -> None:
        self._controls: list[Control] = []

    def open(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Open ``count`` more logged-in connections."""
        for _ in range(spec["count"]):
            self._controls.append(_control(spec))
        return {"open": len(self._controls)}

    def close(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Close them all (with ``QUIT``)."""
        closed = len(self._controls)
        for control in self._controls:
            control.quit()
        self._controls.clear()
        return {"closed": closed}
