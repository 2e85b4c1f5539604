"""Server CPU per session by how far the session goes, each server measured alone.

``python3 -m benchmarks.stages [--sessions N] [--servers a,b]`` starts each server of
``benchmarks.serve`` in turn on a temporary copy of the benchmark's files, runs ``N``
sessions of each stage from 4 client threads, and prints the server's CPU (user + system,
from ``/proc/<pid>/stat``) per session. Each stage adds commands to the one before:

* ``greet``: connect, greeting, ``QUIT``;
* ``login``: and ``USER``, ``PASS``;
* ``pasv``: and ``TYPE I``, ``PASV``, the data connection, ``NOOP``;
* ``retr``: ``RETR`` of the 4 KiB file of the sessions rows instead of ``NOOP``.

The differences between stages, and between servers in one stage, say where a session's
CPU goes (see docs/performance.md, "What the task structure costs").
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from benchmarks.children import Children
from benchmarks.datafiles import DataSet, make_data_set
from benchmarks.servers import FLOOR, FLOOR_TASKS, KINDS, ServerKind, start_server

STAGES = ("greet", "login", "pasv", "retr")
THREADS = 4
#: Seconds a client waits for any one reply or read.
TIMEOUT = 10.0


def _reply(replies: BinaryIO) -> bytes:
    """The last line of the next reply (multi-line replies end with ``NNN `` )."""
    for _ in range(1000):  # bounded: no reply is that long
        line = replies.readline()
        if not line or line[3:4] == b" ":
            return line
    raise RuntimeError("reply too long")


def _command(control: socket.socket, replies: BinaryIO, line: bytes) -> bytes:
    control.sendall(line + b"\r\n")
    return _reply(replies)


def one_session(port: int, stage: str, path: str) -> None:
    """One session up to ``stage``, then ``QUIT``."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as control:
        replies = control.makefile("rb")
        _reply(replies)
        if stage != "greet":
            _command(control, replies, b"USER bench")
            _command(control, replies, b"PASS pw")
        if stage in ("pasv", "retr"):
            _command(control, replies, b"TYPE I")
            answer = _command(control, replies, b"PASV")
            numbers = answer[answer.index(b"(") + 1 : answer.index(b")")].split(b",")
            address = ("127.0.0.1", int(numbers[4]) * 256 + int(numbers[5]))
            with socket.create_connection(address, timeout=TIMEOUT) as data:
                if stage == "pasv":
                    _command(control, replies, b"NOOP")
                else:
                    _command(control, replies, b"RETR " + path.encode())
                    while data.recv(65536):
                        pass
            if stage == "retr":
                _reply(replies)
        _command(control, replies, b"QUIT")
        replies.close()


def _run(port: int, stage: str, sessions: int, path: str) -> None:
    def share() -> None:
        for _ in range(sessions // THREADS):
            one_session(port, stage, path)

    threads = [threading.Thread(target=share) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: ServerKind, stage: str, sessions: int, workdir: Path, data: DataSet) -> float:
    """Milliseconds of server CPU per session of ``stage``."""
    with Children() as children:
        server = start_server(children, kind, data, workdir)
        try:
            _run(server.port, stage, sessions // 5, data.small_path)  # warm up
            before = _cpu_seconds(server.pid)
            _run(server.port, stage, sessions, data.small_path)
            return (_cpu_seconds(server.pid) - before) * 1000 / sessions
        finally:
            children.stop(server.process)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--servers", default="trio_ftp,trio-floor-tasks,trio-floor,pyftpdlib")
    args = parser.parse_args(argv)
    known = {kind.name: kind for kind in (*KINDS, FLOOR, FLOOR_TASKS)}
    kinds = [known[name] for name in args.servers.split(",")]
    with tempfile.TemporaryDirectory(prefix="trio-ftp-stages-") as directory:
        workdir = Path(directory)
        data = make_data_set(workdir / "root", transfer_size=4096, listing_files=0)
        print("| session | " + " | ".join(kind.name for kind in kinds) + " |")
        print("|---|" + "--:|" * len(kinds))
        for stage in STAGES:
            cells = [f"{measure(kind, stage, args.sessions, workdir, data):.2f}" for kind in kinds]
            print(f"| {stage} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
