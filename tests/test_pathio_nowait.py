"""The local backend's event-loop path: cached lookups (RESOLVE_CACHED), page-cache reads
(RWF_NOWAIT) and read-only closes run without a worker thread, and everything the kernel
would have to wait for still goes to one, with the same results."""

from __future__ import annotations

import errno
import functools
import io
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trio
from conftest import in_thread, random_bytes

from trio_ftp.errors import PermissionDenied
from trio_ftp.pathio import PathIO, _beneath, _local, _onloop

pytestmark = pytest.mark.skipif(
    not _onloop.classify_root("/"), reason="no RESOLVE_CACHED or no local file system"
)


@pytest.fixture(autouse=True)
def fresh_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test classifies its roots again."""
    monkeypatch.setattr(_onloop, "_classified", {})


def pathio_calls(calls: list[object]) -> list[str]:
    """The names of the backend's worker-thread calls among ``calls``."""
    names = []
    for call in calls:
        function = call.func if isinstance(call, functools.partial) else call
        on_a_file = isinstance(getattr(function, "__self__", None), io.IOBase)
        if on_a_file or (getattr(function, "__module__", None) or "").startswith("trio_ftp"):
            names.append(getattr(function, "__name__", repr(function)))
    return names


async def confined_root(tmp_path: Path) -> tuple[PathIO, Path]:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"0123456789")
    path_io = PathIO()
    await path_io.confine(root, PurePosixPath("."))
    return path_io, root


async def every_cached_call(path_io: PathIO, root: Path) -> tuple[Any, ...]:
    """stat, the three probes, and a file opened, read, seeked, read again and closed."""
    size = (await path_io.stat(root / "file")).st_size
    probes = (
        await path_io.exists(root / "missing"),
        await path_io.is_dir(root / "dir"),
        await path_io.is_file(root / "file"),
    )
    async with path_io.open(root / "file") as file:
        head = await file.read(4)
        await file.seek(8)
        tail = await file.read(100)
        end = await file.read(100)
    return size, probes, head, tail, end


EXPECTED = (10, (False, True, True), b"0123", b"89", b"")


