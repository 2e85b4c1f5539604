"""PathIO confinement at the moment of use (openat2), names_with_stats and native_fd."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trio

from trio_ftp.errors import PathIOError, PermissionDenied
from trio_ftp.pathio import AbstractPathIO, GuardedPathIO, MemoryPathIO, PathIO, _beneath, _onloop

needs_openat2 = pytest.mark.skipif(
    not _beneath.supported(), reason="openat2 confinement is not available here"
)

Op = Callable[[AbstractPathIO[Any], Path], Awaitable[object]]


# helpers and fixtures --------------------------------------------------------------------------
@pytest.fixture
def jail(tmp_path: Path) -> Path:
    """``tmp_path/root`` (file, dir/inner, dir/sub/), next to ``tmp_path/outside``."""
    root = tmp_path / "root"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "file").write_bytes(b"inside")
    (root / "dir" / "inner").write_bytes(b"inner")
    (root / "dir" / "victim").write_bytes(b"inside victim")
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "sub").mkdir()
    (outside / "secret").write_bytes(b"secret")
    (outside / "victim").write_bytes(b"secret victim")
    os.chmod(outside / "secret", 0o640)
    os.utime(outside / "secret", (1_000_000_000, 1_000_000_000))
    return root


@pytest.fixture(params=["openat2", "openat2-threads", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with openat2 confinement (cached calls tried on the event loop first, see
    ``_local``), with openat2 in worker threads only, and in the realpath-only fallback."""
    monkeypatch.setattr(_onloop, "_classified", {})
    if request.param.startswith("openat2"):
        if not _beneath.supported():
            pytest.skip("openat2 confinement is not available here")
        if request.param == "openat2-threads":
            monkeypatch.setattr(_onloop, "classify_root", lambda path: False)
    else:
        monkeypatch.setattr(_beneath, "supported", lambda: False)
    return str(request.param)


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    """Forget the cached probe before and after the test."""
    _beneath.supported.cache_clear()
    _beneath._libc_syscall.cache_clear()
    yield
    _beneath.supported.cache_clear()
    _beneath._libc_syscall.cache_clear()


