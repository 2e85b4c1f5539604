"""The local-disk backend, :class:`PathIO`: blocking calls run in trio worker threads,
unless the kernel can answer them without waiting.

Which calls may be tried on the event loop, and where, is decided in one place,
:mod:`._onloop` (cached lookups, page-cache reads, seeks and closes of files opened for
reading, only on ext2/3/4, XFS, Btrfs and tmpfs, switched off by ``event_loop_calls``).
Writes, creations, renames, removals and listings always go to a thread. Every open uses
``O_NONBLOCK`` and refuses anything but a regular file, so a FIFO, socket or device never
holds the loop or a thread.

``path_timeout`` (through :class:`~trio_ftp.pathio.GuardedPathIO`) bounds how long a
session waits for each call that changes nothing: a lookup, listing, read or close that
takes longer is abandoned, the session gets ``451`` and goes on. What it cannot do is
stop the worker thread, which stays in the kernel (a read on a hung NFS mount) until the
call returns, holding its descriptor (see :class:`_ReadFile`) and one token of trio's
default thread limiter (40): enough such threads, and every call that needs a thread
waits (and answers ``451`` after ``path_timeout``), while event-loop calls go on.

Never abandoned, so not cut short by ``path_timeout``: a call that changes the file system
(a write, creation, removal, rename, ``chmod``, ``utime``), since reporting failure for
an operation that may still complete would lie; an open, whose descriptor would be lost;
a ``seek`` made in a thread. The session waits for such a call however long it takes (a
write to a hung NFS mount: for ever), and the call reports its own result, not a
timeout. Before a transfer opens a file its handler looks the path up, and that lookup,
abandoned, is what meets a mount that already hangs.

Separate because it is the only backend that touches the real file system.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import io
import os
import stat as stat_module
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import trio

from ..errors import PermissionDenied
from . import _beneath, _onloop
from ._base import (
    AbstractPathIO,
    AsyncFile,
    _check_mode,
    _check_relative,
    _check_write_file_mode,
    _Lister,
)
from ._beneath import O_PATH, Confined, is_within

T = TypeVar("T")

#: ``os.open`` flags of each open mode, as :func:`open` would use them.
_OPEN_FLAGS = {
    "rb": os.O_RDONLY,
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+b": os.O_RDWR,
    "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}
_BUFFERED: dict[str, Callable[[io.FileIO], io.BufferedIOBase]] = {
    "wb": io.BufferedWriter,
    "ab": io.BufferedWriter,
    "r+b": io.BufferedRandom,
    "xb": io.BufferedWriter,
}
#: The methods :meth:`PathIO.write_file` stands in for: a subclass overriding one of them
#: gets the default write_file, through them.
_FILE_METHODS = ("_open", "write", "close", "discard")
#: errno values for which ``exists``/``is_dir``/``is_file`` answer False (as pathlib does).
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})

Entries = builtins.list[tuple[str, os.stat_result]]


class _ReadFile(io.FileIO):
    """A file opened for reading beneath a root, unbuffered (the server reads large
    blocks); ``nowait``: it is on the root's (local) file system, so its reads may be tried
    with ``RWF_NOWAIT`` on the event loop, and its close made there."""

    nowait = False
    on_root_file_system = False
    #: Reused by every RWF_NOWAIT read of this file: a fresh megabyte per read would be
    #: zeroed (and often page-faulted) only to be overwritten.
    buffer = bytearray()
    #: A worker thread is reading (maybe abandoned by a cancelled caller, still in the
    #: kernel): closing now would free the descriptor number under it, and the next open
    #: could reuse it, so the thread would read another file. ``close_pending``: the thread
    #: closes the file when its read returns. Both under ``guard``.
    reading = False
    close_pending = False
    closing = False
    guard = threading.Lock()  # replaced by one per file in _open

    def begin_read(self) -> bool:
        """In the thread, before reading: False if a close already began (nothing to
        read for: the caller was cancelled)."""
        with self.guard:
            if self.closing:
                return False
            self.reading = True
            return True

    def end_read(self) -> None:
        """The thread's read returned: close now if a close came meanwhile."""
        with self.guard:
            self.reading = False
            close_now = self.close_pending
        if close_now:
            self.close()

    def close_unless_reading(self) -> bool:
        """Hand the close to the reading thread if there is one (True: nothing left to
        do here)."""
        with self.guard:
            if self.reading:
                self.close_pending = True
                return True
            self.closing = True  # a thread starting now will not read
        return False


