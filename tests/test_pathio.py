"""Path IO backends: one behaviour suite for both, confinement, the guard, shared state."""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_ftp.errors import PathIOError, PermissionDenied
from trio_ftp.pathio import AbstractPathIO, GuardedPathIO, MemoryPathIO, MemoryTree, PathIO

Backend = tuple[AbstractPathIO[Any], Any]


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """``(path_io, root)``: the local file system under ``tmp_path``, or an empty tree."""
    if request.param == "local":
        yield PathIO(), tmp_path
    else:
        yield MemoryPathIO(), PurePosixPath("/")


async def write_file(
    path_io: AbstractPathIO[Any], path: Any, data: bytes, mode: str = "wb"
) -> None:
    async with path_io.open(path, mode=mode) as file:
        assert await file.write(data) == len(data)


async def read_file(path_io: AbstractPathIO[Any], path: Any) -> bytes:
    async with path_io.open(path) as file:
        return b"".join([block async for block in file.iter_by_block(3)])


async def names(path_io: AbstractPathIO[Any], path: Any) -> list[str]:
    return [child.name async for child in path_io.list(path)]


# the behaviour suite, for both backends --------------------------------------------------------
async def test_mkdir_exists_is_dir_is_file(backend: Backend) -> None:
    path_io, root = backend
    assert not await path_io.exists(root / "d")
    await path_io.mkdir(root / "d")
    await write_file(path_io, root / "f", b"x")
    assert await path_io.exists(root / "d")
    assert await path_io.is_dir(root / "d")
    assert not await path_io.is_file(root / "d")
    assert await path_io.is_file(root / "f")
    assert not await path_io.is_dir(root / "f")
    assert await path_io.is_dir(root)
    for missing in (root / "nope", root / "nope" / "deeper", root / "f" / "under_a_file"):
        assert not await path_io.exists(missing)
        assert not await path_io.is_dir(missing)
        assert not await path_io.is_file(missing)


async def test_mkdir_parents_and_exist_ok(backend: Backend) -> None:
    path_io, root = backend
    with pytest.raises(FileNotFoundError):
        await path_io.mkdir(root / "a" / "b")
    await path_io.mkdir(root / "a" / "b", parents=True)
    assert await path_io.is_dir(root / "a")
    assert await path_io.is_dir(root / "a" / "b")
    with pytest.raises(FileExistsError):
        await path_io.mkdir(root / "a")
    await path_io.mkdir(root / "a", exist_ok=True)
    await path_io.mkdir(root / "a" / "b", parents=True, exist_ok=True)
    await write_file(path_io, root / "f", b"")
    with pytest.raises(FileExistsError):
        await path_io.mkdir(root / "f", exist_ok=True)
    with pytest.raises(NotADirectoryError):
        await path_io.mkdir(root / "f" / "sub", parents=True)


async def test_rmdir(backend: Backend) -> None:
    path_io, root = backend
    await path_io.mkdir(root / "d" / "sub", parents=True)
    with pytest.raises(OSError, match=os.strerror(errno.ENOTEMPTY)) as info:
        await path_io.rmdir(root / "d")
    assert info.value.errno == errno.ENOTEMPTY
    await write_file(path_io, root / "f", b"")
    with pytest.raises(NotADirectoryError):
        await path_io.rmdir(root / "f")
    with pytest.raises(FileNotFoundError):
        await path_io.rmdir(root / "missing")
    await path_io.rmdir(root / "d" / "sub")
    await path_io.rmdir(root / "d")
    assert not await path_io.exists(root / "d")


async def test_unlink(backend: Backend) -> None:
    path_io, root = backend
    with pytest.raises(FileNotFoundError):
        await path_io.unlink(root / "missing")
    await path_io.mkdir(root / "d")
    with pytest.raises(IsADirectoryError):
        await path_io.unlink(root / "d")
    await write_file(path_io, root / "f", b"data")
    await path_io.unlink(root / "f")
    assert not await path_io.exists(root / "f")


async def test_list_children(backend: Backend) -> None:
    path_io, root = backend
    assert await names(path_io, root) == []
    await path_io.mkdir(root / "b_dir")
    await write_file(path_io, root / "c.txt", b"")
    await write_file(path_io, root / "a.txt", b"")
    await write_file(path_io, root / "b_dir" / "inner", b"")
    children = [child async for child in path_io.list(root)]
    assert children == [root / "a.txt", root / "b_dir", root / "c.txt"]
    assert await names(path_io, root / "b_dir") == ["inner"]
    with pytest.raises(FileNotFoundError):
        await names(path_io, root / "missing")
    with pytest.raises(NotADirectoryError):
        await names(path_io, root / "a.txt")