async def test_cached_calls_need_no_worker_thread(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    """Beneath a local root, with everything cached, only the one-time check of the root
    goes to a thread; writes still do."""
    path_io, root = await confined_root(tmp_path)
    assert pathio_calls(worker_thread_calls) == ["classify_root"]
    await every_cached_call(path_io, root)  # a name never looked up is not cached yet
    del worker_thread_calls[:]
    assert await every_cached_call(path_io, root) == EXPECTED
    assert pathio_calls(worker_thread_calls) == []
    async with path_io.open(root / "new", mode="wb") as file:
        await file.write(b"x")
    assert pathio_calls(worker_thread_calls) == ["_open", "write", "close"]


async def test_uncached_lookups_go_to_a_thread(
    tmp_path: Path, worker_thread_calls: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup the dentry cache cannot finish (EAGAIN) is made again in a thread."""
    path_io, root = await confined_root(tmp_path)
    real_openat2 = _beneath.openat2
    refused = []

    def not_cached(*args: Any, resolve: int = 0, **kwargs: Any) -> int:
        if resolve & _beneath.RESOLVE_CACHED:
            refused.append(args[1])
            raise BlockingIOError(errno.EAGAIN, "not cached")
        return real_openat2(*args, resolve=resolve, **kwargs)

    monkeypatch.setattr(_beneath, "openat2", not_cached)
    assert await every_cached_call(path_io, root) == EXPECTED
    assert refused  # the loop path was tried first
    assert pathio_calls(worker_thread_calls)[1:] == ["_stat", "_probe", "_probe", "_probe", "_open"]


async def test_reads_not_in_the_page_cache_go_to_a_thread(
    tmp_path: Path, worker_thread_calls: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """RWF_NOWAIT's EAGAIN sends the read to a thread; a file system without RWF_NOWAIT
    (EOPNOTSUPP) stops trying it for that file."""
    path_io, root = await confined_root(tmp_path)
    payload = random_bytes(300_000)
    (root / "big").write_bytes(payload)
    answers = iter([BlockingIOError(errno.EAGAIN, "not cached"), None])

    def partly_cached(file: Any, size: int) -> bytes:
        answer = next(answers, OSError(errno.EOPNOTSUPP, "no RWF_NOWAIT"))
        if answer is not None:
            raise answer
        return real_read(file, 1000)  # a short read, as RWF_NOWAIT gives for a partial hit

    real_read = _onloop.read_nowait
    monkeypatch.setattr(_onloop, "read_nowait", partly_cached)
    received = bytearray()
    async with path_io.open(root / "big") as file:
        while block := await file.read(65536):
            received += block
    assert received == payload
    reads = pathio_calls(worker_thread_calls).count("_thread_read")
    # the first read in a thread, one short read on the loop, then threads to the end
    after_the_loop_read = len(payload) - 65536 - 1000
    assert reads == 1 + -(-after_the_loop_read // 65536) + 1


async def test_closing_a_removed_file_goes_to_a_thread(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    """The last close of an unlinked file frees its blocks: not on the event loop."""
    path_io, root = await confined_root(tmp_path)
    file = await path_io.open(root / "file")
    assert await file.read(3) == b"012"
    os.unlink(root / "file")
    await file.close()
    assert pathio_calls(worker_thread_calls)[1:] == ["close"]


async def test_other_file_systems_use_threads(
    tmp_path: Path, worker_thread_calls: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root on NFS (or any file system not known to be local) never runs on the loop."""
    monkeypatch.setattr(_beneath, "statfs_type", lambda path: 0x6969)  # NFS_SUPER_MAGIC
    path_io, root = await confined_root(tmp_path)
    assert await every_cached_call(path_io, root) == EXPECTED
    names = pathio_calls(worker_thread_calls)
    lookups = ["classify_root", "_stat", "_probe", "_probe", "_probe", "_open"]
    assert names == [*lookups, "_thread_read", "seek", "_thread_read", "_thread_read", "close"]


async def test_confinement_holds_on_the_loop(tmp_path: Path) -> None:
    """A symlink out of the root is refused, an absolute one back inside works, from the
    cached path as from the thread path."""
    path_io, root = await confined_root(tmp_path)
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "out").symlink_to("../secret")
    (root / "abs").symlink_to(root / "file")
    with pytest.raises(PermissionDenied):
        await path_io.stat(root / "out")
    with pytest.raises(PermissionDenied):
        await path_io.open(root / "out")
    async with path_io.open(root / "abs") as file:
        assert await file.read(100) == b"0123456789"


def test_the_root_check_knows_local_file_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    """ext4 and tmpfs count as safe; FUSE, overlayfs and an unreadable statfs do not."""
    cases = [(0xEF53, True), (0x01021994, True), (0x65735546, False), (0x794C7630, False)]
    for magic, local in [*cases, (None, False)]:
        monkeypatch.setattr(_beneath, "statfs_type", lambda path, magic=magic: magic)
        assert _onloop.classify_root("/") is local


async def test_a_short_download_session_needs_no_worker_thread(
    start_server: Any, root: Path, worker_thread_calls: list[object]
) -> None:
    """Log in, CWD, SIZE, RETR a small cached file, QUIT: the server makes no
    worker-thread call (after the first session has checked the root)."""
    payload = random_bytes(4096)
    (root / "sub").mkdir()
    (root / "sub" / "small.bin").write_bytes(payload)
    running = await start_server()

    def session() -> tuple[int | None, bytes]:
        with running.ftp() as ftp:
            ftp.cwd("sub")
            ftp.voidcmd("TYPE I")
            size = ftp.size("small.bin")
            received = bytearray()
            ftp.retrbinary("RETR small.bin", received.extend)
            return size, bytes(received)

    assert await in_thread(session) == (4096, payload)
    del worker_thread_calls[:]
    assert await in_thread(session) == (4096, payload)
    assert pathio_calls(worker_thread_calls) == []


async def test_cached_lookups_never_cross_a_mount(
    tmp_path: Path, worker_thread_calls: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lookup tried on the loop forbids crossing a mount point (RESOLVE_NO_XDEV): an
    NFS or FUSE mount below a local root is only ever used from a worker thread."""
    path_io, root = await confined_root(tmp_path)
    real_openat2 = _beneath.openat2
    flags = []

    def recording(dir_fd: int, path: str, *args: Any, resolve: int = 0, **kwargs: Any) -> int:
        if dir_fd != _beneath._AT_FDCWD:  # beneath the root, not the root itself
            flags.append(resolve)
        return real_openat2(dir_fd, path, *args, resolve=resolve, **kwargs)

    monkeypatch.setattr(_beneath, "openat2", recording)
    await every_cached_call(path_io, root)
    cached = [resolve for resolve in flags if resolve & _beneath.RESOLVE_CACHED]
    assert cached
    assert all(resolve & _beneath.RESOLVE_NO_XDEV for resolve in cached)


async def test_a_mount_below_the_root_is_used_from_a_thread(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    """With a real file system mounted inside the root (where this process may mount),
    its files are stat'ed and read from worker threads, the root's own on the loop."""
    path_io, root = await confined_root(tmp_path)
    mount_point = root / "mnt"
    mount_point.mkdir()
    mounted = await trio.run_process(
        ["mount", "-t", "tmpfs", "none", str(mount_point)],
        check=False,
        capture_stdout=True,
        capture_stderr=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount here (no privilege); the flag is checked by the test above")
    try:
        (mount_point / "inner").write_bytes(b"on another file system")
        await every_cached_call(path_io, root)  # warm the dentry cache
        del worker_thread_calls[:]
        assert (await path_io.stat(root / "file")).st_size == 10
        assert pathio_calls(worker_thread_calls) == []
        assert (await path_io.stat(mount_point / "inner")).st_size == 22
        async with path_io.open(mount_point / "inner") as file:
            assert await file.read(100) == b"on another file system"
        calls = pathio_calls(worker_thread_calls)
        assert calls == ["_stat", "_open", "_thread_read", "close"], calls
    finally:
        await trio.run_process(["umount", str(mount_point)])


class ThreadsOnly(PathIO):
    event_loop_calls = False


@pytest.mark.parametrize(
    "make", [ThreadsOnly, lambda: PathIO(event_loop_calls=False)], ids=["subclass", "keyword"]
)
async def test_event_loop_calls_can_be_switched_off(
    tmp_path: Path, worker_thread_calls: list[object], make: Any
) -> None:
    """With the switch off, every call goes to a worker thread, even fully cached ones,
    and the root's file system is never even classified."""
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"0123456789")
    path_io = make()
    await path_io.confine(root, PurePosixPath("."))
    await every_cached_call(path_io, root)  # warm every cache
    del worker_thread_calls[:]
    assert await every_cached_call(path_io, root) == EXPECTED
    names = pathio_calls(worker_thread_calls)
    assert "classify_root" not in names
    assert names.count("_probe") == 3
    assert {"_stat", "_open", "_thread_read", "seek", "close"} <= set(names)


def test_only_known_safe_file_systems_run_calls_on_the_loop() -> None:
    """ext2/3/4, XFS, Btrfs, tmpfs; never overlayfs, NFS, FUSE, 9p, SMB."""
    safe = {0xEF53, 0x58465342, 0x9123683E, 0x01021994}
    never = {0x794C7630, 0x6969, 0x65735546, 0x01021997, 0xFF534D42, 0xFE534D42}
    assert safe == _onloop.SAFE_FILE_SYSTEMS
    assert not never & _onloop.SAFE_FILE_SYSTEMS


async def test_a_cancelled_read_keeps_its_descriptor_until_the_thread_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read abandoned by a cancelled caller while its thread is still in read(): close()
    leaves the descriptor open (no other open can get its number and be read by the
    stuck thread); the thread closes it when its read returns."""
    (tmp_path / "f").write_bytes(b"x" * 100)
    entered, release = threading.Event(), threading.Event()
    real_read = _local._ReadFile.read

    def stuck_read(self: _local._ReadFile, size: int = -1) -> bytes:
        entered.set()
        assert release.wait(10)
        return real_read(self, size)

    monkeypatch.setattr(_local._ReadFile, "read", stuck_read)
    path_io = PathIO(event_loop_calls=False)
    file = await path_io.open(tmp_path / "f")
    fd = path_io.native_fd(file)
    assert fd is not None
    with trio.move_on_after(10) as scope:
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                await file.read(10)

            nursery.start_soon(read)
            await trio.to_thread.run_sync(entered.wait, 10)
            nursery.cancel_scope.cancel()  # the read is abandoned, its thread still reads
    assert not scope.cancelled_caught
    inode = os.fstat(fd).st_ino
    await file.close()
    assert os.fstat(fd).st_ino == inode  # still ours: not closed under the thread
    (tmp_path / "g").write_bytes(b"y")
    other = os.open(tmp_path / "g", os.O_RDONLY)
    try:
        assert other != fd  # so the stuck thread can never read another file
    finally:
        os.close(other)
    release.set()
    with trio.fail_after(10):
        while True:  # the thread closes it as its read returns
            try:
                if os.fstat(fd).st_ino != inode:  # closed, and the number given out again
                    break
            except OSError:
                break
            await trio.sleep(0.01)


async def test_a_close_before_the_thread_reads_means_no_read(tmp_path: Path) -> None:
    """A thread that starts after the close began reads nothing (the number may already
    belong to another file) and says so: EBADF, not an end of file."""
    (tmp_path / "f").write_bytes(b"data")
    path_io = PathIO(event_loop_calls=False)
    file = await path_io.open(tmp_path / "f")
    inner = file._file
    assert isinstance(inner, _local._ReadFile)
    await file.close()
    with pytest.raises(OSError, match="closed") as raised:
        _local._thread_read(inner, 4)
    assert raised.value.errno == errno.EBADF  # not b"": an end of file would look complete
