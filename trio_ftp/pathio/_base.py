"""Path IO: the file-system backends a session reads and writes through.

The server never touches files directly: every command goes through an
:class:`AbstractPathIO`, so the same server runs on the local disk (:class:`PathIO`, which
keeps blocking calls off the trio event loop by running them in worker threads) or in memory
(:class:`MemoryPathIO`, for tests and throwaway servers). The API follows aioftp's path IO.

:class:`GuardedPathIO` wraps a backend for one session and is the one place where
``path_timeout`` is applied and backend errors become :class:`~trio_ftp.errors.PathIOError`.
:meth:`AbstractPathIO.confine` is the file-system half of confinement (the pure half is
:func:`trio_ftp.paths.resolve_virtual`).
"""

from __future__ import annotations

import abc
import builtins
import errno
import functools
import io
import os
import stat as stat_module
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Generic, ParamSpec, TypeVar

import trio

from .errors import FTPError, PathIOError, PermissionDenied

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "AbstractPathIO",
    "AsyncFile",
    "GuardedPathIO",
    "MemoryPathIO",
    "MemoryTree",
    "PathIO",
]

PathType = TypeVar("PathType", bound=PurePath)
T = TypeVar("T")
P = ParamSpec("P")

#: Block size of :meth:`AsyncFile.iter_by_block` when none is given (aioftp's default).
DEFAULT_BLOCK_SIZE = 8192

#: The binary open modes every backend supports.
OPEN_MODES = frozenset({"rb", "wb", "ab", "r+b"})


def _check_mode(mode: str) -> None:
    if mode not in OPEN_MODES:
        raise ValueError(f"invalid mode {mode!r}: expected one of {sorted(OPEN_MODES)}")


def _check_relative(relative: PurePosixPath) -> PurePosixPath:
    relative = PurePosixPath(relative)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"expected a normalized relative path, got {str(relative)!r}")
    return relative