async def test_stat(backend: Backend) -> None:
    path_io, root = backend
    await path_io.mkdir(root / "d")
    await write_file(path_io, root / "f", b"12345")
    await write_file(path_io, root / "g", b"")
    file_stat = await path_io.stat(root / "f")
    dir_stat = await path_io.stat(root / "d")
    assert isinstance(file_stat, os.stat_result)
    assert isinstance(dir_stat, os.stat_result)
    assert file_stat.st_size == 5
    assert stat.S_ISREG(file_stat.st_mode)
    assert not stat.S_ISDIR(file_stat.st_mode)
    assert stat.S_ISDIR(dir_stat.st_mode)
    assert file_stat.st_nlink == 1
    inodes = {file_stat.st_ino, dir_stat.st_ino, (await path_io.stat(root / "g")).st_ino}
    assert len(inodes) == 3
    assert isinstance(file_stat.st_mtime, float)
    with pytest.raises(FileNotFoundError):
        await path_io.stat(root / "missing")
    with pytest.raises(NotADirectoryError):
        await path_io.stat(root / "f" / "under_a_file")


async def test_write_read_round_trip(backend: Backend) -> None:
    path_io, root = backend
    data = bytes(range(256)) * 5
    await write_file(path_io, root / "f", data)
    async with path_io.open(root / "f", mode="rb") as file:
        blocks = [block async for block in file.iter_by_block(100)]
    assert b"".join(blocks) == data
    assert [len(block) for block in blocks] == [100] * 12 + [80]
    assert (await path_io.stat(root / "f")).st_size == len(data)


async def test_wb_truncates_and_ab_appends(backend: Backend) -> None:
    path_io, root = backend
    await write_file(path_io, root / "f", b"a long first version")
    await write_file(path_io, root / "f", b"short")
    assert await read_file(path_io, root / "f") == b"short"
    await write_file(path_io, root / "f", b"+more", mode="ab")
    assert await read_file(path_io, root / "f") == b"short+more"
    await write_file(path_io, root / "new", b"created", mode="ab")
    assert await read_file(path_io, root / "new") == b"created"


async def test_append_ignores_seek(backend: Backend) -> None:
    path_io, root = backend
    await write_file(path_io, root / "f", b"0123")
    async with path_io.open(root / "f", mode="ab") as file:
        await file.seek(0)
        await file.write(b"45")
    assert await read_file(path_io, root / "f") == b"012345"


async def test_r_plus_b_writes_in_place(backend: Backend) -> None:
    path_io, root = backend
    await write_file(path_io, root / "f", b"0123456789")
    async with path_io.open(root / "f", mode="r+b") as file:
        assert await file.seek(4) == 4
        await file.write(b"XY")
        assert await file.read(2) == b"67"
        assert await file.seek(-1, os.SEEK_END) == 9
        assert await file.read(5) == b"9"
    assert await read_file(path_io, root / "f") == b"0123XY6789"
    async with path_io.open(root / "f", mode="r+b") as file:
        await file.seek(12)
        await file.write(b"end")
    assert await read_file(path_io, root / "f") == b"0123XY6789\0\0end"
    with pytest.raises(FileNotFoundError):
        await path_io.open(root / "missing", mode="r+b")


async def test_rename_file(backend: Backend) -> None:
    path_io, root = backend
    await write_file(path_io, root / "src", b"content")
    assert await path_io.rename(root / "src", root / "dst") == root / "dst"
    assert not await path_io.exists(root / "src")
    assert await read_file(path_io, root / "dst") == b"content"


async def test_rename_replaces_a_file(backend: Backend) -> None:
    path_io, root = backend
    await write_file(path_io, root / "src", b"new")
    await write_file(path_io, root / "dst", b"old content")
    await path_io.rename(root / "src", root / "dst")
    assert await names(path_io, root) == ["dst"]
    assert await read_file(path_io, root / "dst") == b"new"


async def test_rename_dir(backend: Backend) -> None:
    path_io, root = backend
    await path_io.mkdir(root / "d" / "sub", parents=True)
    await write_file(path_io, root / "d" / "sub" / "f", b"deep")
    await path_io.mkdir(root / "other")
    await path_io.rename(root / "d", root / "other" / "moved")
    assert not await path_io.exists(root / "d")
    assert await read_file(path_io, root / "other" / "moved" / "sub" / "f") == b"deep"


