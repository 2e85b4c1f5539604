"""``--workers`` and ``serve_workers`` with real processes: a supervisor and its workers,
started in tmp_path, reached with ftplib, stopped by PID.

Which worker served a session shows in its PASV reply: each worker's passive ports are its
own slice of ``--data-ports``.
"""

from __future__ import annotations

import ftplib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import free_port_range

pytestmark = pytest.mark.slow

PYTHON = [sys.executable, "-m", "trio_ftp"]
PORTS_PER_TEST = 10


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours would still answer: look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Supervised:
    """A running supervisor: its process, port and log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        found = re.search(r"workers serving \(pids ([\d, ]+)\)", self.text())
        assert found, self.text()
        return [int(pid) for pid in found.group(1).split(", ")]

    def restarted_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"restarted \(pid (\d+)\)", self.text())]


def start_supervisor(argv: list[str], log: Path, timeout: float = 30.0) -> Supervised:
    """Start ``argv``; its first stdout line names the address (``...://127.0.0.1:PORT/``)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sink)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().decode() if ready else ""
    found = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not found:
        stop(process, timeout=5)
        raise AssertionError(f"no address printed: {line!r}; log:\n{log.read_text()}")
    return Supervised(process, int(found.group(1)), log)


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM (unless it has ended), wait; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def supervising(
    tmp_path: Path, *extra: str, workers: int = 2, name: str = "cli"
) -> Iterator[Supervised]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    argv = [*PYTHON, str(root), "--port", "0", "--workers", str(workers), *extra]
    supervised = start_supervisor(argv, tmp_path / f"{name}.log")
    pids: list[int] = []
    try:
        pids = supervised.worker_pids()
        yield supervised
    finally:
        stop(supervised.process)
        for pid in pids + supervised.restarted_pids():  # none should be left; never leak one
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def passive_port(port: int) -> int:
    """Log in anonymously, ask PASV, leave: the passive port the serving worker offered."""
    with ftplib.FTP(timeout=10) as client:
        client.connect("127.0.0.1", port)
        client.login()
        reply = client.sendcmd("PASV")
        high, low = re.findall(r"\d+", reply.split("(", 1)[1])[4:6]
        return int(high) * 256 + int(low)


def slices_seen(port: int, data_ports: range, sessions: int = 40) -> set[int]:
    """Which half of ``data_ports`` (0 or 1) the PASV replies of ``sessions`` sessions fell in."""
    half = len(data_ports) // 2
    seen: set[int] = set()
    for _ in range(sessions):
        offered = passive_port(port)
        assert offered in data_ports
        seen.add(0 if offered < data_ports[0] + half else 1)
    return seen


def test_two_workers_serve_from_disjoint_port_slices(tmp_path):
    ports = free_port_range(PORTS_PER_TEST)
    with supervising(tmp_path, "--data-ports", f"{ports[0]}-{ports[-1]}") as supervised:
        assert len(set(supervised.worker_pids())) == 2
        # The kernel spreads connections by a hash of their addresses: 40 sessions all on
        # one worker would take odds of 2**-39.
        assert slices_seen(supervised.port, ports) == {0, 1}
        log = supervised.text()
        assert "worker 0 trio_ftp.session" in log
        assert "worker 1 trio_ftp.session" in log


def test_a_killed_worker_is_restarted_and_serves_again(tmp_path):
    ports = free_port_range(PORTS_PER_TEST)
    with supervising(tmp_path, "--data-ports", f"{ports[0]}-{ports[-1]}") as supervised:
        victim = supervised.worker_pids()[1]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "serving again" in supervised.text(), "the restarted worker")
        log = supervised.text()
        assert f"worker 1 (pid {victim}) was killed by SIGKILL" in log
        (replacement,) = supervised.restarted_pids()
        assert replacement != victim
        assert alive(replacement)
        assert slices_seen(supervised.port, ports) == {0, 1}


