"""Special files in a user's tree (FIFO, UNIX socket, character device) are refused with
``550`` before any ``150``, and never block the event loop, a worker thread, another
session, ABOR or ``close()``.

Before: STOR onto a FIFO held a worker thread in ``open()`` for ever (ABOR unanswered,
``close()`` blocked), and a cached open of a FIFO on the event loop stalled every session.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import trio
from conftest import LOGIN, PASSWORD, in_thread, random_bytes
from test_site_hash import FifoCalledAFile, seeded
from wire import (
    logged_in,
    quit_and_close,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
    transfer,
)

from trio_ftp import PathIO, User
from trio_ftp.errors import PermissionDenied
from trio_ftp.pathio import _onloop

MiB = 1024 * 1024
#: Seconds every refusal must come within (the old code never answered at all).
PROMPT = 3.0


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the socket file stays; connecting to it gives ECONNREFUSED/ENXIO


def make_device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers


def _can_mknod(tmp: Path) -> bool:
    try:
        make_device(tmp / "probe")
    except PermissionError:
        return False
    (tmp / "probe").unlink()
    return True


KINDS = [
    pytest.param(make_fifo, id="fifo"),
    pytest.param(make_socket, id="unix-socket"),
    pytest.param(make_device, id="char-device"),
]


@pytest.fixture
def special(root: Path, request: pytest.FixtureRequest) -> Path:
    maker = request.param
    if maker is make_device and not _can_mknod(root):
        # FIFO and socket cases prove the refusal everywhere; a device needs CAP_MKNOD.
        pytest.skip("creating a character device needs CAP_MKNOD (not root here)")
    path = root / "special"
    maker(path)
    return path


@pytest.mark.parametrize("special", KINDS, indirect=True)
async def test_special_files_are_refused_before_150(start_server, root: Path, special: Path):
    """RETR, STOR, APPE, SIZE and atomic STOR on a special file: 550 at once, no 150;
    meanwhile another session downloads byte-exactly; close() returns promptly."""
    payload = random_bytes(4 * MiB, seed=61)
    (root / "big.bin").write_bytes(payload)
    running = await start_server()
    atomic = await start_server(atomic_uploads=True)
    downloaded: list[bytes] = []

    async def bystander() -> None:
        wire = await logged_in(running.host, running.port, kind="I")
        final, data = await transfer(wire, "RETR big.bin")
        assert final.startswith(b"226")
        downloaded.append(data)
        await quit_and_close(wire)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bystander)
        for server in (running, atomic):
            wire = await logged_in(server.host, server.port, kind="I")
            for line in ("RETR special", "STOR special", "APPE special", "SIZE special"):
                with trio.fail_after(PROMPT):
                    if line.startswith("SIZE"):
                        reply = await wire.command(line)
                    else:
                        reply, _ = await transfer(wire, line, upload=b"x")
                assert reply.startswith(b"550"), (line, reply)
            with trio.fail_after(PROMPT):
                assert (await wire.command("NOOP")).startswith(b"200")  # nothing queued
            await quit_and_close(wire)
    assert downloaded == [payload]
    assert not stat.S_ISREG(os.lstat(special).st_mode)  # never replaced or written
    with trio.fail_after(PROMPT):
        await running.server.close()
        await atomic.server.close()


def unblock_after(fifo: Path, done: threading.Event) -> threading.Thread:
    """A watchdog: unless ``done`` is set within PROMPT seconds, open both ends of ``fifo``
    (a reader, which never waits, lets a blocked writer through; then a writer, a blocked
    reader), so an open that blocks makes the test fail instead of hang."""

    def watch() -> None:
        if done.wait(PROMPT):
            return
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        done.wait(PROMPT)
        os.close(writer)
        os.close(reader)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["rb", "wb", "ab", "r+b"])
async def test_opening_a_fifo_never_stalls_the_loop(root: Path, mode: str):
    """Local backend, confined on a local file system, where a cached open for reading runs
    on the event loop itself: opening a FIFO with no peer is refused at once, and a task
    ticking every 10 ms meanwhile never misses a beat for long. (Before: the open for
    reading waited on the loop for a writer, stalling every session.)"""
    fifo = root / "pipe"
    os.mkfifo(fifo)
    path_io = PathIO()
    real = await path_io.confine(root, PurePosixPath("pipe"))  # type: ignore[arg-type]
    assert _onloop.allowed(path_io.event_loop_calls, str(root)), "the loop path is not tried"
    gaps: list[float] = []
    opened = False
    ticked_after = trio.Event()

    async def ticking() -> None:
        last = time.monotonic()
        while True:
            await trio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            if opened:
                ticked_after.set()

    done = threading.Event()
    watchdog = unblock_after(fifo, done)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticking)
        started = time.monotonic()
        try:
            with pytest.raises(PermissionDenied):
                await path_io.open(real, mode=mode)
        finally:
            done.set()
        elapsed = time.monotonic() - started
        opened = True
        with trio.fail_after(PROMPT):
            await ticked_after.wait()  # the gap around the open is counted too
        nursery.cancel_scope.cancel()
    watchdog.join(PROMPT)
    assert elapsed < PROMPT
    assert max(gaps) < PROMPT / 2, max(gaps)


async def test_unconfined_open_refuses_a_fifo_too(root: Path):
    """The plain-path fallback (no confine, or no openat2) opens with O_NONBLOCK too."""
    os.mkfifo(root / "pipe")
    with trio.fail_after(PROMPT), pytest.raises(PermissionDenied):
        await PathIO().open(root / "pipe", mode="wb")


# A process holding a write lease on a file (as the kernel NFS server's delegations and
# Samba's oplocks do): it gives the lease up when the kernel asks (SIGIO), then says so.
LEASE_HOLDER = r"""
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR)
def give_up(*_):
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    print("released", flush=True)
signal.signal(signal.SIGIO, give_up)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("leased", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def leased(path: Path) -> Iterator[subprocess.Popen[str]]:
    """``path`` under a write lease held by a child process until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "leased\n"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()


@pytest.mark.parametrize("verb", ["RETR", "STOR"])
async def test_a_leased_file_is_waited_for_not_refused(start_server, root: Path, verb: str):
    """O_NONBLOCK makes opening a file under a lease answer EWOULDBLOCK at once (the
    kernel starts breaking the lease): the open waits for the break in a worker thread, as
    a plain open would, and the transfer succeeds (before: 451 after the 150)."""
    payload = random_bytes(2 * MiB, seed=62)
    target = root / "leased.bin"
    target.write_bytes(payload if verb == "RETR" else b"old contents")
    running = await start_server()

    def client() -> bytes:
        with running.ftp() as ftp:
            if verb == "STOR":
                ftp.storbinary("STOR leased.bin", io.BytesIO(payload))
                return target.read_bytes()
            received = bytearray()
            ftp.retrbinary("RETR leased.bin", received.extend)
            return bytes(received)

    with leased(target) as holder:
        assert holder.stdout is not None
        assert await in_thread(client) == payload
        assert await in_thread(holder.stdout.readline) == "released\n"  # it was broken


async def test_retr_and_size_check_stat_says_a_regular_file(start_server):
    """For a backend whose is_file calls a FIFO a file (and whose open would hang), RETR
    and SIZE still answer 550 from stat, before any 150, and never open it."""
    FifoCalledAFile.opened.clear()
    factory = seeded({"/pipe": b""}, FifoCalledAFile)
    running = await start_server(users=[User(LOGIN, PASSWORD)], path_io_factory=factory)
    wire = await logged_in(running.host, running.port, kind="I")
    with trio.fail_after(PROMPT):
        reply, _ = await transfer(wire, "RETR pipe")
        assert reply.startswith(b"550"), reply
        reply = await wire.command("SIZE pipe")
        assert reply.startswith(b"550"), reply
    await quit_and_close(wire)
    assert FifoCalledAFile.opened == []