async def test_rename_errors(backend: Backend) -> None:
    path_io, root = backend
    await path_io.mkdir(root / "d" / "sub", parents=True)
    await path_io.mkdir(root / "full" / "x", parents=True)
    await write_file(path_io, root / "f", b"")
    with pytest.raises(FileNotFoundError):
        await path_io.rename(root / "missing", root / "x")
    with pytest.raises(FileNotFoundError):
        await path_io.rename(root / "f", root / "missing" / "f")
    with pytest.raises(IsADirectoryError):
        await path_io.rename(root / "f", root / "d")
    with pytest.raises(NotADirectoryError):
        await path_io.rename(root / "d", root / "f")
    with pytest.raises(OSError, match=os.strerror(errno.ENOTEMPTY)) as info:
        await path_io.rename(root / "d", root / "full")
    assert info.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError, match=os.strerror(errno.EINVAL)) as info:
        await path_io.rename(root / "d", root / "d" / "sub" / "inside")
    assert info.value.errno == errno.EINVAL
    await path_io.rename(root / "d" / "sub", root / "full" / "x")  # onto an empty directory
    assert await names(path_io, root / "d") == []


async def test_open_a_directory_fails(backend: Backend) -> None:
    path_io, root = backend
    await path_io.mkdir(root / "d")
    for mode in ("rb", "wb", "ab", "r+b"):
        with pytest.raises(IsADirectoryError):
            async with path_io.open(root / "d", mode=mode):
                pass  # pragma: no cover


async def test_open_missing(backend: Backend) -> None:
    path_io, root = backend
    with pytest.raises(FileNotFoundError):
        await path_io.open(root / "missing")
    with pytest.raises(FileNotFoundError):
        await path_io.open(root / "missing_dir" / "f", mode="wb")
    await write_file(path_io, root / "f", b"")
    with pytest.raises(NotADirectoryError):
        await path_io.open(root / "f" / "g", mode="wb")


async def test_await_form_and_close(backend: Backend) -> None:
    path_io, root = backend
    file = await path_io.open(root / "f", mode="wb")
    await file.write(b"abc")
    await file.close()
    await file.close()  # idempotent
    assert file.closed
    with pytest.raises(ValueError, match="closed"):
        await file.write(b"more")
    file = await path_io.open(root / "f")
    assert await file.read() == b"abc"
    assert await file.read(10) == b""
    await file.close()


async def test_close_happens_even_when_cancelled(backend: Backend) -> None:
    """Leaving ``async with`` in a cancelled scope still closes (and so flushes) the file."""
    path_io, root = backend
    with trio.CancelScope() as scope:
        async with path_io.open(root / "f", mode="wb") as file:
            await file.write(b"buffered")
            scope.cancel()
    assert file.closed
    assert await read_file(path_io, root / "f") == b"buffered"
    if isinstance(path_io, PathIO):
        assert file._file.closed


async def test_wrong_direction_and_modes(backend: Backend) -> None:
    path_io, root = backend
    async with path_io.open(root / "f", mode="wb") as file:
        with pytest.raises(io.UnsupportedOperation):
            await file.read(1)
    async with path_io.open(root / "f", mode="rb") as file:
        with pytest.raises(io.UnsupportedOperation):
            await file.write(b"x")
        with pytest.raises(ValueError, match="block size"):
            file.iter_by_block(0)
    for mode in ("r", "w", "wb+", "x"):
        with pytest.raises(ValueError, match="invalid mode"):
            path_io.open(root / "f", mode=mode)


async def test_exclusive_create_mode(backend: Backend) -> None:
    """``xb`` creates a new file, and refuses a name that exists (how STOU reserves)."""
    path_io, root = backend
    async with path_io.open(root / "new", mode="xb") as file:
        await file.write(b"mine")
    with pytest.raises(FileExistsError):
        await path_io.open(root / "new", mode="xb")
    async with path_io.open(root / "new", mode="rb") as file:
        assert await file.read() == b"mine"


async def test_default_confine(backend: Backend) -> None:
    path_io, root = backend
    assert await path_io.confine(root, PurePosixPath(".")) == root
    assert await path_io.confine(root, PurePosixPath("a/b")) == root / "a" / "b"
    for bad in ("../x", "/etc", "a/../../b"):
        with pytest.raises(ValueError, match="normalized relative path"):
            await path_io.confine(root, PurePosixPath(bad))