def _thread_read(file: _ReadFile, size: int) -> bytes:
    """A worker thread's read of ``file``, which it may close afterwards (see
    :attr:`_ReadFile.reading`). A close that came first is ``EBADF``, never an end of file
    (which would pass for the whole file)."""
    if not file.begin_read():
        raise OSError(errno.EBADF, "read of a closed file")
    try:
        return file.read(size) or b""
    finally:
        file.end_read()


async def _in_thread(fn: Callable[[], T], *, read_only: bool) -> T:
    # Only calls that change nothing may be abandoned on cancel: abandoning a write, mkdir or
    # rename would report failure for an operation that still completes in the background.
    # An abandoned call still closes its own descriptors (every helper closes in finally).
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=read_only)


# synchronous helpers, run in a worker thread ---------------------------------------------------
# ``where`` is the path's root and the path relative to it when the path is confined and
# openat2 works, else None (then the plain path is used, as before confinement at use time).


@contextlib.contextmanager
def _opened(where: Confined, flags: int, mode: int = 0, *, cached: bool = False) -> Iterator[int]:
    """A descriptor of ``where`` resolved beneath its root, closed on the way out.
    ``cached``: from the dentry cache only, else BlockingIOError."""
    with _beneath.Root(where.root, cached=cached) as root:
        fd = root.open(where.relative, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _at(path: str, where: Confined | None) -> Iterator[tuple[int | None, str]]:
    """``(dir_fd, name)`` for an operation on a name: the confined parent and the final
    component (never followed), or ``(None, path)`` for a plain path."""
    if where is None:
        yield None, path
        return
    parent, name = where.split()
    with _opened(parent, O_PATH | os.O_DIRECTORY) as dir_fd:
        yield dir_fd, name


def _stat(path: str, where: Confined | None, cached: bool = False) -> os.stat_result:
    if where is None:
        return os.stat(path)
    with _opened(where, O_PATH, cached=cached) as fd:
        return os.stat(fd)


def _probe(
    path: str, where: Confined | None, test: Callable[[int], bool], cached: bool = False
) -> bool:
    """``test(st_mode)``, or False when the path is absent (like pathlib's ``exists``)."""
    try:
        return test(_stat(path, where, cached).st_mode)
    except OSError as exc:
        if exc.errno in _ABSENT:
            return False
        raise


def _exists(mode: int) -> bool:
    return True


def _mkdir(path: str, where: Confined | None, parents: bool, exist_ok: bool) -> None:
    # Mirrors pathlib.Path.mkdir (so the errors are the same), one name at a time.
    try:
        try:
            with _at(path, where) as (dir_fd, name):
                os.mkdir(name, 0o777, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.EBUSY and where is not None and where.relative == ".":
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
            raise
    except FileNotFoundError:
        parent = os.path.dirname(path) or "."
        if not parents or parent == path:
            raise
        parent_where = None if where is None else where.split()[0]
        _mkdir(parent, parent_where, parents=True, exist_ok=True)
        _mkdir(path, where, parents=False, exist_ok=exist_ok)
    except OSError:
        if not exist_ok or not _probe(path, where, stat_module.S_ISDIR):
            raise


def _rmdir(path: str, where: Confined | None) -> None:
    with _at(path, where) as (dir_fd, name):
        os.rmdir(name, dir_fd=dir_fd)


def _unlink(path: str, where: Confined | None) -> None:
    with _at(path, where) as (dir_fd, name):
        os.unlink(name, dir_fd=dir_fd)


def _rename(
    source: str, source_where: Confined | None, destination: str, target_where: Confined | None
) -> None:
    if target_where is not None:
        _refuse_escaping_name(target_where)
    with (
        _at(source, source_where) as (source_fd, source_name),
        _at(destination, target_where) as (target_fd, target_name),
    ):
        os.replace(source_name, target_name, src_dir_fd=source_fd, dst_dir_fd=target_fd)


def _refuse_escaping_name(where: Confined) -> None:
    """PermissionDenied if ``where`` names a symlink leading out of the root. Replacing it
    would touch nothing outside, but a name that points outside is refused everywhere."""
    with _beneath.Root(where.root) as root, contextlib.suppress(FileNotFoundError):
        os.close(root.open(where.relative, O_PATH))  # FileNotFoundError: a new name


NOT_A_REGULAR_FILE = "not a regular file"


def _regular_only(fd: int) -> None:
    """Refuse (close ``fd`` and raise PermissionDenied, ``550``) anything but a regular
    file; make a regular file's descriptor blocking again.

    Every open passes ``O_NONBLOCK``, so opening a FIFO, a device or a socket never
    waits (for a peer, a carrier...): neither the event loop (cached opens) nor a worker
    thread can be held by one. The ``fstat`` then turns it away before any byte moves.
    """
    try:
        kind = os.fstat(fd).st_mode
        if stat_module.S_ISDIR(kind):  # as open() says it, for every backend alike
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat_module.S_ISREG(kind):
            raise PermissionDenied(NOT_A_REGULAR_FILE)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise


def _open_fd(open_call: Callable[[int], int], mode: str, *, cached: bool) -> int:
    """``open_call(flags)`` with ``O_NONBLOCK`` (and ``O_NOCTTY``: a terminal never becomes
    the server's controlling one), for regular files only (see :func:`_regular_only`); a
    FIFO or socket with no peer (``ENXIO``) is refused too.

    ``cached`` (on the event loop): a lease (below) raises BlockingIOError, for a thread.
    """
    flags = _OPEN_FLAGS[mode] | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = open_call(flags)
    except BlockingIOError as exc:
        if cached or not O_PATH:  # O_PATH and /proc: Linux, where leases are
            raise
        fd = _open_leased(open_call, flags, exc)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise PermissionDenied(NOT_A_REGULAR_FILE) from None
        raise
    _regular_only(fd)
    return fd


def _open_leased(open_call: Callable[[int], int], flags: int, blocked: BlockingIOError) -> int:
    """Open, waiting as a plain ``open`` would, a regular file whose ``O_NONBLOCK`` open
    answered ``EWOULDBLOCK``: another process holds a lease on it (``F_SETLEASE``; the
    kernel NFS server's delegations, Samba's oplocks), and the kernel has begun breaking
    it. Only a regular file is waited for: the name is opened ``O_PATH`` (no driver, no
    FIFO peer involved), checked, and that very inode opened again through
    ``/proc/self/fd`` without ``O_NONBLOCK``, so nothing swapped in meanwhile is opened.
    The wait is the kernel's ``lease-break-time`` at most (45 s by default)."""
    path_fd = open_call(O_PATH)
    try:
        if not stat_module.S_ISREG(os.fstat(path_fd).st_mode):
            raise PermissionDenied(NOT_A_REGULAR_FILE)
        again = flags & ~(os.O_NONBLOCK | os.O_CREAT | os.O_EXCL) | os.O_CLOEXEC
        try:
            return os.open(f"/proc/self/fd/{path_fd}", again)
        except FileNotFoundError:  # no /proc here: report the lease as it was
            raise blocked from None
    finally:
        os.close(path_fd)


def _open(
    path: str, where: Confined | None, mode: str, cached: bool = False
) -> io.BufferedIOBase | _ReadFile:
    if where is None:
        fd = _open_fd(lambda flags: os.open(path, flags | os.O_CLOEXEC, 0o666), mode, cached=False)
        return _file_of(fd, path, mode, on_root_file_system=False)
    with _beneath.Root(where.root, cached=cached) as root:
        fd = _open_fd(lambda flags: root.open(where.relative, flags, 0o666), mode, cached=cached)
        try:
            # Is a file opened for reading on the root's own file system? A cached open
            # cannot cross a mount point; one from a thread can, onto NFS or FUSE, whose
            # files stay in threads.
            same_fs = mode == "rb" and (cached or os.fstat(fd).st_dev == os.fstat(root.fd).st_dev)
        except BaseException:
            os.close(fd)
            raise
    return _file_of(fd, path, mode, on_root_file_system=same_fs)


def _write_file(path: str, where: Confined | None, mode: str, data: bytes) -> None:
    """Open (a regular file only, confined, as :func:`_open`), write all, close."""
    with _open(path, where, mode) as file:
        file.write(data)


def _file_of(
    fd: int, path: str, mode: str, *, on_root_file_system: bool
) -> io.BufferedIOBase | _ReadFile:
    """The file object for an open descriptor: unbuffered :class:`_ReadFile` for reading,
    buffered otherwise; named as ``open(path)`` would name it (repr, errors)."""
    try:
        raw = _ReadFile(fd, mode) if mode == "rb" else io.FileIO(fd, mode)
    except BaseException:
        os.close(fd)  # FileIO owns the descriptor only once it is made
        raise
    raw.name = path
    if isinstance(raw, _ReadFile):
        raw.guard = threading.Lock()
        raw.on_root_file_system = on_root_file_system
        return raw
    return _BUFFERED[mode](raw)


def _chmod(path: str, where: Confined | None, mode: int) -> None:
    if where is None:
        os.chmod(path, mode)
        return
    with _opened(where, O_PATH) as fd:  # follows a final symlink, beneath the root
        os.chmod(f"/proc/self/fd/{fd}", mode)


def _set_mtime(path: str, where: Confined | None, mtime: float) -> None:
    if where is None:
        os.utime(path, (os.stat(path).st_atime, mtime))
        return
    with _opened(where, O_PATH) as fd:
        os.utime(f"/proc/self/fd/{fd}", (os.stat(fd).st_atime, mtime))


def _names(path: str, where: Confined | None) -> builtins.list[str]:
    if where is None:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries)
    with _opened(where, os.O_RDONLY | os.O_DIRECTORY) as fd, os.scandir(fd) as entries:
        return sorted(entry.name for entry in entries)


def _link_stat(
    where: Confined | None, dir_fd: int, name: str, link: os.stat_result
) -> os.stat_result:
    """The stat of a symlink's target, or ``link`` (its own lstat) when it dangles or,
    confined, points outside the root: the listing shows the link, nothing of the outside."""
    try:
        if where is None:
            return os.stat(name, dir_fd=dir_fd)
        with _opened(where.child(name), O_PATH) as fd:
            return os.stat(fd)
    except PermissionDenied:
        return link
    except OSError as exc:
        if exc.errno not in _ABSENT:
            raise
        return link


def _entries(path: str, where: Confined | None) -> Entries:
    """Every child's name with its stat, sorted by name; an entry that vanished between
    the listing and its stat is left out."""
    # listdir, then one fstatat per name relative to the directory's descriptor; the lstat
    # tells symlinks apart, so only they cost more. Written for speed: 10,000 entries are
    # 10,000 syscalls, and the Python around them should not cost as much again.
    if where is None:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        with _beneath.Root(where.root) as root:
            dir_fd = root.open(where.relative, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = os.listdir(dir_fd)
        names.sort()
        lstat = os.lstat  # a plain call in a comprehension: the fastest form measured
        try:
            stats = [lstat(name, dir_fd=dir_fd) for name in names]
        except FileNotFoundError:  # something vanished meanwhile: go the careful way
            names, stats = _surviving(names, functools.partial(lstat, dir_fd=dir_fd))
        is_link = stat_module.S_ISLNK
        for index, info in enumerate(stats):
            if is_link(info.st_mode):
                stats[index] = _link_stat(where, dir_fd, names[index], info)
        return list(zip(names, stats, strict=True))
    finally:
        os.close(dir_fd)


def _surviving(
    names: builtins.list[str], lstat: Callable[[str], os.stat_result]
) -> tuple[builtins.list[str], builtins.list[os.stat_result]]:
    """The names that still exist, and their lstat results."""
    kept: builtins.list[str] = []
    stats: builtins.list[os.stat_result] = []
    for name in names:
        try:
            stats.append(lstat(name))
        except FileNotFoundError:
            continue
        kept.append(name)
    return kept, stats


# the backend -----------------------------------------------------------------------------------
class PathIO(AbstractPathIO[Path]):
    """The local file system. Every call that may wait runs in a worker thread; a few
    that the kernel answers at once from its caches may run on the event loop (see
    :mod:`._onloop`; ``event_loop_calls=False`` turns that off).

    Confinement is enforced twice. :meth:`confine` resolves symlinks and refuses a path
    whose real path leaves the user's root, and remembers that root. Then every operation
    on a path under a remembered root resolves it again, in the same worker-thread call,
    with Linux ``openat2(RESOLVE_BENEATH)`` relative to the root (see ``_beneath``): a
    directory swapped for a symlink after the check cannot lead outside, the operation
    raises :class:`~trio_ftp.errors.PermissionDenied` instead.

    Paths under no root :meth:`confine` has seen are used as plain paths (direct library
    use). Where ``openat2`` is unavailable (kernels before 5.6, seccomp, other systems)
    only the check in :meth:`confine` remains, which a local user able to swap directories
    for symlinks between check and use can race.

    With nested roots (one instance confining to ``/srv`` and to ``/srv/b``), a path is
    held beneath the innermost root that contains it: never looser than its own root.
    """

    consistent_stat = True
    #: Try cached calls on the event loop (see the module docstring) where the root's file
    #: system is known safe for it; False (a subclass attribute, or the keyword) sends
    #: every file-system call to a worker thread.
    event_loop_calls = True

    def __init__(
        self,
        timeout: float | None = None,
        connection: object | None = None,
        state: object | None = None,
        *,
        event_loop_calls: bool | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connection=connection, state=state)
        if event_loop_calls is not None:
            self.event_loop_calls = event_loop_calls
        # (parts, path) of each root confine() checked against, longest first
        self._roots: builtins.list[tuple[tuple[str, ...], str]] = []

    def _inherits(self, *names: str) -> bool:
        """None of the methods ``names`` is overridden by a subclass (whose own must run,
        so a shortcut that stands in for them is not taken)."""
        return all(getattr(type(self), name) is getattr(PathIO, name) for name in names)

    def _where(self, path: Path | str) -> tuple[str, Confined | None]:
        """The path as a string and, when it is under a known root and openat2 works, its
        root and the path relative to the root."""
        path = Path(path)
        if not self._roots or not _beneath.supported():
            return str(path), None
        absolute = path if path.is_absolute() else path.absolute()
        parts = absolute.parts
        for root_parts, root in self._roots:
            if parts[: len(root_parts)] == root_parts:
                return str(path), Confined(root, "/".join(parts[len(root_parts) :]) or ".")
        return str(path), None

    async def _cached_first(
        self, where: Confined | None, call: Callable[[bool], T], *, read_only: bool
    ) -> T:
        """``call(True)`` (cached lookups only) on the event loop when ``where`` is beneath
        a root on a local file system; if that would wait, or elsewhere, ``call(False)`` in
        a worker thread."""
        if where is not None and self._on_loop(where.root):
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return call(True)
            except BlockingIOError:
                pass
        return await _in_thread(functools.partial(call, False), read_only=read_only)

    def _on_loop(self, root: str) -> bool:
        """The one policy: calls beneath ``root`` may be tried on the event loop only when
        this backend allows it and ``root`` is on a file system known safe for it."""
        return _onloop.allowed(self.event_loop_calls, root)

    async def _classify_root(self, root: str) -> None:
        """Find out once per root whether cached calls may run on the loop (see
        ``_onloop.classify_root``); the check itself may wait, so it runs in a thread."""
        if _onloop.known(root):
            return
        safe = await _in_thread(functools.partial(_onloop.classify_root, root), read_only=True)
        _onloop.remember(root, safe)

    def _remember(self, base_path: Path) -> str:
        """Hold later paths under ``base_path`` beneath it; the root as :class:`Confined`
        names it."""
        absolute = base_path if base_path.is_absolute() else base_path.absolute()
        entry = (absolute.parts, str(absolute))
        if entry not in self._roots:
            self._roots.append(entry)
            self._roots.sort(key=lambda item: len(item[0]), reverse=True)
        return entry[1]

    async def exists(self, path: Path) -> bool:
        target, where = self._where(path)
        test = functools.partial(_probe, target, where, _exists)
        return await self._cached_first(where, test, read_only=True)

    async def is_dir(self, path: Path) -> bool:
        target, where = self._where(path)
        test = functools.partial(_probe, target, where, stat_module.S_ISDIR)
        return await self._cached_first(where, test, read_only=True)

    async def is_file(self, path: Path) -> bool:
        target, where = self._where(path)
        test = functools.partial(_probe, target, where, stat_module.S_ISREG)
        return await self._cached_first(where, test, read_only=True)

    async def mkdir(self, path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
        target, where = self._where(path)
        mkdir = functools.partial(_mkdir, target, where, parents, exist_ok)
        await _in_thread(mkdir, read_only=False)

    async def rmdir(self, path: Path) -> None:
        await _in_thread(functools.partial(_rmdir, *self._where(path)), read_only=False)

    async def unlink(self, path: Path) -> None:
        await _in_thread(functools.partial(_unlink, *self._where(path)), read_only=False)

    def list(self, path: Path) -> AsyncIterator[Path]:
        path = Path(path)
        target, where = self._where(path)

        def run() -> builtins.list[Path]:
            return [path / name for name in _names(target, where)]

        async def fetch() -> builtins.list[Path]:
            return await _in_thread(run, read_only=True)

        return _Lister(fetch)

    async def names_with_stats(self, path: Path) -> builtins.list[tuple[str, os.stat_result]]:
        """Every child's name with its stat, in one worker-thread call.

        A symlink shows its target's stat; a dangling one, or (confined) one pointing
        outside the user's root, its own ``lstat``. An entry removed while listing is
        skipped.
        """
        entries = functools.partial(_entries, *self._where(Path(path)))
        return await _in_thread(entries, read_only=True)

    async def stat(self, path: Path) -> os.stat_result:
        target, where = self._where(path)
        return await self._cached_first(
            where, functools.partial(_stat, target, where), read_only=True
        )

    async def _open(self, path: Path, mode: str) -> io.BufferedIOBase | _ReadFile:
        _check_mode(mode)
        target, where = self._where(path)
        if mode != "rb":
            return await _in_thread(functools.partial(_open, target, where, mode), read_only=False)
        file = await self._cached_first(
            where, functools.partial(_open, target, where, mode), read_only=False
        )
        if isinstance(file, _ReadFile) and where is not None:
            file.nowait = (
                bool(_onloop.RWF_NOWAIT) and file.on_root_file_system and self._on_loop(where.root)
            )
        return file

    async def write_file(self, path: Path, data: bytes, mode: str = "wb") -> None:
        """Open, write and close in one worker-thread call (not abandoned: it writes),
        unless a subclass has its own open, write, close or discard, which must run."""
        if not self._inherits(*_FILE_METHODS):
            await super().write_file(path, data, mode)
            return
        _check_write_file_mode(mode)
        target, where = self._where(path)
        write = functools.partial(_write_file, target, where, mode, data)
        await _in_thread(write, read_only=False)

    async def seek(
        self, file: io.BufferedIOBase | _ReadFile, offset: int, whence: int = os.SEEK_SET
    ) -> int:
        if isinstance(file, _ReadFile) and file.nowait:  # lseek: no disk access
            await trio.lowlevel.checkpoint_if_cancelled()
            return file.seek(offset, whence)
        return await _in_thread(functools.partial(file.seek, offset, whence), read_only=False)

    async def write(self, file: io.BufferedIOBase | _ReadFile, data: bytes) -> int:
        return await _in_thread(functools.partial(file.write, data), read_only=False)

    async def read(self, file: io.BufferedIOBase | _ReadFile, block_size: int) -> bytes:
        if isinstance(file, _ReadFile) and file.nowait and block_size > 0:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return _onloop.read_nowait(file, block_size)
            except BlockingIOError:
                pass  # not in the page cache: read from the disk in a thread
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                file.nowait = False  # this file system has no RWF_NOWAIT
        if not isinstance(file, _ReadFile):  # not abandoned: nothing tracks its descriptor
            data = await _in_thread(functools.partial(file.read, block_size), read_only=False)
            return data if data is not None else b""
        # Abandoned on cancel (a read stuck on a slow disk must not hold the session), so
        # the file knows a thread still uses its descriptor: close() leaves it to that thread.
        read = functools.partial(_thread_read, file, block_size)
        return await _in_thread(read, read_only=True)

    async def close(self, file: io.BufferedIOBase | _ReadFile) -> None:
        """Close the file; abandoned on cancel (the thread still closes it). A file a
        worker thread is still reading is closed by that thread when its read returns,
        never under it."""
        if isinstance(file, _ReadFile):
            if file.close_unless_reading():
                await trio.lowlevel.checkpoint()
                return
            if file.nowait:
                try:
                    _onloop.close_nowait(file)
                    await trio.lowlevel.checkpoint()  # close is shielded: no cancellation here
                    return
                except BlockingIOError:
                    pass
        await _in_thread(file.close, read_only=True)

    def close_now(self, file: io.BufferedIOBase | _ReadFile) -> bool:
        """Close a file read from the page cache right here (see :meth:`close`); not in a
        subclass that has its own :meth:`close`, which must run."""
        if not self._inherits("close") or not isinstance(file, _ReadFile):
            return False
        if not file.nowait or file.close_unless_reading():
            return False
        try:
            _onloop.close_nowait(file)
        except BlockingIOError:
            return False
        return True

    def native_fd(self, file: AsyncFile) -> int | None:
        """The descriptor of an open local file (for ``os.sendfile``/``os.splice``).

        It shares the file's position and sits below its buffer: use it right after the
        open or a :meth:`~AsyncFile.seek`, not mixed with buffered reads or writes.
        """
        inner: Any = file._file
        if file.closed or not isinstance(inner, (io.BufferedIOBase, io.FileIO)):
            return None
        try:
            return int(inner.fileno())
        except (OSError, ValueError):  # detached, closed or not backed by a descriptor
            return None

    async def rename(self, source: Path, destination: Path) -> Path:
        destination = Path(destination)
        rename = functools.partial(_rename, *self._where(source), *self._where(destination))
        await _in_thread(rename, read_only=False)
        return destination

    async def chmod(self, path: Path, mode: int) -> None:
        """:func:`os.chmod` in a worker thread. A symlink is followed, beneath the root."""
        chmod = functools.partial(_chmod, *self._where(path), mode & 0o7777)
        await _in_thread(chmod, read_only=False)

    async def set_mtime(self, path: Path, mtime: float) -> None:
        """:func:`os.utime` in a worker thread (the access time is left as it was)."""
        utime = functools.partial(_set_mtime, *self._where(path), mtime)
        await _in_thread(utime, read_only=False)

    async def confine(self, base_path: Path, relative: PurePosixPath) -> Path:
        """Join, then refuse the result if its real path is not ``base_path`` or inside it.

        Symlinks are resolved (also dangling ones, and ones in parent components), so a
        link that points outside the user's root is refused: here where ``openat2`` is
        missing, else by the operation that uses the path. ``base_path`` is remembered:
        later operations on paths under it are held beneath it when they run (a relative
        ``base_path`` is taken from the current working directory of this moment).

        Raises:
            ValueError: ``relative`` is absolute or contains ``..``.
            trio_ftp.errors.PermissionDenied: the real path is outside the user's root.
        """
        base_path = Path(base_path)
        joined = base_path / _check_relative(relative)
        if _beneath.supported():
            # Every operation resolves the path again beneath the root, in the kernel, at
            # the moment of use (a path leaving it raises PermissionDenied there): a check
            # here would cost a worker-thread call and prove nothing lasting.
            root = self._remember(base_path)
            if self.event_loop_calls:
                await self._classify_root(root)
            await trio.lowlevel.checkpoint_if_cancelled()  # every command's: no extra trip
            return joined

        def check() -> bool:
            return is_within(os.path.realpath(joined), os.path.realpath(base_path))

        if not await _in_thread(check, read_only=True):
            raise PermissionDenied(_beneath.OUTSIDE)
        self._remember(base_path)
        return joined
