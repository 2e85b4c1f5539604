"""Opening a file under a lease, straight from the local backend in a worker thread: the
O_NONBLOCK open answers EWOULDBLOCK and the backend waits for the break (_open_leased).
test_special_files.py drives leases through a session, where a first attempt on the event loop
may start the break and leave the thread nothing to wait for; these reach the wait itself."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import trio
from conftest import in_thread
from test_special_files import PROMPT, leased

from trio_ftp import PathIO
from trio_ftp.pathio import _beneath


async def read_all(path_io: PathIO, path: Path) -> bytes:
    async with path_io.open(path, "rb") as file:
        return await file.read(-1)


@pytest.mark.parametrize("confined", [False, True], ids=["plain-path", "beneath-root"])
async def test_open_for_reading_waits_for_the_lease_break(root: Path, confined: bool):
    if confined and not _beneath.supported():
        pytest.skip("openat2 confinement is not available here")
    target = root / "leased.bin"
    target.write_bytes(b"leased contents")
    path_io = PathIO(event_loop_calls=False)
    if confined:
        target = await path_io.confine(root, PurePosixPath("leased.bin"))
    with leased(target) as holder:
        assert holder.stdout is not None
        with trio.fail_after(PROMPT):
            assert await read_all(path_io, target) == b"leased contents"
        assert await in_thread(holder.stdout.readline) == "released\n"


async def test_open_for_writing_waits_for_the_lease_break(root: Path):
    target = root / "leased.bin"
    target.write_bytes(b"old contents")
    path_io = PathIO(event_loop_calls=False)
    target = await path_io.confine(root, PurePosixPath("leased.bin"))
    with leased(target) as holder:
        assert holder.stdout is not None
        with trio.fail_after(PROMPT):
            async with path_io.open(target, "wb") as file:
                await file.write(b"new")
        assert await in_thread(holder.stdout.readline) == "released\n"
    assert target.read_bytes() == b"new"