# both backends agree on arbitrary sequences of operations -------------------------------------
NAMES = ["a", "b", "a/b", "a/c", "b/a", "a/b/c"]
name = st.sampled_from(NAMES)
operation = st.one_of(
    st.tuples(st.just("mkdir"), name, st.booleans(), st.booleans()),
    st.tuples(st.just("rmdir"), name),
    st.tuples(st.just("unlink"), name),
    st.tuples(
        st.just("write"),
        name,
        st.sampled_from(["wb", "ab", "r+b"]),
        st.integers(0, 4),
        st.binary(max_size=4),
    ),
    st.tuples(st.just("read"), name),
    st.tuples(st.just("rename"), name, name),
    st.tuples(st.just("list"), name),
    st.tuples(st.just("stat"), name),
)


async def apply(path_io: AbstractPathIO[Any], root: Any, op: tuple[Any, ...]) -> object:
    """Run one operation; return a backend-independent description of its outcome."""
    kind, path, *args = op
    path = root / path
    try:
        if kind == "mkdir":
            await path_io.mkdir(path, parents=args[0], exist_ok=args[1])
        elif kind == "rmdir":
            await path_io.rmdir(path)
        elif kind == "unlink":
            await path_io.unlink(path)
        elif kind == "write":
            mode, offset, data = args
            async with path_io.open(path, mode=mode) as file:
                await file.seek(offset)
                await file.write(data)
        elif kind == "read":
            return await read_file(path_io, path)
        elif kind == "rename":
            await path_io.rename(path, root / args[0])
        elif kind == "list":
            return await names(path_io, path)
        else:
            result = await path_io.stat(path)
            return stat.S_IFMT(result.st_mode), result.st_size if stat.S_ISREG(
                result.st_mode
            ) else 0
    except OSError as exc:
        return type(exc).__name__, exc.errno
    return None


@pytest.mark.slow  # CPU and disk: hypothesis examples on the real file system
@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(operation, max_size=12))
@example([("write", "a", "wb", 1, b"")])  # an empty write past the end extends nothing
@example([("mkdir", "a", False, False), ("write", "a/b", "wb", 0, b"x"), ("rename", "a/b", "a")])
def test_memory_behaves_like_the_local_file_system(ops: list[tuple[Any, ...]]) -> None:
    async def main(local_root: Path) -> None:
        local, memory = PathIO(), MemoryPathIO()
        for op in ops:
            expected = await apply(local, local_root, op)
            assert await apply(memory, PurePosixPath("/"), op) == expected, op
        for path in NAMES:  # the final trees are the same
            assert await apply(memory, PurePosixPath("/"), ("stat", path)) == await apply(
                local, local_root, ("stat", path)
            )

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(tmp))


# PathIO: confinement and the event loop ---------------------------------------------------------
@pytest.fixture
def jail(tmp_path: Path) -> Path:
    """``tmp_path/root`` (the user's root, with a file and a dir), next to ``tmp_path/outside``."""
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"inside")
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    return root


@pytest.mark.parametrize(
    ("link", "target", "path"),
    [
        ("to_file", "../outside/secret", "to_file"),
        ("to_dir", "../outside", "to_dir"),
        ("to_dir", "../outside", "to_dir/secret"),
        ("to_dir", "../outside", "to_dir/dir/not_yet_created"),
        ("dangling", "../outside/not_there", "dangling"),
        ("absolute", "/", "absolute/etc"),
        ("dir/nested", "../..", "dir/nested/outside/secret"),
    ],
)
async def test_confine_refuses_symlinks_out_of_the_root(
    jail: Path, link: str, target: str, path: str
) -> None:
    (jail / link).symlink_to(target)
    path_io = PathIO()
    with pytest.raises(PermissionDenied) as info:  # from confine, or at the latest the use
        await path_io.stat(await path_io.confine(jail, PurePosixPath(path)))
    assert info.value.code == "550"
    assert "outside" in info.value.text


async def test_confine_allows_paths_inside_the_root(jail: Path) -> None:
    (jail / "link_to_file").symlink_to("file")
    (jail / "dir" / "link_up").symlink_to("..")
    (jail / "self").symlink_to(".")
    path_io = PathIO()
    for path in (".", "file", "dir", "new_file", "dir/new/deeper", "link_to_file", "self"):
        assert await path_io.confine(jail, PurePosixPath(path)) == jail / path
    # the returned path is the joined one, not the resolved one
    assert await path_io.confine(jail, PurePosixPath("dir/link_up/file")) == (
        jail / "dir" / "link_up" / "file"
    )


