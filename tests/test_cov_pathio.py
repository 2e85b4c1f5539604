"""Path-IO edges the behaviour suites (test_pathio*.py) do not reach: AsyncFile misuse, the
optional methods' defaults, MemoryPathIO's seek and rename corners, GuardedPathIO's stat
sharing and its errors, and _onloop's bookkeeping. Real backends throughout; a subclass
overrides one method where a test needs a backend that fails."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trio

from trio_ftp import AbstractPathIO, MemoryPathIO, PathIO, PathIOError
from trio_ftp.pathio import GuardedPathIO, _onloop

P = PurePosixPath


def memory(files: dict[str, bytes | None] | None = None) -> MemoryPathIO:
    return MemoryPathIO.from_files(files or {"/f": b"0123456789"})


# AsyncFile ---------------------------------------------------------------------------------
async def test_async_file_opens_once_and_refuses_use_before_open_or_after_close():
    path_io = memory()
    file = path_io.open(P("/f"), "rb")
    with pytest.raises(RuntimeError, match="not open yet"):
        await file.read(1)
    assert await file is file
    assert await file is file  # awaiting again does not open again
    assert await file.read(4) == b"0123"  # the same position: one open
    await file.close()
    assert file.closed
    with pytest.raises(ValueError, match="closed file"):
        await file.read(1)
    with pytest.raises(ValueError, match="closed file"):
        await file


# the optional methods' defaults ------------------------------------------------------------
class Minimal(MemoryPathIO):
    """A backend that implements neither chmod nor set_mtime, nor its own confine."""

    chmod = AbstractPathIO.chmod  # type: ignore[assignment]
    set_mtime = AbstractPathIO.set_mtime  # type: ignore[assignment]
    confine = AbstractPathIO.confine  # type: ignore[assignment]


async def test_optional_methods_default_to_not_implemented():
    path_io = Minimal.from_files({"/f": b"x"})
    with pytest.raises(NotImplementedError, match="Minimal does not support chmod"):
        await path_io.chmod(P("/f"), 0o600)
    with pytest.raises(NotImplementedError, match="Minimal does not support set_mtime"):
        await path_io.set_mtime(P("/f"), 0.0)


async def test_guard_passes_not_implemented_as_the_reason():
    """The guard turns NotImplementedError into a PathIOError the handlers recognise (502)."""
    guarded = GuardedPathIO(Minimal.from_files({"/f": b"x"}))
    with pytest.raises(PathIOError) as caught:
        await guarded.set_mtime(P("/f"), 0.0)
    assert isinstance(caught.value.reason, NotImplementedError)


async def test_default_confine_joins_and_refuses_escapes():
    path_io = Minimal()
    assert await path_io.confine(P("/home/u"), P("a/b")) == P("/home/u/a/b")
    assert await path_io.confine(P("/home/u"), P(".")) == P("/home/u")
    for bad in [P("/etc"), P("a/../../etc")]:
        with pytest.raises(ValueError):  # noqa: PT011 - the message names the path
            await path_io.confine(P("/home/u"), bad)


# MemoryPathIO corners ----------------------------------------------------------------------
async def test_memory_seek_whence_and_bounds():
    path_io = memory()
    async with path_io.open(P("/f"), "rb") as file:
        assert await file.seek(2) == 2
        assert await file.seek(3, os.SEEK_CUR) == 5
        assert await file.read(2) == b"56"
        assert await file.seek(-1, os.SEEK_END) == 9
        assert await file.read(5) == b"9"
        with pytest.raises(OSError, match=os.strerror(errno.EINVAL)) as caught:
            await file.seek(-1)
        assert caught.value.errno == errno.EINVAL
        with pytest.raises(ValueError, match="invalid whence"):
            await file.seek(0, 7)
        assert await file.seek(0, os.SEEK_CUR) == 10  # failed seeks moved nothing


async def test_memory_file_modes_are_enforced():
    path_io = memory()
    async with path_io.open(P("/f"), "rb") as file:
        with pytest.raises(io.UnsupportedOperation):
            await file.write(b"x")
    async with path_io.open(P("/f"), "ab") as file:
        with pytest.raises(io.UnsupportedOperation):
            await file.read(1)
        await file.write(b"!")
    async with path_io.open(P("/f"), "rb") as file:
        assert await file.read(-1) == b"0123456789!"


async def test_memory_paths_normalise_dot_dot_and_relative():
    path_io = memory({"/a/b": b"x"})
    assert await path_io.is_file(P("/a/../a/./b"))
    assert await path_io.is_file(P("../../a/b"))  # '..' never climbs above '/'
    assert await path_io.is_file(P("a/b"))  # relative paths are taken from '/'


async def test_memory_rename_onto_itself_changes_nothing():
    path_io = memory({"/a": b"x", "/d/": None})
    assert await path_io.rename(P("/a"), P("/./a")) == P("/a")
    assert await path_io.rename(P("/d"), P("/d")) == P("/d")
    assert [p.name async for p in path_io.list(P("/"))] == ["a", "d"]
    assert (await path_io.stat(P("/a"))).st_size == 1


async def test_memory_errors_without_a_path_name_no_file():
    """An error about no particular path (a bad seek) carries no file name."""
    async with memory().open(P("/f"), "rb") as file:
        with pytest.raises(OSError, match=os.strerror(errno.EINVAL)) as caught:
            await file.seek(-5)
    assert caught.value.filename is None


def test_memory_repr_shows_the_tree():
    path_io = memory()
    assert repr(path_io).startswith("MemoryPathIO(tree=")
    assert repr(GuardedPathIO(path_io, 3)) == f"GuardedPathIO({path_io!r}, timeout=3)"


# GuardedPathIO's stat sharing --------------------------------------------------------------
class Counted(MemoryPathIO):
    """Counts stat calls; declares its exists/is_file/stat consistent."""

    consistent_stat = True
    stats = 0

    async def stat(self, path: PurePosixPath) -> os.stat_result:
        type(self).stats += 1
        return await super().stat(path)

    async def exists(self, path: PurePosixPath) -> bool:
        return await MemoryPathIO.exists(self, path)

    async def is_file(self, path: PurePosixPath) -> bool:
        return await MemoryPathIO.is_file(self, path)

    async def is_dir(self, path: PurePosixPath) -> bool:
        return await MemoryPathIO.is_dir(self, path)


class CountedInconsistent(Counted):
    """The same methods, but says its checks may disagree with stat."""

    consistent_stat = False
    stats = 0


async def checks(path_io: GuardedPathIO[PurePosixPath]) -> tuple[bool, bool, bool, int]:
    """What a command asks about one file: exists, is_file, is_dir, size."""
    path = P("/f")
    return (
        await path_io.exists(path),
        await path_io.is_file(path),
        await path_io.is_dir(path),
        (await path_io.stat(path)).st_size,
    )


async def test_consistent_backend_is_asked_once_per_command():
    Counted.stats = 0
    guarded = GuardedPathIO(Counted.from_files({"/f": b"abc"}))
    assert await checks(guarded) == (True, True, False, 3)
    assert Counted.stats == 1
    guarded.forget_stats()
    assert await checks(guarded) == (True, True, False, 3)
    assert Counted.stats == 2


async def test_backend_declaring_inconsistent_stat_is_asked_every_time():
    CountedInconsistent.stats = 0
    guarded = GuardedPathIO(CountedInconsistent.from_files({"/f": b"abc"}))
    assert await checks(guarded) == (True, True, False, 3)
    assert CountedInconsistent.stats == 1  # only stat() itself; exists/is_* asked directly
    assert await checks(guarded) == (True, True, False, 3)
    assert CountedInconsistent.stats == 2


class Unreadable(MemoryPathIO):
    """stat refuses with EACCES (a directory on the way without search permission)."""

    async def stat(self, path: PurePosixPath) -> os.stat_result:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


class UnreadableConsistent(Unreadable):
    consistent_stat = True


async def test_stat_refused_is_an_error_not_absence():
    """EACCES is not 'no such file': exists() raises it (550 permission denied), rather than
    answering False (which would let STOR or MKD go on to create the path)."""
    guarded = GuardedPathIO(UnreadableConsistent.from_files({"/f": b"x"}))
    with pytest.raises(PathIOError) as caught:
        await guarded.exists(P("/f"))
    assert isinstance(caught.value.reason, PermissionError)
    assert caught.value.code == "550"


async def test_absence_is_remembered_as_absence():
    guarded = GuardedPathIO(Counted.from_files({}))
    Counted.stats = 0
    assert not await guarded.exists(P("/nope"))
    assert not await guarded.is_file(P("/nope"))
    with pytest.raises(PathIOError) as caught:
        await guarded.stat(P("/nope"))
    assert isinstance(caught.value.reason, FileNotFoundError)
    assert Counted.stats == 1


# _onloop bookkeeping -----------------------------------------------------------------------
def test_classify_root_needs_cached_lookups(monkeypatch, tmp_path):
    """Without RESOLVE_CACHED nothing runs on the loop, whatever the file system."""
    monkeypatch.setattr(_onloop._beneath, "cached_lookups_work", lambda: False)
    assert not _onloop.classify_root(str(tmp_path))


def test_remembered_roots_are_bounded(monkeypatch):
    """A user manager with endless roots cannot grow the table past its cap: it starts over."""
    monkeypatch.setattr(_onloop, "_classified", {})
    monkeypatch.setattr(_onloop, "_ROOTS_REMEMBERED", 3)
    for index in range(3):
        _onloop.remember(f"/r{index}", True)
    assert _onloop.known("/r2")
    assert _onloop.allowed(True, "/r2")
    assert not _onloop.allowed(False, "/r2")
    _onloop.remember("/r3", False)
    assert not _onloop.known("/r0")
    assert _onloop.known("/r3")
    assert not _onloop.allowed(True, "/r3")
    assert len(_onloop._classified) == 1


async def test_a_read_file_from_the_page_cache_is_closed_on_the_loop(tmp_path: Path) -> None:
    """close_now: the local backend closes a file read from the page cache at once; a
    subclass with its own close, and other backends, go the shielded way."""

    class OwnClose(PathIO):
        closed: list[Any] = []

        async def close(self, file: Any) -> None:
            OwnClose.closed.append(file)
            await super().close(file)

    (tmp_path / "f").write_bytes(b"x" * 1000)
    backend = GuardedPathIO(PathIO())
    real = await backend.confine(tmp_path, PurePosixPath("f"))  # a root: on-loop calls
    file = await backend.open(real, "rb")
    assert await file.read(10) == b"x" * 10
    assert file._file.nowait  # read from the page cache, on the loop
    slow_closes: list[Any] = []
    backend.inner.close = slow_closes.append  # type: ignore[method-assign,assignment]
    await file.close()
    assert file._file.closed
    assert slow_closes == []  # closed on the loop: the backend's close was not needed
    await file.close()  # idempotent
    own = GuardedPathIO(OwnClose())
    other = await own.open(tmp_path / "f", "rb")
    assert not own.close_now(other._file)
    await other.close()
    assert OwnClose.closed == [other._file]  # the subclass's close ran
    memory = MemoryPathIO.from_files({"/m": b"y"})
    mfile = await memory.open(PurePosixPath("/m"), "rb")
    assert not memory.close_now(mfile._file)
    await mfile.close()


async def test_a_read_file_closed_while_cancelled_is_closed(tmp_path: Path) -> None:
    """A read file closed by a cancelled caller is still closed (on the loop, or by the
    shielded close), and the cancellation still reaches the caller."""
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    backend = GuardedPathIO(PathIO())
    file = await backend.open(tmp_path / "f", "rb")
    assert await file.read(10) == b"x" * 10
    with trio.CancelScope() as scope:
        scope.cancel()
        await file.close()
    assert scope.cancelled_caught
    assert file.closed
    assert file._file.closed


async def test_a_close_now_that_raises_falls_back_to_the_guarded_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A backend's buggy close_now costs a log line; the file is still closed."""

    class Buggy(MemoryPathIO):
        def close_now(self, file: Any) -> bool:
            raise RuntimeError("bug")

    backend = GuardedPathIO(Buggy.from_files({"/m": b"y"}))
    file = await backend.open(PurePosixPath("/m"), "rb")
    await file.close()
    assert file.closed
    assert "close_now of 'Buggy' raised" in caplog.text