# files -------------------------------------------------------------------------------------------
class AsyncFile:
    """An open file of a path-IO backend.

    Returned by :meth:`AbstractPathIO.open`; use it either way::

        async with path_io.open(path, mode="wb") as file:
            await file.write(data)

        file = await path_io.open(path)
        try:
            data = await file.read(8192)
        finally:
            await file.close()
    """

    def __init__(self, path_io: AbstractPathIO[Any], path: Any, mode: str) -> None:
        _check_mode(mode)
        self.path_io = path_io
        self.path = path
        self.mode = mode
        self._file: Any = None
        self._opened = False
        self._closed = False

    async def _open(self) -> AsyncFile:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if not self._opened:
            self._file = await self.path_io._open(self.path, self.mode)
            self._opened = True
        return self

    def __await__(self) -> Generator[Any, None, AsyncFile]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncFile:
        return await self._open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _checked(self) -> Any:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if not self._opened:
            raise RuntimeError("file is not open yet: await it or use 'async with'")
        return self._file

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def read(self, count: int = -1) -> bytes:
        """Read up to ``count`` bytes (all that is left when negative); ``b""`` at EOF."""
        return await self.path_io.read(self._checked(), count)

    async def write(self, data: bytes) -> int:
        """Write ``data``; returns the number of bytes written."""
        return await self.path_io.write(self._checked(), data)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position, like :meth:`io.IOBase.seek`; returns the new position."""
        return await self.path_io.seek(self._checked(), offset, whence)

    async def close(self) -> None:
        """Close the file; calling it again does nothing.

        The close is shielded from outer cancellation so an aborted transfer never leaks
        the underlying file.
        """
        if self._closed:
            return
        self._closed = True
        if self._opened:
            with trio.CancelScope(shield=True):
                await self.path_io.close(self._file)

    def iter_by_block(self, count: int = DEFAULT_BLOCK_SIZE) -> AsyncIterator[bytes]:
        """Iterate over the rest of the file, ``count`` bytes at a time, until EOF."""
        if count <= 0:
            raise ValueError(f"block size must be positive, got {count}")
        return _BlockIterator(self, count)


class _BlockIterator:
    def __init__(self, file: AsyncFile, count: int) -> None:
        self._file = file
        self._count = count

    def __aiter__(self) -> _BlockIterator:
        return self

    async def __anext__(self) -> bytes:
        block = await self._file.read(self._count)
        if not block:
            raise StopAsyncIteration
        return block


class _Lister(Generic[PathType]):
    """The async iterator :meth:`AbstractPathIO.list` returns: one call fetches every child."""

    def __init__(self, fetch: Callable[[], Awaitable[builtins.list[PathType]]]) -> None:
        self._fetch = fetch
        self._children: builtins.list[PathType] | None = None

    def __aiter__(self) -> _Lister[PathType]:
        return self

    async def __anext__(self) -> PathType:
        if self._children is None:
            self._children = await self._fetch()
            self._children.reverse()
        if not self._children:
            raise StopAsyncIteration
        return self._children.pop()


# the interface -----------------------------------------------------------------------------------
class AbstractPathIO(abc.ABC, Generic[PathType]):
    """A file-system backend, with aioftp's path-IO method names and semantics.

    Methods raise the :class:`OSError` the operation would raise on a real file system
    (``FileNotFoundError``, ``FileExistsError``, ``NotADirectoryError``...);
    :class:`GuardedPathIO` turns them into :class:`~trio_ftp.errors.PathIOError`.

    Args:
        timeout: the ``path_timeout`` of the server (applied by :class:`GuardedPathIO`).
        connection: the session's connection state, for backends that want it.
        state: shared state from another instance's :attr:`state`, for backends that have
            some (:class:`MemoryPathIO` shares its tree this way).
    """

    def __init__(
        self,
        timeout: float | None = None,
        connection: object | None = None,
        state: object | None = None,
    ) -> None:
        self.timeout = timeout
        self.connection = connection

    @property
    def state(self) -> object | None:
        """State to pass as ``state=`` to the next instance so they share it (or None)."""
        return None

    @abc.abstractmethod
    async def exists(self, path: PathType) -> bool:
        """Whether ``path`` exists."""

    @abc.abstractmethod
    async def is_dir(self, path: PathType) -> bool:
        """Whether ``path`` exists and is a directory."""

    @abc.abstractmethod
    async def is_file(self, path: PathType) -> bool:
        """Whether ``path`` exists and is a regular file."""

    @abc.abstractmethod
    async def mkdir(self, path: PathType, *, parents: bool = False, exist_ok: bool = False) -> None:
        """Make a directory, like :meth:`pathlib.Path.mkdir`."""

    @abc.abstractmethod
    async def rmdir(self, path: PathType) -> None:
        """Remove an empty directory."""

    @abc.abstractmethod
    async def unlink(self, path: PathType) -> None:
        """Remove a file."""

    @abc.abstractmethod
    def list(self, path: PathType) -> AsyncIterator[PathType]:
        """Iterate over the full paths of the children of directory ``path``.

        A plain method returning an async iterator: ``async for child in path_io.list(p)``.
        """

    @abc.abstractmethod
    async def stat(self, path: PathType) -> os.stat_result:
        """Return the :class:`os.stat_result` of ``path`` (following symlinks)."""

    @abc.abstractmethod
    async def _open(self, path: PathType, mode: str) -> Any:
        """Open ``path`` in binary ``mode`` (one of ``OPEN_MODES``); returns a file object."""

    @abc.abstractmethod
    async def seek(self, file: Any, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position of a file from :meth:`_open`; returns the new position."""

    @abc.abstractmethod
    async def write(self, file: Any, data: bytes) -> int:
        """Write ``data`` to a file from :meth:`_open`; returns the number of bytes written."""

    @abc.abstractmethod
    async def read(self, file: Any, block_size: int) -> bytes:
        """Read up to ``block_size`` bytes from a file from :meth:`_open` (``b""`` at EOF)."""

    @abc.abstractmethod
    async def close(self, file: Any) -> None:
        """Close a file from :meth:`_open`."""

    @abc.abstractmethod
    async def rename(self, source: PathType, destination: PathType) -> PathType:
        """Rename ``source`` to ``destination``, replacing a file there (like os.replace).

        Returns:
            ``destination``.
        """

    def open(self, path: PathType, mode: str = "rb") -> AsyncFile:
        """Open a file: ``async with path_io.open(p, mode="wb") as f`` or ``await``.

        Args:
            path: the file.
            mode: ``"rb"``, ``"wb"`` (truncates), ``"ab"`` (appends) or ``"r+b"``
                (read and write in place, without truncating).

        Raises:
            ValueError: for any other mode.
        """
        return AsyncFile(self, path, mode)

    async def confine(self, base_path: PathType, relative: PurePosixPath) -> PathType:
        """Return the real path of a virtual path, refusing one that leaves ``base_path``.

        The one confinement check of the file-system side: the pure side (``..`` never
        climbs above ``/``) is already done, so ``relative`` is normalized.

        Args:
            base_path: the user's root.
            relative: the virtual path relative to the user's root.

        Returns:
            The real path (by default ``base_path / relative``).

        Raises:
            ValueError: ``relative`` is absolute or contains ``..``.
            trio_ftp.errors.PermissionDenied: the path is outside the user's root.
        """
        await trio.lowlevel.checkpoint()
        return base_path / _check_relative(relative)