async def test_confine_with_a_relative_base_path(
    jail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (jail / "dir" / "link_up").symlink_to("..")
    monkeypatch.chdir(jail)
    path_io = PathIO()
    assert await path_io.confine(Path("."), PurePosixPath("file")) == Path("file")
    assert await path_io.confine(Path("dir"), PurePosixPath("x")) == Path("dir/x")
    with pytest.raises(PermissionDenied):
        await path_io.stat(await path_io.confine(Path("dir"), PurePosixPath("link_up")))


async def test_confine_of_a_root_that_is_a_symlink(jail: Path, tmp_path: Path) -> None:
    """Only what is under the root matters, not how the root itself is reached."""
    (tmp_path / "root_link").symlink_to(jail)
    path_io = PathIO()
    assert await path_io.confine(tmp_path / "root_link", PurePosixPath("file")) == (
        tmp_path / "root_link" / "file"
    )
    (jail / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(PermissionDenied):
        await path_io.stat(await path_io.confine(tmp_path / "root_link", PurePosixPath("escape")))


@pytest.mark.parametrize(
    ("function", "operation"),
    [
        ("scandir", lambda path_io, root: path_io.list(root).__anext__()),
        ("mkdir", lambda path_io, root: path_io.mkdir(root / "new")),
        ("replace", lambda path_io, root: path_io.rename(root / "f", root / "g")),
    ],
)
async def test_pathio_does_not_block_the_event_loop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    operation: Callable[[PathIO, Path], Any],
) -> None:
    """The file-system call waits for the event loop to release it: a deadlock unless the
    call runs in a trio worker thread (the gate gives up after a few seconds, failing)."""
    (tmp_path / "f").write_bytes(b"")
    entered, done = trio.Event(), trio.Event()
    release = threading.Event()
    real = getattr(os, function)

    def gated(*args: Any, **kwargs: Any) -> Any:
        # raises RuntimeError when called from the event loop's own thread
        trio.from_thread.run_sync(entered.set)
        if not release.wait(5):
            raise RuntimeError("the event loop was blocked")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, function, gated)

    async def run() -> None:
        await operation(PathIO(), tmp_path)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(10):
            await entered.wait()
            assert not done.is_set()
            release.set()
            await done.wait()


# GuardedPathIO ----------------------------------------------------------------------------------
class SlowMemoryPathIO(MemoryPathIO):
    """A backend whose ``exists`` and ``read`` take ten seconds."""

    async def exists(self, path: PurePosixPath) -> bool:
        await trio.sleep(10)
        return await super().exists(path)

    async def read(self, file: Any, block_size: int) -> bytes:
        await trio.sleep(10)
        return await super().read(file, block_size)


async def test_guard_translates_os_errors(backend: Backend) -> None:
    path_io, root = backend
    guarded = GuardedPathIO(path_io, 5)
    with pytest.raises(PathIOError) as info:
        await guarded.stat(root / "missing")
    assert info.value.code == "550"
    assert isinstance(info.value.reason, FileNotFoundError)
    assert info.value.reason.errno == errno.ENOENT
    assert isinstance(info.value.__cause__, FileNotFoundError)
    await guarded.mkdir(root / "d" / "sub", parents=True)
    with pytest.raises(PathIOError) as info:
        await guarded.rmdir(root / "d")
    assert info.value.code == "550"
    assert info.value.text == "directory not empty"
    with pytest.raises(PathIOError) as info:
        async for _ in guarded.list(root / "missing"):
            pass  # pragma: no cover
    assert info.value.code == "550"
    with pytest.raises(PathIOError) as info:
        await guarded.open(root / "d")
    assert info.value.code == "550"
    assert info.value.text == "is a directory"


async def test_guard_passes_results_through(backend: Backend) -> None:
    path_io, root = backend
    guarded = GuardedPathIO(path_io, 5)
    assert guarded.inner is path_io
    assert guarded.state is path_io.state
    async with guarded.open(root / "f", mode="wb") as file:
        await file.write(b"hello")
    async with guarded.open(root / "f", mode="r+b") as file:
        await file.seek(1)
        assert [block async for block in file.iter_by_block(2)] == [b"el", b"lo"]
    assert await guarded.is_file(root / "f")
    assert [child.name async for child in guarded.list(root)] == ["f"]
    assert (await guarded.stat(root / "f")).st_size == 5
    assert await guarded.rename(root / "f", root / "g") == root / "g"
    await guarded.unlink(root / "g")
    assert not await guarded.exists(root / "g")
    assert await guarded.confine(root, PurePosixPath("x")) == root / "x"


async def test_guard_other_exceptions_become_path_io_errors() -> None:
    class Broken(MemoryPathIO):
        async def is_dir(self, path: PurePosixPath) -> bool:
            raise KeyError("bug in a backend")

    with pytest.raises(PathIOError) as info:
        await GuardedPathIO(Broken()).is_dir(PurePosixPath("/"))
    assert info.value.code == "451"
    assert isinstance(info.value.reason, KeyError)