def snapshot(directory: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``directory`` with its content, mode and mtime."""
    result: dict[str, tuple[Any, ...]] = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        result[str(path.relative_to(directory))] = (content, info.st_mode, info.st_mtime_ns)
    return result


def open_fds() -> set[int]:
    """File descriptors open in this process."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def confined(path_io: AbstractPathIO[Any], root: Path) -> Path:
    """Confine the root itself, so ``path_io`` holds paths under it beneath it."""
    result = await path_io.confine(root, PurePosixPath("."))
    assert result == root
    return root


async def read(path_io: AbstractPathIO[Any], path: Any) -> bytes:
    async with path_io.open(path) as file:
        return await file.read()


async def write(path_io: AbstractPathIO[Any], path: Any, data: bytes, mode: str = "wb") -> None:
    async with path_io.open(path, mode=mode) as file:
        await file.write(data)


async def listing(path_io: AbstractPathIO[Any], path: Any) -> list[str]:
    return [child.name async for child in path_io.list(path)]


def facts(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns)


# symlinks that stay inside ---------------------------------------------------------------------
async def test_relative_symlinks_inside_the_root_work(jail: Path, mode: str) -> None:
    """Relative links to a file, a dir and '..' (staying inside) work for every operation."""
    (jail / "link_file").symlink_to("file")
    (jail / "link_dir").symlink_to("dir")
    (jail / "dir" / "up").symlink_to("..")
    path_io = PathIO()
    await confined(path_io, jail)
    assert await read(path_io, jail / "link_file") == b"inside"
    assert await read(path_io, jail / "dir" / "up" / "file") == b"inside"
    assert await listing(path_io, jail / "link_dir") == ["inner", "sub", "up", "victim"]
    assert (await path_io.stat(jail / "link_file")).st_size == len(b"inside")
    assert await path_io.is_file(jail / "link_file")
    assert await path_io.is_dir(jail / "link_dir")
    entries = await path_io.names_with_stats(jail / "link_dir")
    assert [name for name, _ in entries] == ["inner", "sub", "up", "victim"]
    assert stat.S_ISDIR(entries[2][1].st_mode)  # "up" shows its target, the root
    await write(path_io, jail / "link_dir" / "new", b"new")
    assert (jail / "dir" / "new").read_bytes() == b"new"
    await path_io.mkdir(jail / "link_dir" / "made")
    await path_io.rename(jail / "link_dir" / "new", jail / "dir" / "up" / "moved")
    assert (jail / "moved").read_bytes() == b"new"
    await path_io.unlink(jail / "dir" / "up" / "moved")
    await path_io.rmdir(jail / "link_dir" / "made")
    await path_io.chmod(jail / "link_file", 0o600)
    assert stat.S_IMODE((jail / "file").stat().st_mode) == 0o600
    await path_io.set_mtime(jail / "link_file", 1_500_000_000.0)
    assert (jail / "file").stat().st_mtime == 1_500_000_000.0


async def test_absolute_symlinks_inside_the_root_still_work(jail: Path, mode: str) -> None:
    """Absolute links pointing inside the root (which RESOLVE_BENEATH alone refuses) work."""
    (jail / "abs_file").symlink_to(jail / "file")
    (jail / "abs_dir").symlink_to(jail / "dir")
    (jail / "dir" / "abs_root").symlink_to(jail)
    path_io = PathIO()
    assert await path_io.confine(jail, PurePosixPath("abs_dir/inner")) == jail / "abs_dir/inner"
    assert await read(path_io, jail / "abs_file") == b"inside"
    assert await read(path_io, jail / "abs_dir" / "abs_root" / "file") == b"inside"
    assert (await path_io.stat(jail / "abs_file")).st_size == len(b"inside")
    assert await path_io.exists(jail / "abs_dir" / "inner")
    assert await listing(path_io, jail / "abs_dir") == ["abs_root", "inner", "sub", "victim"]
    entries = dict(await path_io.names_with_stats(jail))
    assert stat.S_ISREG(entries["abs_file"].st_mode)
    assert stat.S_ISDIR(entries["abs_dir"].st_mode)
    await write(path_io, jail / "abs_dir" / "new", b"new")
    await write(path_io, jail / "abs_file", b"+", mode="ab")
    assert (jail / "file").read_bytes() == b"inside+"
    await path_io.mkdir(jail / "abs_dir" / "made" / "deeper", parents=True)
    await path_io.rename(jail / "abs_dir" / "new", jail / "abs_dir" / "made" / "new")
    await path_io.unlink(jail / "abs_dir" / "made" / "new")
    await path_io.rmdir(jail / "abs_dir" / "made" / "deeper")
    await path_io.chmod(jail / "abs_file", 0o604)
    assert stat.S_IMODE((jail / "file").stat().st_mode) == 0o604
    await path_io.set_mtime(jail / "abs_dir", 1_400_000_000.0)
    assert (jail / "dir").stat().st_mtime == 1_400_000_000.0
    assert (jail / "abs_file").is_symlink()


# symlinks that lead outside, present before the operation ---------------------------------------
ESCAPES: list[tuple[str, Op]] = [
    ("open rb", lambda p, r: read(p, r / "out" / "secret")),
    ("open rb of a file link", lambda p, r: read(p, r / "out_file")),
    ("open wb", lambda p, r: write(p, r / "out" / "created", b"pwned")),
    ("open ab of a file link", lambda p, r: write(p, r / "out_file", b"pwned", "ab")),
    ("open wb of a dangling link", lambda p, r: write(p, r / "dangling", b"pwned")),
    ("write_file", lambda p, r: p.write_file(r / "out" / "created", b"pwned")),
    ("write_file ab of a file link", lambda p, r: p.write_file(r / "out_file", b"pwned", "ab")),
    ("write_file of a dangling link", lambda p, r: p.write_file(r / "dangling", b"pwned")),
    ("stat", lambda p, r: p.stat(r / "out_file")),
    ("stat under", lambda p, r: p.stat(r / "out" / "secret")),
    ("exists", lambda p, r: p.exists(r / "out" / "secret")),
    ("is_dir", lambda p, r: p.is_dir(r / "out")),
    ("list", lambda p, r: listing(p, r / "out")),
    ("names_with_stats", lambda p, r: p.names_with_stats(r / "out")),
    ("mkdir under", lambda p, r: p.mkdir(r / "out" / "made")),
    ("mkdir parents", lambda p, r: p.mkdir(r / "out" / "a" / "b", parents=True)),
    ("unlink through the parent", lambda p, r: p.unlink(r / "out" / "secret")),
    ("rmdir through the parent", lambda p, r: p.rmdir(r / "out" / "dir")),
    ("rename source", lambda p, r: p.rename(r / "out" / "secret", r / "stolen")),
    ("rename destination", lambda p, r: p.rename(r / "file", r / "out" / "planted")),
    ("chmod", lambda p, r: p.chmod(r / "out_file", 0o777)),
    ("chmod under", lambda p, r: p.chmod(r / "out" / "secret", 0o777)),
    ("set_mtime", lambda p, r: p.set_mtime(r / "out_file", 0.0)),
]


@needs_openat2
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
@pytest.mark.parametrize(("name", "operation"), ESCAPES, ids=[name for name, _ in ESCAPES])
async def test_links_out_of_the_root_are_refused_at_use(
    jail: Path, absolute: bool, name: str, operation: Op
) -> None:
    """A path under a confined root that leads outside through a link is refused by the
    operation itself (not only by confine), and nothing outside is read or changed."""
    outside = jail.parent / "outside"
    (jail / "out").symlink_to(outside if absolute else Path("../outside"))
    (jail / "out_file").symlink_to(outside / "secret" if absolute else Path("../outside/secret"))
    (jail / "dangling").symlink_to(outside / "new" if absolute else Path("../outside/new"))
    before = snapshot(outside)
    path_io = PathIO()
    await confined(path_io, jail)
    with pytest.raises(PermissionDenied) as info:
        await operation(path_io, jail)
    assert info.value.code == "550"
    assert snapshot(outside) == before
    assert (jail / "file").read_bytes() == b"inside"
    assert not (jail / "stolen").exists()


async def test_confine_still_refuses_static_escapes(jail: Path, mode: str) -> None:
    """In both modes relative, absolute, dangling and nested escapes are refused (by
    confine without openat2, by the first use with it)."""
    outside = jail.parent / "outside"
    (jail / "rel").symlink_to("../outside")
    (jail / "abs").symlink_to(outside)
    (jail / "dangling").symlink_to(outside / "nothing")
    (jail / "dir" / "up2").symlink_to("../..")
    (jail / "proc").symlink_to("/proc/self/root")
    path_io = PathIO()
    for path in ("rel/secret", "abs", "abs/secret", "dangling", "dir/up2/outside", "proc"):
        with pytest.raises(PermissionDenied):
            await path_io.stat(await path_io.confine(jail, PurePosixPath(path)))
    assert await path_io.confine(jail, PurePosixPath("dir/inner")) == jail / "dir" / "inner"


# the race: a directory swapped for a symlink between confine and use ---------------------------
RACES: list[tuple[str, Op]] = [
    ("open rb", lambda p, r: read(p, r / "dir" / "victim")),
    ("open wb", lambda p, r: write(p, r / "dir" / "victim", b"pwned")),
    ("open ab", lambda p, r: write(p, r / "dir" / "victim", b"pwned", "ab")),
    ("open r+b", lambda p, r: write(p, r / "dir" / "victim", b"pwned", "r+b")),
    ("open wb new", lambda p, r: write(p, r / "dir" / "fresh", b"pwned")),
    ("stat", lambda p, r: p.stat(r / "dir" / "victim")),
    ("is_file", lambda p, r: p.is_file(r / "dir" / "victim")),
    ("list", lambda p, r: listing(p, r / "dir")),
    ("names_with_stats", lambda p, r: p.names_with_stats(r / "dir")),
    ("unlink", lambda p, r: p.unlink(r / "dir" / "victim")),
    ("rmdir", lambda p, r: p.rmdir(r / "dir" / "sub")),
    ("mkdir", lambda p, r: p.mkdir(r / "dir" / "newdir")),
    ("rename source", lambda p, r: p.rename(r / "dir" / "victim", r / "file")),
    ("rename destination", lambda p, r: p.rename(r / "file", r / "dir" / "victim")),
    ("chmod", lambda p, r: p.chmod(r / "dir" / "victim", 0o777)),
    ("set_mtime", lambda p, r: p.set_mtime(r / "dir" / "victim", 0.0)),
]


@needs_openat2
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
@pytest.mark.parametrize(("name", "operation"), RACES, ids=[name for name, _ in RACES])
async def test_a_directory_swapped_after_confine_is_refused(
    jail: Path, absolute: bool, name: str, operation: Op
) -> None:
    """Confine paths, swap 'dir' for a link to outside, then use them through the session's
    GuardedPathIO: PermissionDenied (550, not a PathIOError), and the outside is untouched."""
    outside = jail.parent / "outside"
    path_io = GuardedPathIO(PathIO(), 5)
    for relative in ("dir/victim", "dir/fresh", "dir/sub", "dir/newdir", "dir", "file"):
        await path_io.confine(jail, PurePosixPath(relative))  # all fine before the swap
    (jail / "dir").rename(jail.parent / "moved_away")
    (jail / "dir").symlink_to(outside if absolute else Path("../outside"))
    before = snapshot(outside)
    with pytest.raises(PermissionDenied) as info:
        await operation(path_io, jail)
    assert info.value.code == "550"
    assert snapshot(outside) == before
    assert (jail / "file").read_bytes() == b"inside"


@needs_openat2
async def test_a_concurrent_swapper_never_gets_outside(jail: Path) -> None:
    """A thread flips 'dir' between an inside and an outside target while a confined path
    is read again and again: every read is the inside file or a refusal, never the secret."""
    outside = jail.parent / "outside"
    (jail / "dir").rename(jail / "real")
    (jail / "dir").symlink_to("real")
    path_io = PathIO()
    victim = await path_io.confine(jail, PurePosixPath("dir/victim"))
    stop = threading.Event()

    def swapper() -> None:
        targets = [Path("real"), outside]
        flips = 0
        while not stop.is_set():
            link = jail / f"next{flips % 2}"
            link.symlink_to(targets[flips % 2 == 0])
            os.replace(link, jail / "dir")
            flips += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    seen: set[bytes | str] = set()
    try:
        with trio.fail_after(20):
            for _ in range(300):
                try:
                    seen.add(await read(path_io, victim))
                except PermissionDenied:
                    seen.add("refused")
    finally:
        stop.set()
        thread.join()
    assert seen <= {b"inside victim", "refused"}
    assert (outside / "victim").read_bytes() == b"secret victim"


async def test_fallback_mode_does_not_catch_a_swap(
    jail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents the fallback's limit: without openat2 only confine checks, so a swap after
    the check is followed (the reason openat2 is used where it exists)."""
    monkeypatch.setattr(_beneath, "supported", lambda: False)
    path_io = PathIO()
    victim = await path_io.confine(jail, PurePosixPath("dir/victim"))
    (jail / "dir").rename(jail.parent / "moved_away")
    (jail / "dir").symlink_to("../outside")
    assert await read(path_io, victim) == b"secret victim"


# roots -----------------------------------------------------------------------------------------
@needs_openat2
async def test_the_innermost_root_holds(tmp_path: Path) -> None:
    """With two roots, one inside the other, a path is held beneath the innermost one."""
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    (outer / "sibling").write_bytes(b"sibling")
    path_io = PathIO()
    await path_io.confine(outer, PurePosixPath("."))
    await path_io.confine(inner, PurePosixPath("."))
    (inner / "up").symlink_to("..")
    with pytest.raises(PermissionDenied):
        await read(path_io, inner / "up" / "sibling")
    (outer / "down").symlink_to("inner/..")
    assert await read(path_io, outer / "down" / "sibling") == b"sibling"


async def test_paths_that_were_never_confined_are_plain(jail: Path) -> None:
    """Without confine, PathIO works on any path, links to outside included (library use)."""
    (jail / "out").symlink_to("../outside")
    path_io = PathIO()
    assert await read(path_io, jail / "out" / "secret") == b"secret"
    assert (await path_io.stat(jail / "out")).st_nlink >= 2
    await path_io.confine(jail / "dir", PurePosixPath("."))
    assert await read(path_io, jail / "out" / "secret") == b"secret"  # not under dir


async def test_the_root_itself(jail: Path, mode: str) -> None:
    """The confined root can be listed and stat'ed; removing or renaming it is EBUSY."""
    path_io = PathIO()
    await confined(path_io, jail)
    assert await listing(path_io, jail) == ["dir", "file"]
    assert await path_io.is_dir(jail)
    await path_io.mkdir(jail, exist_ok=True)
    with pytest.raises(FileExistsError):
        await path_io.mkdir(jail)
    if mode.startswith("openat2"):
        for operation in (path_io.rmdir, path_io.unlink):
            with pytest.raises(OSError, match=os.strerror(errno.EBUSY)):
                await operation(jail)
        with pytest.raises(OSError, match=os.strerror(errno.EBUSY)):
            await path_io.rename(jail, jail / "dir" / "x")
    assert (jail / "file").read_bytes() == b"inside"  # the root is still there


# the probe and the fallback --------------------------------------------------------------------
def fake_syscall(code: int) -> Callable[..., int]:
    def syscall(*args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return syscall


@pytest.mark.usefixtures("fresh_probe")
@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM, errno.EINVAL])
def test_probe_falls_back_when_openat2_is_refused(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """ENOSYS (old kernel), EPERM (seccomp) or EINVAL make the probe answer False, once."""
    calls = []

    def libc_syscall() -> Callable[..., int]:
        calls.append(1)
        return fake_syscall(code)

    monkeypatch.setattr(_beneath, "_libc_syscall", libc_syscall)
    assert not _beneath.supported()
    assert not _beneath.supported()
    assert len(calls) == 2  # probe once: the libc lookup, then the openat2 attempt


@pytest.mark.usefixtures("fresh_probe")
def test_probe_refuses_a_kernel_that_does_not_confine(monkeypatch: pytest.MonkeyPatch) -> None:
    """An 'openat2' that lets '..' out of the directory is not trusted."""

    def lax(number: object, dir_fd: Any, path: Any, how: object, size: object) -> int:
        return os.open(path.value, os.O_PATH | os.O_CLOEXEC, dir_fd=dir_fd.value)

    monkeypatch.setattr(_beneath, "_libc_syscall", lambda: lax)
    fds = open_fds()
    assert not _beneath.supported()
    assert open_fds() == fds


@pytest.mark.usefixtures("fresh_probe")
def test_probe_without_the_syscall(monkeypatch: pytest.MonkeyPatch) -> None:
    """No usable libc syscall (other systems, unknown machines): False, and openat2 is ENOSYS."""
    monkeypatch.setattr(_beneath, "_libc_syscall", lambda: None)
    assert not _beneath.supported()
    with pytest.raises(OSError, match=os.strerror(errno.ENOSYS)):
        _beneath.openat2(0, ".", 0)


@needs_openat2
def test_openat2_refuses_a_nul_byte(tmp_path: Path) -> None:
    """A NUL byte is refused, never silently cut off by C."""
    with _beneath.Root(str(tmp_path)) as root, pytest.raises(ValueError, match="null"):
        root.open("a\0b", os.O_RDONLY)


async def test_fallback_mode_works_on_plain_paths(
    jail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the probe forced to False, a confined PathIO is the plain path backend."""
    monkeypatch.setattr(_beneath, "supported", lambda: False)
    path_io = GuardedPathIO(PathIO(), 5)
    await confined(path_io, jail)
    await write(path_io, jail / "dir" / "new", b"new")
    assert await read(path_io, jail / "dir" / "new") == b"new"
    await path_io.rename(jail / "dir" / "new", jail / "renamed")
    assert [name for name, _ in await path_io.names_with_stats(jail)] == [
        "dir",
        "file",
        "renamed",
    ]
    await path_io.unlink(jail / "renamed")
    with pytest.raises(PathIOError) as info:
        await path_io.stat(jail / "renamed")
    assert info.value.code == "550"


# no descriptor leaks ---------------------------------------------------------------------------
async def test_no_descriptor_leaks(jail: Path, mode: str) -> None:
    """Successes, errors, refusals and EXDEV retries all close every descriptor they open."""
    (jail / "out").symlink_to("../outside")
    (jail / "abs").symlink_to(jail / "dir")
    (jail / "dir" / "dangling").symlink_to("nowhere")
    path_io = PathIO()
    await confined(path_io, jail)
    await path_io.stat(jail)  # warm up the worker thread
    before = open_fds()

    async def attempt(operation: Awaitable[object]) -> None:
        with contextlib.suppress(OSError, PermissionDenied):
            await operation

    for _ in range(3):
        await attempt(read(path_io, jail / "abs" / "inner"))
        await attempt(read(path_io, jail / "dir"))  # IsADirectoryError after the open
        await attempt(read(path_io, jail / "missing"))
        await attempt(read(path_io, jail / "out" / "secret"))
        await attempt(write(path_io, jail / "abs" / "w", b"w"))
        await attempt(path_io.stat(jail / "out"))
        await attempt(path_io.exists(jail / "abs" / "nope"))
        await attempt(path_io.names_with_stats(jail))
        await attempt(path_io.names_with_stats(jail / "abs"))
        await attempt(path_io.names_with_stats(jail / "out"))
        await attempt(listing(path_io, jail / "abs"))
        await attempt(path_io.mkdir(jail / "abs" / "a" / "b", parents=True, exist_ok=True))
        await attempt(path_io.mkdir(jail / "out" / "a"))
        await attempt(path_io.rename(jail / "abs" / "w", jail / "out" / "w"))
        await attempt(path_io.rename(jail / "abs" / "w", jail / "missing" / "w"))
        await attempt(path_io.unlink(jail / "abs" / "missing"))
        await attempt(path_io.rmdir(jail / "dir"))
        await attempt(path_io.chmod(jail / "abs" / "inner", 0o644))
        await attempt(path_io.set_mtime(jail / "out" / "secret", 0.0))
    assert open_fds() == before


# names_with_stats -------------------------------------------------------------------------------
@pytest.fixture(params=["local", "local confined", "memory", "guarded local", "guarded memory"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[AbstractPathIO[Any], Any]:
    """``(path_io, directory)`` holding a few files and a subdirectory."""
    names = ["b.txt", "a.txt", "été", "Z", "sub"]
    if "memory" in request.param:
        path_io: AbstractPathIO[Any] = MemoryPathIO.from_files(
            {f"/d/{name}": name.encode() * 3 for name in names[:-1]} | {"/d/sub/": None}
        )
        directory: Any = PurePosixPath("/d")
    else:
        path_io = PathIO()
        directory = tmp_path / "d"
        (directory / "sub").mkdir(parents=True)
        for name in names[:-1]:
            (directory / name).write_bytes(name.encode() * 3)
        if "confined" in request.param:
            await confined(path_io, tmp_path)
    if "guarded" in request.param:
        path_io = GuardedPathIO(path_io, 5)
    return path_io, directory


async def test_names_with_stats_matches_list_and_stat(
    backend: tuple[AbstractPathIO[Any], Any],
) -> None:
    """names_with_stats gives what list + stat give, sorted by name, for every backend."""
    path_io, directory = backend
    entries = await path_io.names_with_stats(directory)
    expected = [(child, await path_io.stat(child)) async for child in path_io.list(directory)]
    expected.sort(key=lambda item: item[0].name)
    assert [name for name, _ in entries] == [child.name for child, _ in expected]
    assert [name for name, _ in entries] == ["Z", "a.txt", "b.txt", "sub", "été"]
    assert [facts(info) for _, info in entries] == [facts(info) for _, info in expected]


async def test_names_with_stats_errors(backend: tuple[AbstractPathIO[Any], Any]) -> None:
    """A missing directory is FileNotFoundError (550 through the guard), a file ENOTDIR."""
    path_io, directory = backend
    expected: type[Exception] = (
        PathIOError if isinstance(path_io, GuardedPathIO) else FileNotFoundError
    )
    with pytest.raises(expected):
        await path_io.names_with_stats(directory / "missing")
    expected = PathIOError if isinstance(path_io, GuardedPathIO) else NotADirectoryError
    with pytest.raises(expected):
        await path_io.names_with_stats(directory / "a.txt")


async def test_names_with_stats_links(jail: Path, mode: str) -> None:
    """A link shows its target; a dangling one, or (confined) one out of the root, its lstat."""
    (jail / "dir" / "to_file").symlink_to("inner")
    (jail / "dir" / "dangling").symlink_to("nowhere")
    (jail / "dir" / "out").symlink_to(jail.parent / "outside" / "secret")
    path_io = PathIO()
    await confined(path_io, jail)
    entries = dict(await path_io.names_with_stats(jail / "dir"))
    assert list(entries) == ["dangling", "inner", "out", "sub", "to_file", "victim"]
    assert facts(entries["to_file"]) == facts((jail / "dir" / "inner").stat())
    assert facts(entries["dangling"]) == facts((jail / "dir" / "dangling").lstat())
    out = jail / "dir" / "out"
    expected = out.lstat() if mode.startswith("openat2") else out.stat()  # fallback: plain paths
    assert facts(entries["out"]) == facts(expected)


async def test_names_with_stats_skips_vanished_entries(
    jail: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry removed between the directory read and its stat is left out."""
    (jail / "dir" / "gone").write_bytes(b"")
    (jail / "dir" / "gone_link").symlink_to("inner")
    real_listdir = os.listdir

    def listdir_then_remove(path: Any) -> list[str]:
        names = real_listdir(path)
        if "gone" in names:
            (jail / "dir" / "gone").unlink()
            (jail / "dir" / "gone_link").unlink()
        return names

    monkeypatch.setattr(os, "listdir", listdir_then_remove)
    path_io = PathIO()
    await confined(path_io, jail)
    names = [name for name, _ in await path_io.names_with_stats(jail / "dir")]
    assert names == ["inner", "sub", "victim"]


async def test_default_names_with_stats(jail: Path) -> None:
    """The AbstractPathIO default (list, then stat) leaves out dangling links."""

    class Default(PathIO):
        names_with_stats = AbstractPathIO.names_with_stats

    (jail / "dir" / "dangling").symlink_to("nowhere")
    entries = await Default().names_with_stats(jail / "dir")
    assert [name for name, _ in entries] == ["inner", "sub", "victim"]
    assert facts(entries[0][1]) == facts((jail / "dir" / "inner").stat())


# native_fd -------------------------------------------------------------------------------------
async def test_native_fd_of_local_files(jail: Path) -> None:
    """PathIO (plain or guarded) gives the descriptor of the open file; None once closed."""
    for path_io in (PathIO(), GuardedPathIO(PathIO(), 5)):
        await confined(path_io, jail)
        unopened = path_io.open(jail / "file")
        assert path_io.native_fd(unopened) is None
        async with path_io.open(jail / "file") as file:
            fd = path_io.native_fd(file)
            assert isinstance(fd, int)
            assert os.fstat(fd).st_ino == (jail / "file").stat().st_ino
            assert os.pread(fd, 6, 0) == b"inside"
        assert path_io.native_fd(file) is None
        await unopened.close()


async def test_native_fd_of_memory_files() -> None:
    """MemoryPathIO files have no descriptor, guarded or not."""
    for path_io in (MemoryPathIO.from_files({"/f": b"x"}), GuardedPathIO(MemoryPathIO(), 5)):
        async with path_io.open(PurePosixPath("/f"), mode="ab") as file:
            assert path_io.native_fd(file) is None