# the local file system ---------------------------------------------------------------------------
async def _in_thread(fn: Callable[[], T], *, read_only: bool) -> T:
    # Only calls that change nothing may be abandoned on cancel: abandoning a write, mkdir or
    # rename would report failure for an operation that still completes in the background.
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=read_only)


def _scandir_names(path: Path) -> builtins.list[str]:
    with os.scandir(path) as entries:
        return sorted(entry.name for entry in entries)


def _is_within(path: str, base: str) -> bool:
    if path == base:
        return True
    return path.startswith(base if base.endswith(os.sep) else base + os.sep)


class PathIO(AbstractPathIO[Path]):
    """The local file system; every call runs in a worker thread, off the event loop.

    :meth:`confine` resolves symlinks, so a link inside the user's root that points
    outside of it is refused. (Like any path-based server this is a check, not a
    sandbox: a local user who can swap a directory for a symlink between the check and
    the use can still race it.)
    """

    async def exists(self, path: Path) -> bool:
        return await _in_thread(Path(path).exists, read_only=True)

    async def is_dir(self, path: Path) -> bool:
        return await _in_thread(Path(path).is_dir, read_only=True)

    async def is_file(self, path: Path) -> bool:
        return await _in_thread(Path(path).is_file, read_only=True)

    async def mkdir(self, path: Path, *, parents: bool = False, exist_ok: bool = False) -> None:
        mkdir = functools.partial(Path(path).mkdir, parents=parents, exist_ok=exist_ok)
        await _in_thread(mkdir, read_only=False)

    async def rmdir(self, path: Path) -> None:
        await _in_thread(Path(path).rmdir, read_only=False)

    async def unlink(self, path: Path) -> None:
        await _in_thread(Path(path).unlink, read_only=False)

    def list(self, path: Path) -> AsyncIterator[Path]:
        path = Path(path)

        async def fetch() -> builtins.list[Path]:
            names = await _in_thread(functools.partial(_scandir_names, path), read_only=True)
            return [path / name for name in names]

        return _Lister(fetch)

    async def stat(self, path: Path) -> os.stat_result:
        return await _in_thread(Path(path).stat, read_only=True)

    async def _open(self, path: Path, mode: str) -> io.BufferedIOBase:
        _check_mode(mode)

        def open_file() -> io.BufferedIOBase:
            file = Path(path).open(mode)  # noqa: SIM115 (closed by close())
            assert isinstance(file, io.BufferedIOBase)
            return file

        return await _in_thread(open_file, read_only=False)

    async def seek(self, file: io.BufferedIOBase, offset: int, whence: int = os.SEEK_SET) -> int:
        return await _in_thread(functools.partial(file.seek, offset, whence), read_only=False)

    async def write(self, file: io.BufferedIOBase, data: bytes) -> int:
        return await _in_thread(functools.partial(file.write, data), read_only=False)

    async def read(self, file: io.BufferedIOBase, block_size: int) -> bytes:
        return await _in_thread(functools.partial(file.read, block_size), read_only=True)

    async def close(self, file: io.BufferedIOBase) -> None:
        await _in_thread(file.close, read_only=False)

    async def rename(self, source: Path, destination: Path) -> Path:
        destination = Path(destination)
        await _in_thread(functools.partial(os.replace, source, destination), read_only=False)
        return destination

    async def confine(self, base_path: Path, relative: PurePosixPath) -> Path:
        """Join, then refuse the result if its real path is not ``base_path`` or inside it.

        Symlinks are resolved (also dangling ones, and ones in parent components), so a
        link that points outside the user's root is refused.

        Raises:
            ValueError: ``relative`` is absolute or contains ``..``.
            trio_ftp.errors.PermissionDenied: the real path is outside the user's root.
        """
        base_path = Path(base_path)
        joined = base_path / _check_relative(relative)

        def check() -> bool:
            return _is_within(os.path.realpath(joined), os.path.realpath(base_path))

        if not await _in_thread(check, read_only=True):
            raise PermissionDenied("path is outside the user's root")
        return joined