async def test_guard_timeout(autojump_clock: trio.abc.Clock) -> None:
    guarded = GuardedPathIO(SlowMemoryPathIO.from_files({"/f": b"data"}), 1)
    start = trio.current_time()
    with pytest.raises(PathIOError) as info:
        await guarded.exists(PurePosixPath("/f"))
    assert trio.current_time() - start == pytest.approx(1)
    assert info.value.code == "451"
    assert isinstance(info.value.reason, TimeoutError)
    assert isinstance(info.value.__cause__, trio.TooSlowError)
    async with guarded.open(PurePosixPath("/f")) as file:  # opening is fast
        with pytest.raises(PathIOError) as info:
            await file.read(10)  # reading is not
    assert info.value.code == "451"


async def test_guard_without_timeout_waits(autojump_clock: trio.abc.Clock) -> None:
    guarded = GuardedPathIO(SlowMemoryPathIO.from_files({"/f": b"data"}), None)
    start = trio.current_time()
    assert await guarded.exists(PurePosixPath("/f"))
    assert trio.current_time() - start == pytest.approx(10)


async def test_guard_times_out_each_listing_step(autojump_clock: trio.abc.Clock) -> None:
    class SlowList(MemoryPathIO):
        def list(self, path: PurePosixPath) -> Any:
            inner = super().list(path)

            class Slow:
                def __aiter__(self) -> Slow:
                    return self

                async def __anext__(self) -> PurePosixPath:
                    await trio.sleep(0.6)
                    return await inner.__anext__()

            return Slow()

    guarded = GuardedPathIO(SlowList.from_files({"/a": b"", "/b": b"", "/c": b""}), 1)
    # each step takes 0.6 s: the listing as a whole takes longer than the timeout, fine
    assert [child.name async for child in guarded.list(PurePosixPath("/"))] == ["a", "b", "c"]
    guarded.timeout = 0.5
    with pytest.raises(PathIOError) as info:
        async for _ in guarded.list(PurePosixPath("/")):
            pass  # pragma: no cover
    assert isinstance(info.value.reason, TimeoutError)


async def test_guard_lets_ftp_errors_through(jail: Path) -> None:
    (jail / "out").symlink_to("..")
    guarded = GuardedPathIO(PathIO(), 5)
    with pytest.raises(PermissionDenied):
        await guarded.stat(await guarded.confine(jail, PurePosixPath("out")))


async def test_guard_lets_cancellation_through(autojump_clock: trio.abc.Clock) -> None:
    guarded = GuardedPathIO(SlowMemoryPathIO(), 100)
    with trio.move_on_after(1) as scope:
        await guarded.exists(PurePosixPath("/"))
    assert scope.cancelled_caught


# MemoryPathIO -----------------------------------------------------------------------------------
async def test_memory_state_is_shared() -> None:
    first = MemoryPathIO()
    second = MemoryPathIO(state=first.state)
    assert isinstance(first.state, MemoryTree)
    await write_file(first, PurePosixPath("/shared"), b"from first")
    assert await read_file(second, PurePosixPath("/shared")) == b"from first"
    await second.mkdir(PurePosixPath("/dir"))
    assert await first.is_dir(PurePosixPath("/dir"))
    third = MemoryPathIO()
    assert not await third.exists(PurePosixPath("/shared"))
    inodes = {(await first.stat(PurePosixPath("/shared"))).st_ino}
    await write_file(second, PurePosixPath("/other"), b"")
    inodes.add((await first.stat(PurePosixPath("/other"))).st_ino)
    assert len(inodes) == 2
    with pytest.raises(TypeError):
        MemoryPathIO(state={"not": "a tree"})


async def test_memory_from_files() -> None:
    path_io = MemoryPathIO.from_files(
        {"/a/b.txt": b"data", "/empty_dir/": None, "top.bin": b"\0\1", "/a/c/": None}
    )
    root = PurePosixPath("/")
    assert await names(path_io, root) == ["a", "empty_dir", "top.bin"]
    assert await names(path_io, root / "a") == ["b.txt", "c"]
    assert await read_file(path_io, root / "a" / "b.txt") == b"data"
    assert await read_file(path_io, root / "top.bin") == b"\0\1"
    assert await path_io.is_dir(root / "empty_dir")
    assert await names(path_io, root / "empty_dir") == []
    with pytest.raises(ValueError, match="ends with '/'"):
        MemoryPathIO.from_files({"/dir/": b"content"})


