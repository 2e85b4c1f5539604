"""Server CPU per session by how far the session goes, each server measured alone.

``python3 -m benchmarks.stages [--sessions N] [--servers a,b]`` starts each server of
``benchmarks.serve`` in turn on a temporary copy of the benchmark's files, runs ``N``
sessions of each stage from 4 client threads, and prints the server's CPU (user + system
of its process tree) per session. Each stage adds commands to the one before:

* ``greet``: connect, greeting, ``QUIT``;
* ``login``: and ``USER``, ``PASS``;
* ``pasv``: and ``TYPE I``, ``PASV``, the data connection, ``NOOP``;
* ``retr``: ``RETR`` of the 4 KiB file of the sessions rows instead of ``NOOP``.

The differences between stages, and between servers in one stage, say where a session's
CPU goes (see docs/performance.md, "What the task structure costs").
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from benchmarks import procstat
from benchmarks.children import Children
from benchmarks.datafiles import DataSet, make_data_set
from benchmarks.ftpwire import Control, abortive_close
from benchmarks.servers import FLOOR, FLOOR_TASKS, HOST, KINDS, ServerKind, start_server
from benchmarks.transfers import _drain

STAGES = ("greet", "login", "pasv", "retr")
THREADS = 4
#: Seconds a client waits for any one reply or read.
TIMEOUT = 10.0


def one_session(port: int, kind: ServerKind, stage: str, path: str) -> None:
    """One session up to ``stage``, then ``QUIT``."""
    control = Control(HOST, port, timeout=TIMEOUT)
    try:
        if stage == "greet":
            control.expect(220)
        else:
            control.greet_and_login(*kind.login)
        if stage in ("pasv", "retr"):
            control.command("TYPE I", 200)
            data = control.open_data()
            try:
                if stage == "pasv":
                    control.command("NOOP", 200)
                else:
                    data = control.transfer(f"RETR {path}", data)
                    _drain(data)
            finally:
                abortive_close(data)
            if stage == "retr":
                control.expect(2)
    finally:
        control.quit()


def _run(port: int, kind: ServerKind, stage: str, sessions: int, path: str) -> None:
    def share() -> None:
        for _ in range(sessions // THREADS):
            one_session(port, kind, stage, path)

    threads = [threading.Thread(target=share) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure(kind: ServerKind, stage: str, sessions: int, workdir: Path, data: DataSet) -> float:
    """Milliseconds of server CPU per session of ``stage``."""
    with Children() as children:
        server = start_server(children, kind, data, workdir)
        try:
            _run(server.port, kind, stage, sessions // 5, data.small_path)  # warm up
            before = procstat.cpu_seconds(server.pid)
            _run(server.port, kind, stage, sessions, data.small_path)
            return (procstat.cpu_seconds(server.pid) - before) * 1000 / sessions
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