# in memory ---------------------------------------------------------------------------------------
class _Node:
    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.ctime = self.mtime = self.atime = time.time()

    def touch(self) -> None:
        self.ctime = self.mtime = time.time()


class _Dir(_Node):
    def __init__(self, ino: int) -> None:
        super().__init__(ino)
        self.children: dict[str, _Node] = {}


class _File(_Node):
    def __init__(self, ino: int) -> None:
        super().__init__(ino)
        self.data = bytearray()


class MemoryTree:
    """The file tree of :class:`MemoryPathIO`; pass it as ``state=`` to share it."""

    def __init__(self) -> None:
        self._last_ino = 0
        self.root = _Dir(self.new_ino())

    def new_ino(self) -> int:
        """A fresh inode number, unique within the tree."""
        self._last_ino += 1
        return self._last_ino


class _MemoryFile:
    def __init__(self, node: _File, mode: str) -> None:
        self.node = node
        self.position = 0
        self.readable = mode in ("rb", "r+b")
        self.writable = mode != "rb"
        self.append = mode == "ab"
        self.closed = False

    def check(self, operation: str, allowed: bool) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if not allowed:
            raise io.UnsupportedOperation(operation)


def _error(code: int, path: PurePath | None = None) -> OSError:
    # OSError(errno, ...) returns the matching subclass (FileNotFoundError for ENOENT...).
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), str(path))


def _memory_path(path: PurePath | str) -> PurePosixPath:
    """Absolute, normalized form of a path: relative paths are taken from ``/``."""
    parts: builtins.list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("/", "."):
            parts.append(part)
    return PurePosixPath("/", *parts)