@pytest.mark.parametrize(
    "spelling", [Path("a/b.txt"), PurePath("/a/b.txt"), PurePosixPath("./a/./b.txt"), "a/b.txt"]
)
async def test_memory_accepts_any_path_spelling(spelling: Any) -> None:
    path_io = MemoryPathIO.from_files({"/a/b.txt": b"data"})
    assert await path_io.is_file(spelling)
    assert await path_io.is_dir(Path("."))
    confined = await path_io.confine(Path("."), PurePosixPath("a/b.txt"))
    assert confined == PurePosixPath("/a/b.txt")
    assert await path_io.confine(Path("a"), PurePosixPath("b.txt")) == PurePosixPath("/a/b.txt")


async def test_memory_write_updates_mtime() -> None:
    path_io = MemoryPathIO.from_files({"/f": b""})
    before = (await path_io.stat(PurePosixPath("/f"))).st_mtime
    await trio.sleep(0.01)
    await write_file(path_io, PurePosixPath("/f"), b"x", mode="ab")
    after = await path_io.stat(PurePosixPath("/f"))
    assert after.st_mtime > before
    assert after.st_ctime >= after.st_mtime


async def test_memory_root_operations() -> None:
    path_io = MemoryPathIO()
    root = PurePosixPath("/")
    with pytest.raises(FileExistsError):
        await path_io.mkdir(root)
    await path_io.mkdir(root, exist_ok=True)
    with pytest.raises(OSError, match=os.strerror(errno.EBUSY)) as info:
        await path_io.rmdir(root)
    assert info.value.errno == errno.EBUSY
    with pytest.raises(IsADirectoryError):
        await path_io.open(root, mode="wb")
    assert stat.S_IMODE((await path_io.stat(root)).st_mode) == 0o755
    assert (await path_io.stat(root)).st_nlink == 2


# chmod -------------------------------------------------------------------------------------------
async def test_chmod_sets_the_permission_bits(backend: Backend) -> None:
    """chmod changes st_mode's permission bits (file and directory), keeping the file type."""
    path_io, root = backend
    await write_file(path_io, root / "f", b"data")
    await path_io.mkdir(root / "d")
    await path_io.chmod(root / "f", 0o600)
    await path_io.chmod(root / "d", 0o711)
    file_mode = (await path_io.stat(root / "f")).st_mode
    dir_mode = (await path_io.stat(root / "d")).st_mode
    assert stat.S_IMODE(file_mode) == 0o600
    assert stat.S_ISREG(file_mode)
    assert stat.S_IMODE(dir_mode) == 0o711
    assert stat.S_ISDIR(dir_mode)
    await path_io.chmod(root / "f", 0o644)
    assert stat.S_IMODE((await path_io.stat(root / "f")).st_mode) == 0o644
    assert await read_file(path_io, root / "f") == b"data"


async def test_chmod_missing_path(backend: Backend) -> None:
    """chmod of a missing path raises FileNotFoundError, as os.chmod does."""
    path_io, root = backend
    with pytest.raises(FileNotFoundError):
        await path_io.chmod(root / "missing", 0o600)


async def test_memory_new_nodes_get_default_modes() -> None:
    """A new memory file is 0644 and a new directory 0755 until chmod changes them."""
    path_io = MemoryPathIO.from_files({"/f": b"x", "/d/": None})
    assert stat.S_IMODE((await path_io.stat(PurePosixPath("/f"))).st_mode) == 0o644
    assert stat.S_IMODE((await path_io.stat(PurePosixPath("/d"))).st_mode) == 0o755
    await path_io.chmod(PurePosixPath("/f"), 0o4755)
    assert stat.S_IMODE((await path_io.stat(PurePosixPath("/f"))).st_mode) == 0o4755


async def test_chmod_default_is_not_implemented() -> None:
    """A backend without chmod raises NotImplementedError; the guard wraps it in PathIOError."""

    class NoChmod(MemoryPathIO):
        chmod = AbstractPathIO.chmod  # type: ignore[assignment]

    path_io = NoChmod.from_files({"/f": b"x"})
    with pytest.raises(NotImplementedError):
        await path_io.chmod(PurePosixPath("/f"), 0o600)
    with pytest.raises(PathIOError) as info:
        await GuardedPathIO(path_io).chmod(PurePosixPath("/f"), 0o600)
    assert isinstance(info.value.reason, NotImplementedError)