def test_sigterm_lets_a_download_finish_then_every_process_exits(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    payload = os.urandom(1_500_000)
    (root / "big.bin").write_bytes(payload)
    with supervising(tmp_path, "--max-download-rate", "1000000", "--grace", "20") as supervised:
        pids = supervised.worker_pids()
        received = bytearray()
        started = threading.Event()

        replies: list[str] = []

        def download() -> None:
            client = ftplib.FTP(timeout=30)
            try:
                client.connect("127.0.0.1", supervised.port)
                client.login()

                def keep(block: bytes) -> None:
                    received.extend(block)
                    started.set()

                replies.append(client.retrbinary("RETR big.bin", keep))
            finally:
                client.close()  # no QUIT: the server closes every session (421) after it

        thread = threading.Thread(target=download)
        thread.start()
        assert started.wait(15), "the download did not begin"
        began = time.monotonic()
        supervised.process.send_signal(signal.SIGTERM)
        assert supervised.process.wait(30) == 0
        thread.join(30)
        assert bytes(received) == payload
        assert len(replies) == 1
        assert replies[0].startswith("226"), replies
        assert time.monotonic() - began < 20
        wait_for(lambda: not any(alive(pid) for pid in pids), "every worker to exit", 5)


def test_a_port_taken_by_another_program_is_a_clear_failure(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        argv = [*PYTHON, str(root), "--port", str(port), "--workers", "2"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


LIBRARY_SCRIPT = """
import sys
import trio_ftp


def make_server(context):
    if context.index == FAILING:
        raise RuntimeError("no server for this one")
    return trio_ftp.Server(
        data_ports=context.data_ports,
        welcome_message=f"worker {context.index} of {context.count}",
    )


def announce(address):
    print(f"ready at ftp://{address[0]}:{address[1]}/", flush=True)


if __name__ == "__main__":
    sys.exit(
        trio_ftp.serve_workers(
            make_server, "127.0.0.1", 0, workers=2, grace=1, on_ready=announce, start_timeout=30
        )
    )
"""


def library_script(tmp_path: Path, failing: int | None) -> list[str]:
    script = tmp_path / "serve_workers_app.py"
    script.write_text(textwrap.dedent(LIBRARY_SCRIPT).replace("FAILING", repr(failing)))
    return [sys.executable, str(script)]


def test_the_library_entry_point_runs_a_module_level_factory_in_each_worker(tmp_path):
    supervised = start_supervisor(library_script(tmp_path, None), tmp_path / "library.log")
    try:
        greetings = set()
        for _ in range(40):
            with ftplib.FTP(timeout=10) as client:
                greetings.add(client.connect("127.0.0.1", supervised.port))
        assert greetings == {"220 worker 0 of 2", "220 worker 1 of 2"}
    finally:
        assert stop(supervised.process) == 0


def test_a_worker_that_cannot_start_stops_the_others_and_fails(tmp_path):
    result = subprocess.run(
        library_script(tmp_path, 1), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "workers could not start: worker 1: the server factory raised" in result.stderr
    assert "no server for this one" in result.stderr
    assert "ready at" not in result.stdout


def greeting_from(port: int, source: str) -> tuple[socket.socket, str]:
    """Connect from ``source`` and read the greeting line; the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    line = sock.makefile("rb").readline().decode()
    return sock, line


def test_the_per_ip_limit_counts_the_sessions_of_every_worker(tmp_path):
    """Two workers, at most two sessions per address: with per-process counts the workers
    would take four between them (two each); the machine's store makes it two in all."""
    with supervising(tmp_path, "--max-connections-per-ip", "2") as supervised:
        held = []
        try:
            for _ in range(2):
                sock, line = greeting_from(supervised.port, "127.0.0.2")
                held.append(sock)
                assert line.startswith("220"), line
            # Connections from other source ports hash onto both workers: every one refused.
            refused = []
            for _ in range(8):
                sock, line = greeting_from(supervised.port, "127.0.0.2")
                sock.close()
                refused.append(line[:3])
            assert refused == ["421"] * 8
            # Another address has its own count.
            other, line = greeting_from(supervised.port, "127.0.0.3")
            other.close()
            assert line.startswith("220"), line
        finally:
            for sock in held:
                sock.close()

        # Once the sessions end, the address is welcome again (on whichever worker).
        def welcome() -> bool:
            sock, line = greeting_from(supervised.port, "127.0.0.2")
            sock.close()
            return line.startswith("220")

        wait_for(welcome, "the freed slots")


def test_a_killed_workers_slots_are_freed_for_the_others(tmp_path):
    """kill -9 leaves no goodbye: the supervisor frees the dead worker's slots in the store."""
    with supervising(tmp_path, "--max-connections", "2") as supervised:
        sessions = []
        try:
            for _ in range(2):
                sock, line = greeting_from(supervised.port, "127.0.0.2")
                sessions.append(sock)
                assert line.startswith("220"), line
            sock, line = greeting_from(supervised.port, "127.0.0.3")
            sock.close()
            assert line.startswith("421"), line
            for pid in supervised.worker_pids():
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: len(supervised.restarted_pids()) == 2, "both workers restarted")

            def welcome() -> bool:
                try:
                    sock, line = greeting_from(supervised.port, "127.0.0.3")
                except OSError:
                    return False
                sock.close()
                return line.startswith("220")

            wait_for(welcome, "the dead workers' slots freed")
        finally:
            for sock in sessions:
                sock.close()