class MemoryPathIO(AbstractPathIO[PurePosixPath]):
    """An in-memory file tree that behaves like the local file system.

    Operations raise the same :class:`OSError` subclasses, with the same ``errno``, as the
    local file system would (Linux semantics), so both backends pass one behaviour suite.
    Relative paths are taken from ``/`` (so a user's default ``base_path`` of ``.`` is the
    root) and any :class:`~pathlib.PurePath` is accepted.

    Args:
        timeout: the ``path_timeout`` of the server.
        connection: the session's connection state.
        state: a :class:`MemoryTree` from another instance's :attr:`state`, to share it;
            a new empty tree when None.
    """

    def __init__(
        self,
        timeout: float | None = None,
        connection: object | None = None,
        state: object | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connection=connection, state=state)
        if state is None:
            state = MemoryTree()
        elif not isinstance(state, MemoryTree):
            raise TypeError(f"state must be a MemoryTree, got {type(state).__name__}")
        self.tree: MemoryTree = state

    @property
    def state(self) -> MemoryTree:
        """The tree; ``MemoryPathIO(state=other.state)`` shares it."""
        return self.tree

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, bytes | None],
        *,
        timeout: float | None = None,
        connection: object | None = None,
    ) -> MemoryPathIO:
        """Build a backend holding ``files``.

        Args:
            files: path -> content. ``None`` makes a directory (write its key with a
                trailing ``/`` for clarity, e.g. ``"/empty_dir/"``); missing parents are
                created.
            timeout: as for the constructor.
            connection: as for the constructor.

        Example:
            ``MemoryPathIO.from_files({"/a/b.txt": b"data", "/empty_dir/": None})``
        """
        path_io = cls(timeout=timeout, connection=connection)
        for name, content in files.items():
            path = _memory_path(name)
            if content is None:
                path_io._mkdir(path, parents=True, exist_ok=True)
                continue
            if name.endswith("/"):
                raise ValueError(f"{name!r} ends with '/' but has file content")
            path_io._mkdir(path.parent, parents=True, exist_ok=True)
            file = path_io._open_file(path, "wb")
            path_io._write(file, bytes(content))
        return path_io

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tree={self.tree!r})"

    # lookups ---------------------------------------------------------------------------------
    def _lookup(self, path: PurePosixPath) -> _Node:
        node: _Node = self.tree.root
        for depth, part in enumerate(path.parts[1:], start=1):
            if not isinstance(node, _Dir):
                raise _error(errno.ENOTDIR, PurePosixPath(*path.parts[:depth]))
            child = node.children.get(part)
            if child is None:
                raise _error(errno.ENOENT, path)
            node = child
        return node

    def _parent(self, path: PurePosixPath) -> tuple[_Dir, str]:
        """The directory holding ``path``, and its name there."""
        if path == path.parent:
            raise _error(errno.EBUSY, path)
        parent = self._lookup(path.parent)
        if not isinstance(parent, _Dir):
            raise _error(errno.ENOTDIR, path)
        return parent, path.name

    def _find(self, path: PurePosixPath) -> _Node | None:
        try:
            return self._lookup(path)
        except (FileNotFoundError, NotADirectoryError):
            return None

    # synchronous operations ------------------------------------------------------------------
    def _mkdir_one(self, path: PurePosixPath) -> None:
        if path == path.parent:
            raise _error(errno.EEXIST, path)
        parent, name = self._parent(path)
        if name in parent.children:
            raise _error(errno.EEXIST, path)
        parent.children[name] = _Dir(self.tree.new_ino())
        parent.touch()

    def _mkdir(self, path: PurePosixPath, *, parents: bool, exist_ok: bool) -> None:
        # Mirrors pathlib.Path.mkdir, so the errors are the same.
        try:
            self._mkdir_one(path)
        except FileNotFoundError:
            if not parents or path == path.parent:
                raise
            self._mkdir(path.parent, parents=True, exist_ok=True)
            self._mkdir(path, parents=False, exist_ok=exist_ok)
        except OSError:
            if not exist_ok or not isinstance(self._find(path), _Dir):
                raise

    def _open_file(self, path: PurePosixPath, mode: str) -> _MemoryFile:
        _check_mode(mode)
        if mode in ("rb", "r+b") or path == path.parent:
            node = self._lookup(path)
        else:
            parent, name = self._parent(path)
            existing = parent.children.get(name)
            if existing is None:
                node = parent.children[name] = _File(self.tree.new_ino())
                parent.touch()
            else:
                node = existing
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        assert isinstance(node, _File)
        if mode == "wb" and node.data:
            node.data.clear()
            node.touch()
        return _MemoryFile(node, mode)

    def _write(self, file: _MemoryFile, data: bytes) -> int:
        file.check("write", file.writable)
        content = file.node.data
        if not data:
            return 0
        if file.append:
            file.position = len(content)
        if file.position > len(content):
            content.extend(bytes(file.position - len(content)))
        content[file.position : file.position + len(data)] = data
        file.position += len(data)
        file.node.touch()
        return len(data)

    # the interface ---------------------------------------------------------------------------
    async def exists(self, path: PurePosixPath) -> bool:
        await trio.lowlevel.checkpoint()
        return self._find(_memory_path(path)) is not None

    async def is_dir(self, path: PurePosixPath) -> bool:
        await trio.lowlevel.checkpoint()
        return isinstance(self._find(_memory_path(path)), _Dir)

    async def is_file(self, path: PurePosixPath) -> bool:
        await trio.lowlevel.checkpoint()
        return isinstance(self._find(_memory_path(path)), _File)

    async def mkdir(
        self, path: PurePosixPath, *, parents: bool = False, exist_ok: bool = False
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._mkdir(_memory_path(path), parents=parents, exist_ok=exist_ok)

    async def rmdir(self, path: PurePosixPath) -> None:
        await trio.lowlevel.checkpoint()
        path = _memory_path(path)
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        parent, name = self._parent(path)
        if node.children:
            raise _error(errno.ENOTEMPTY, path)
        del parent.children[name]
        parent.touch()

    async def unlink(self, path: PurePosixPath) -> None:
        await trio.lowlevel.checkpoint()
        path = _memory_path(path)
        node = self._lookup(path)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        parent, name = self._parent(path)
        del parent.children[name]
        parent.touch()

    def list(self, path: PurePosixPath) -> AsyncIterator[PurePosixPath]:
        path = _memory_path(path)

        async def fetch() -> builtins.list[PurePosixPath]:
            await trio.lowlevel.checkpoint()
            node = self._lookup(path)
            if not isinstance(node, _Dir):
                raise _error(errno.ENOTDIR, path)
            return [path / name for name in sorted(node.children)]

        return _Lister(fetch)

    async def stat(self, path: PurePosixPath) -> os.stat_result:
        await trio.lowlevel.checkpoint()
        node = self._lookup(_memory_path(path))
        if isinstance(node, _File):
            mode, nlink, size = stat_module.S_IFREG | 0o644, 1, len(node.data)
        else:
            mode, nlink, size = stat_module.S_IFDIR | 0o755, 2, 0
        times = (node.atime, node.mtime, node.ctime)
        return os.stat_result(
            (mode, node.ino, 0, nlink, 0, 0, size, *(int(t) for t in times)),
            {
                "st_atime": node.atime,
                "st_mtime": node.mtime,
                "st_ctime": node.ctime,
                "st_atime_ns": int(node.atime * 1e9),
                "st_mtime_ns": int(node.mtime * 1e9),
                "st_ctime_ns": int(node.ctime * 1e9),
            },
        )

    async def _open(self, path: PurePosixPath, mode: str) -> _MemoryFile:
        await trio.lowlevel.checkpoint()
        return self._open_file(_memory_path(path), mode)

    async def seek(self, file: _MemoryFile, offset: int, whence: int = os.SEEK_SET) -> int:
        await trio.lowlevel.checkpoint()
        file.check("seek", True)
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = file.position + offset
        elif whence == os.SEEK_END:
            position = len(file.node.data) + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise _error(errno.EINVAL)
        file.position = position
        return position

    async def write(self, file: _MemoryFile, data: bytes) -> int:
        await trio.lowlevel.checkpoint()
        return self._write(file, data)

    async def read(self, file: _MemoryFile, block_size: int) -> bytes:
        await trio.lowlevel.checkpoint()
        file.check("read", file.readable)
        content = file.node.data
        end = len(content) if block_size < 0 else file.position + block_size
        block = bytes(content[file.position : end])
        file.position += len(block)
        return block

    async def close(self, file: _MemoryFile) -> None:
        await trio.lowlevel.checkpoint()
        file.closed = True

    async def rename(self, source: PurePosixPath, destination: PurePosixPath) -> PurePosixPath:
        # The checks and their order follow Linux's rename(2).
        await trio.lowlevel.checkpoint()
        source, destination = _memory_path(source), _memory_path(destination)
        source_parent, source_name = self._parent(source)
        destination_parent, destination_name = self._parent(destination)
        node = source_parent.children.get(source_name)
        if node is None:
            raise _error(errno.ENOENT, source)
        if isinstance(node, _Dir) and source in destination.parents:
            raise _error(errno.EINVAL, source)
        existing = destination_parent.children.get(destination_name)
        if existing is node:
            return destination
        if existing is not None:
            if destination in source.parents:
                raise _error(errno.ENOTEMPTY, destination)
            if isinstance(node, _Dir) and isinstance(existing, _File):
                raise _error(errno.ENOTDIR, destination)
            if isinstance(node, _File) and isinstance(existing, _Dir):
                raise _error(errno.EISDIR, destination)
            if isinstance(existing, _Dir) and existing.children:
                raise _error(errno.ENOTEMPTY, destination)
        del source_parent.children[source_name]
        destination_parent.children[destination_name] = node
        source_parent.touch()
        destination_parent.touch()
        node.ctime = time.time()
        return destination

    async def confine(self, base_path: PurePosixPath, relative: PurePosixPath) -> PurePosixPath:
        """Return ``base_path / relative`` as an absolute :class:`~pathlib.PurePosixPath`.

        ``base_path`` may be any path (a relative one is taken from ``/``); there are no
        symlinks, so nothing can leave it.
        """
        await trio.lowlevel.checkpoint()
        return _memory_path(base_path) / _check_relative(relative)


# the guard ---------------------------------------------------------------------------------------
class GuardedPathIO(AbstractPathIO[PathType]):
    """A backend wrapped for one session: the one place for ``path_timeout`` and errors.

    Every call (each step of :meth:`list`; the open and every read, write, seek and close
    of a file from :meth:`open`) runs under ``trio.fail_after(timeout)`` when ``timeout``
    is not None, and:

    * a timeout becomes :class:`~trio_ftp.errors.PathIOError` (``451``) whose ``reason`` is
      a :class:`TimeoutError`;
    * an :class:`OSError`, or any other :class:`Exception` that is not a
      :class:`~trio_ftp.errors.FTPError`, becomes :class:`~trio_ftp.errors.PathIOError`
      with the exception as ``reason`` (its errno decides the reply code);
    * :class:`~trio_ftp.errors.FTPError` (e.g. ``PermissionDenied`` from :meth:`confine`),
      ``trio.Cancelled`` and other ``BaseException`` pass through unchanged.

    Args:
        inner: the backend.
        timeout: seconds each call may take, or None for no limit.
    """

    def __init__(self, inner: AbstractPathIO[PathType], timeout: float | None = None) -> None:
        super().__init__(timeout=timeout, connection=inner.connection)
        self.inner = inner

    @property
    def state(self) -> object | None:
        """The inner backend's state."""
        return self.inner.state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, timeout={self.timeout!r})"

    async def _guard(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` under the timeout, translating errors."""
        try:
            if self.timeout is None:
                return await fn(*args, **kwargs)
            with trio.fail_after(self.timeout):
                return await fn(*args, **kwargs)
        except trio.TooSlowError as exc:
            name = getattr(fn, "__name__", "operation")
            timeout = TimeoutError(f"path IO {name} timed out after {self.timeout} s")
            raise PathIOError(timeout) from exc
        except (FTPError, StopAsyncIteration):
            raise
        except Exception as exc:
            raise PathIOError(reason=exc) from exc

    async def exists(self, path: PathType) -> bool:
        return await self._guard(self.inner.exists, path)

    async def is_dir(self, path: PathType) -> bool:
        return await self._guard(self.inner.is_dir, path)

    async def is_file(self, path: PathType) -> bool:
        return await self._guard(self.inner.is_file, path)

    async def mkdir(self, path: PathType, *, parents: bool = False, exist_ok: bool = False) -> None:
        await self._guard(self.inner.mkdir, path, parents=parents, exist_ok=exist_ok)

    async def rmdir(self, path: PathType) -> None:
        await self._guard(self.inner.rmdir, path)

    async def unlink(self, path: PathType) -> None:
        await self._guard(self.inner.unlink, path)

    def list(self, path: PathType) -> AsyncIterator[PathType]:
        return _GuardedIterator(self, lambda: self.inner.list(path))

    async def stat(self, path: PathType) -> os.stat_result:
        return await self._guard(self.inner.stat, path)

    async def _open(self, path: PathType, mode: str) -> Any:
        return await self._guard(self.inner._open, path, mode)

    async def seek(self, file: Any, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._guard(self.inner.seek, file, offset, whence)

    async def write(self, file: Any, data: bytes) -> int:
        return await self._guard(self.inner.write, file, data)

    async def read(self, file: Any, block_size: int) -> bytes:
        return await self._guard(self.inner.read, file, block_size)

    async def close(self, file: Any) -> None:
        await self._guard(self.inner.close, file)

    async def rename(self, source: PathType, destination: PathType) -> PathType:
        return await self._guard(self.inner.rename, source, destination)

    async def confine(self, base_path: PathType, relative: PurePosixPath) -> PathType:
        return await self._guard(self.inner.confine, base_path, relative)


class _GuardedIterator(Generic[PathType]):
    """Guards each step of an inner backend's listing (including making the iterator)."""

    def __init__(
        self, guard: GuardedPathIO[PathType], make: Callable[[], AsyncIterator[PathType]]
    ) -> None:
        self._guard = guard
        self._make = make
        self._inner: AsyncIterator[PathType] | None = None

    def __aiter__(self) -> _GuardedIterator[PathType]:
        return self

    async def _step(self) -> PathType:
        if self._inner is None:
            self._inner = self._make()
        return await self._inner.__anext__()

    async def __anext__(self) -> PathType:
        return await self._guard._guard(self._step)