async def test_guard_routes_chmod(backend: Backend) -> None:
    """GuardedPathIO.chmod reaches the backend and translates its OSError (550)."""
    path_io, root = backend
    guarded = GuardedPathIO(path_io, 5)
    await write_file(path_io, root / "f", b"")
    await guarded.chmod(root / "f", 0o640)
    assert stat.S_IMODE((await path_io.stat(root / "f")).st_mode) == 0o640
    with pytest.raises(PathIOError) as info:
        await guarded.chmod(root / "missing", 0o640)
    assert info.value.code == "550"
    assert isinstance(info.value.reason, FileNotFoundError)


async def test_local_set_mtime(tmp_path: Path) -> None:
    """PathIO.set_mtime changes the file's modification time on disk."""
    target = tmp_path / "f"
    target.write_bytes(b"x")
    await PathIO().set_mtime(target, 1_600_000_000.0)
    assert target.stat().st_mtime == 1_600_000_000.0


async def test_guard_answers_a_commands_checks_from_one_stat(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    """exists, is_file and stat of one path cost one worker-thread call until something
    changes or the command ends (forget_stats); a subclass overriding a check keeps its
    own."""
    calls = worker_thread_calls

    class OwnExists(PathIO):
        async def exists(self, path: Path) -> bool:
            return False

    (tmp_path / "f").write_bytes(b"data")
    guarded = GuardedPathIO(PathIO())
    assert await guarded.exists(tmp_path / "f")
    assert await guarded.is_file(tmp_path / "f")
    assert not await guarded.is_dir(tmp_path / "f")
    assert (await guarded.stat(tmp_path / "f")).st_size == 4
    assert not await guarded.exists(tmp_path / "missing")
    assert not await guarded.is_file(tmp_path / "missing")
    assert len(calls) == 2
    await guarded.unlink(tmp_path / "f")  # a change: what was known is forgotten
    assert not await guarded.exists(tmp_path / "f")
    guarded.forget_stats()
    assert not await guarded.exists(tmp_path / "f")
    assert len(calls) == 5  # two stats, the unlink, two stats
    assert not await GuardedPathIO(OwnExists()).exists(tmp_path)


async def test_write_file_creates_replaces_and_appends(backend: Backend) -> None:
    """``write_file``: a whole small upload in one call, "wb" or "ab" only."""
    path_io, root = backend
    await path_io.write_file(root / "f", b"first")
    assert await read_file(path_io, root / "f") == b"first"
    await path_io.write_file(root / "f", b"second")
    await path_io.write_file(root / "f", b"+more", "ab")
    assert await read_file(path_io, root / "f") == b"second+more"
    await path_io.write_file(root / "empty", b"")
    assert await path_io.is_file(root / "empty")
    assert await read_file(path_io, root / "empty") == b""
    for mode in ("rb", "r+b", "xb"):
        with pytest.raises(ValueError, match="write_file"):
            await path_io.write_file(root / "f", b"x", mode)
    assert await read_file(path_io, root / "f") == b"second+more"


async def test_local_write_file_is_one_worker_thread_call(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    await PathIO().write_file(tmp_path / "f", b"data" * 1000)
    assert len(worker_thread_calls) == 1
    assert (tmp_path / "f").read_bytes() == b"data" * 1000


async def test_local_write_file_refuses_a_fifo(tmp_path: Path) -> None:
    """Opened as every upload is (O_NONBLOCK, regular files only): a FIFO never holds
    the thread."""
    os.mkfifo(tmp_path / "fifo")
    with trio.fail_after(5), pytest.raises(PermissionDenied):
        await PathIO().write_file(tmp_path / "fifo", b"x")


async def test_write_file_goes_through_a_subclass_s_file_methods(
    tmp_path: Path, worker_thread_calls: list[object]
) -> None:
    """A PathIO subclass that overrides write (a quota, a log) still sees every byte."""
    seen: list[bytes] = []

    class Counting(PathIO):
        async def write(self, file: Any, data: bytes) -> int:
            seen.append(data)
            return await super().write(file, data)

    await Counting().write_file(tmp_path / "f", b"counted")
    assert seen == [b"counted"]
    assert (tmp_path / "f").read_bytes() == b"counted"
    assert len(worker_thread_calls) == 3  # open, write, close: the subclass's way


async def test_guarded_write_file_forgets_stats_and_translates_errors(tmp_path: Path) -> None:
    guarded = GuardedPathIO(PathIO(), timeout=5)
    assert not await guarded.exists(tmp_path / "f")
    await guarded.write_file(tmp_path / "f", b"x")
    assert await guarded.exists(tmp_path / "f")  # not the remembered "absent"
    with pytest.raises(PathIOError):
        await guarded.write_file(tmp_path / "missing" / "f", b"x")
