"""Special files in a user's tree (FIFO, UNIX socket, character device) are refused with
``550`` before any ``150``, and never block the event loop, a worker thread, another
session, ABOR or ``close()``.

Before: STOR onto a FIFO held a worker thread in ``open()`` for ever (ABOR unanswered,
``close()`` blocked), and a cached open of a FIFO on the event loop stalled every session.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio
from conftest import random_bytes
from wire import (
    logged_in,
    quit_and_close,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
    transfer,
)

from trio_ftp import PathIO
from trio_ftp.errors import PermissionDenied

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


@pytest.mark.parametrize("mode", ["rb", "wb", "ab", "r+b"])
async def test_opening_a_fifo_never_waits(root: Path, mode: str):
    """Local backend, confined (the event-loop path for reads): opening a FIFO with no
    peer is refused at once, and the event loop keeps running meanwhile."""
    os.mkfifo(root / "pipe")
    path_io = PathIO()
    real = await path_io.confine(root, Path("pipe"))  # type: ignore[arg-type]
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticking)
        with trio.fail_after(PROMPT), pytest.raises(PermissionDenied):
            await path_io.open(real, mode=mode)
        nursery.cancel_scope.cancel()
    assert ticks > 0


async def test_unconfined_open_refuses_a_fifo_too(root: Path):
    """The plain-path fallback (no confine, or no openat2) opens with O_NONBLOCK too."""
    os.mkfifo(root / "pipe")
    with trio.fail_after(PROMPT), pytest.raises(PermissionDenied):
        await PathIO().open(root / "pipe", mode="wb")
