"""Uploads shorter than ``SMALL_UPLOAD`` are received whole, then written in one backend
call; longer ones start the same way and go on through the open file. Sizes around the
boundary, TYPE A with a CRLF cut by it, APPE, atomic uploads, and the worker-thread calls."""

from __future__ import annotations

import errno
import ftplib
import io
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from conftest import LOGIN, PASSWORD, Running, in_thread, random_bytes

from trio_ftp import User
from trio_ftp.handlers.transfer import SMALL_UPLOAD
from trio_ftp.pathio import MemoryPathIO, PathIO

SIZES = [0, 1, 4096, SMALL_UPLOAD - 1, SMALL_UPLOAD, SMALL_UPLOAD + 1, 3 * SMALL_UPLOAD + 5]


def store(running: Running, name: str, data: bytes) -> str:
    with running.ftp() as ftp:
        return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


@pytest.mark.parametrize("atomic", [False, True], ids=["direct", "atomic"])
@pytest.mark.parametrize("size", SIZES)
async def test_every_size_arrives_whole(start_server, root: Path, size: int, atomic: bool) -> None:
    running = await start_server(atomic_uploads=atomic)
    data = random_bytes(size, seed=size)
    (root / "f.bin").write_bytes(b"old contents")
    reply = await in_thread(store, running, "f.bin", data)
    assert reply.startswith("226")
    assert (root / "f.bin").read_bytes() == data
    assert os.listdir(root) == ["f.bin"]  # no temporary left


async def test_a_small_upload_is_one_worker_thread_call(
    start_server, root: Path, worker_thread_calls: list[object]
) -> None:
    running = await start_server()

    def two_uploads() -> None:
        with running.ftp() as ftp:
            # The root's one-time checks, and the name's lookup in the dentry cache (a new
            # name's lookup is one more thread call).
            ftp.storbinary("STOR small.bin", io.BytesIO(b"w"))
            count = len(worker_thread_calls)
            ftp.storbinary("STOR small.bin", io.BytesIO(b"x" * 4096))
            calls.append(len(worker_thread_calls) - count)

    calls: list[int] = []
    await in_thread(two_uploads)
    assert calls == [1]  # open, write and close together
    assert (root / "small.bin").read_bytes() == b"x" * 4096


@pytest.mark.parametrize("cut", [SMALL_UPLOAD - 1, SMALL_UPLOAD, SMALL_UPLOAD + 1])
async def test_ascii_crlf_cut_at_the_boundary(start_server, root: Path, cut: int) -> None:
    """TYPE A: a CRLF whose CR ends the first block (``cut == SMALL_UPLOAD``) and its
    neighbours still become one LF each."""
    running = await start_server()
    wire = b"a" * (cut - 1) + b"\r\n" + b"tail line\r\n" * 10

    def upload() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE A")  # (storbinary would send TYPE I)
            with ftp.transfercmd("STOR text.txt") as conn:
                conn.sendall(wire)
            return ftp.voidresp()

    assert (await in_thread(upload)).startswith("226")
    assert (root / "text.txt").read_bytes() == wire.replace(b"\r\n", b"\n")


async def test_appe_of_a_small_upload_appends(start_server, root: Path) -> None:
    running = await start_server()
    (root / "log.txt").write_bytes(b"first\n")

    def append() -> str:
        with running.ftp() as ftp:
            return ftp.storbinary("APPE log.txt", io.BytesIO(b"second\n"))

    assert (await in_thread(append)).startswith("226")
    assert (root / "log.txt").read_bytes() == b"first\nsecond\n"


async def test_rest_stor_still_writes_in_place(start_server, root: Path) -> None:
    """An offset takes the open-file path (r+b), not the small-upload one."""
    running = await start_server()
    (root / "f.bin").write_bytes(b"0123456789")

    def resume() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            return ftp.storbinary("STOR f.bin", io.BytesIO(b"AB"), rest=4)

    assert (await in_thread(resume)).startswith("226")
    assert (root / "f.bin").read_bytes() == b"0123AB6789"  # not truncated (r+b)


async def test_another_backend_gets_the_default_write_file(start_server) -> None:
    users = [User(LOGIN, PASSWORD, base_path=PurePosixPath("/"))]  # the tree's own root
    running = await start_server(users, path_io_factory=MemoryPathIO)
    data = random_bytes(10_000, seed=3)
    assert (await in_thread(store, running, "m.bin", data)).startswith("226")

    def fetch() -> bytes:
        out = io.BytesIO()
        with running.ftp() as ftp:
            ftp.retrbinary("RETR m.bin", out.write)
        return out.getvalue()

    assert await in_thread(fetch) == data


class _Full(PathIO):
    """A disk that is full when the upload is written."""

    async def write_file(self, path: Any, data: bytes, mode: str = "wb") -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_failed_write_is_an_error_reply_and_the_session_goes_on(start_server) -> None:
    """The file is written only after the data arrived: a failure there still answers
    (452 for a full disk), never 226, and the session goes on."""
    running = await start_server(path_io_factory=_Full)

    def upload() -> tuple[str, str]:
        with running.ftp() as ftp:
            try:
                ftp.storbinary("STOR f.bin", io.BytesIO(b"data"))
            except ftplib.error_temp as exc:
                return str(exc), ftp.voidcmd("NOOP")
            raise AssertionError("the upload was answered 226")

    reply, noop = await in_thread(upload)
    assert reply.startswith("452"), reply
    assert noop.startswith("200")
