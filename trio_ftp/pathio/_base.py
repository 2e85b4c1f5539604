"""The path-IO interface: :class:`AbstractPathIO`, its open file and shared helpers.

Kept apart from the backends so each backend module depends only on this one.
"""

from __future__ import annotations

import abc
import builtins
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any, ClassVar, Generic, TypeVar

import trio

from ..boundaries import finish_despite_cancellation

logger = logging.getLogger("trio_ftp.pathio")

PathType = TypeVar("PathType", bound=PurePath)

#: Block size of :meth:`AsyncFile.iter_by_block` when none is given (aioftp's default).
DEFAULT_BLOCK_SIZE = 8192

#: The binary open modes every backend supports.
#: ``xb`` creates a new file and fails (``FileExistsError``) if the name exists: how STOU
#: reserves its name.
OPEN_MODES = frozenset({"rb", "wb", "ab", "r+b", "xb"})


def _check_mode(mode: str) -> None:
    if mode not in OPEN_MODES:
        raise ValueError(f"invalid mode {mode!r}: expected one of {sorted(OPEN_MODES)}")


def _check_write_file_mode(mode: str) -> None:
    """:meth:`AbstractPathIO.write_file` writes a whole new file or appends: nothing else."""
    if mode not in ("wb", "ab"):
        raise ValueError(f"write_file writes with 'wb' or 'ab', not {mode!r}")


def _check_relative(relative: PurePosixPath) -> PurePosixPath:
    relative = PurePosixPath(relative)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"expected a normalized relative path, got {str(relative)!r}")
    return relative


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the required methods; FEAT and the commands follow it.

    A local disk can do everything; an object store writes whole objects only, has no
    permission bits or settable times, and may not rename a directory in one step.
    """

    #: Writing into an existing file at an offset: ``APPE`` and ``REST`` + ``STOR``.
    write_at_offset: bool = True
    #: :meth:`AbstractPathIO.set_mtime` (``MFMT``).
    set_mtime: bool = True
    #: :meth:`AbstractPathIO.chmod` (``SITE CHMOD``).
    chmod: bool = True
    #: Renaming a directory that has children (``RNFR``/``RNTO``).
    rename_directories: bool = True
    #: A file opened for writing shows only once closed, whole, and a discarded one never
    #: shows: the temporary name and rename of ``atomic_uploads`` are not needed.
    whole_file_writes: bool = False


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

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """Close the file; when leaving with an exception, a file opened for writing is
        discarded instead (:meth:`discard`): an interrupted upload never shows as a whole
        file where the backend can help it."""
        if exc_type is not None and self.mode != "rb":
            await self.discard()
        else:
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
        the underlying file; but once cancelled, it is given at most
        :data:`~trio_ftp.boundaries.SESSION_END_TIMEOUT` seconds (a backend whose close
        never returns cannot hold ``Server.close()``).
        """
        await self._finish(self.path_io.close, "closing", now=self.path_io.close_now)

    async def discard(self) -> None:
        """Close a file whose writing failed, throwing away what the backend can
        (:meth:`AbstractPathIO.discard`); shielded and bounded like :meth:`close`."""
        await self._finish(self.path_io.discard, "discarding")

    async def _finish(
        self,
        end: Callable[[Any], Awaitable[None]],
        doing: str,
        *,
        now: Callable[[Any], bool] | None = None,
    ) -> None:
        """``end`` the file once, shielded and bounded; ``now`` may end it first, on the
        event loop, when that cannot wait (:meth:`AbstractPathIO.close_now`)."""
        if self._closed:
            return
        self._closed = True
        if self._opened:
            if now is not None and now(self._file):
                await trio.lowlevel.checkpoint()  # closed already: cancellation may come
                return
            await finish_despite_cancellation(
                lambda: end(self._file),
                what=f"{doing} {str(self.path)!r}",
                log=getattr(self.path_io.connection, "log", None) or logger,
            )

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

    #: True when :meth:`exists`, :meth:`is_dir` and :meth:`is_file` say exactly what
    #: :meth:`stat` says (follows symlinks; a missing path raises ``FileNotFoundError`` or
    #: ``NotADirectoryError``): then a session answers all of them for one path, within
    #: one command, from a single stat.
    consistent_stat: ClassVar[bool] = False

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

    def close_now(self, file: Any) -> bool:
        """Close ``file`` at once, on the event loop, when that cannot wait; True when it
        is closed. The default does nothing (False): :meth:`close` follows, shielded and
        bounded. A backend whose close sometimes needs no waiting (the local backend's
        close of a file read from the page cache) spares :class:`AsyncFile` the shield
        and the watcher task that bound every other close. It runs on the event loop: it
        must not block. An exception from it is logged and the shielded close follows."""
        return False

    async def discard(self, file: Any) -> None:
        """Close a file from :meth:`_open` whose writing failed (an aborted or cut upload).

        The default is :meth:`close`: what was written stays, as on a local disk (a client
        may resume it). An object store aborts the upload instead, so nothing appears.
        """
        await self.close(file)

    async def write_file(self, path: PathType, data: bytes, mode: str = "wb") -> None:
        """Open ``path`` in ``mode`` (``"wb"`` or ``"ab"``), write all of ``data``, close:
        a whole small upload, received before the file was opened, in one call.

        The default goes through :meth:`open` (a failed write discards the file as an
        interrupted upload does). A backend that can do it in one step does (the local
        one: one worker-thread call instead of three).
        """
        _check_write_file_mode(mode)
        async with self.open(path, mode=mode) as file:
            if data:
                await file.write(data)

    @abc.abstractmethod
    async def rename(self, source: PathType, destination: PathType) -> PathType:
        """Rename ``source`` to ``destination``, replacing a file there (like os.replace).

        Returns:
            ``destination``.
        """

    async def names_with_stats(self, path: PathType) -> builtins.list[tuple[str, os.stat_result]]:
        """The names of the children of directory ``path`` with their stat results, sorted
        by name: what a listing needs, which a backend can give in one call.

        This default is :meth:`list` then :meth:`stat` per child; a child that vanished in
        between (``FileNotFoundError``, which includes a dangling symlink) is left out.
        """
        result: builtins.list[tuple[str, os.stat_result]] = []
        async for child in self.list(path):
            try:
                result.append((child.name, await self.stat(child)))
            except FileNotFoundError:
                continue
        result.sort(key=lambda item: item[0])
        return result

    def capabilities(self) -> Capabilities:
        """What this backend can do (:class:`Capabilities`). The default: everything,
        except ``chmod``/``set_mtime`` when the subclass keeps the base class's."""
        cls = type(self)
        return Capabilities(
            set_mtime=cls.set_mtime is not AbstractPathIO.set_mtime,
            chmod=cls.chmod is not AbstractPathIO.chmod,
        )

    async def stored_digest(self, path: PathType, algorithm: str) -> str | None:
        """The hex digest of the whole file under ``algorithm`` (a ``HASH`` name such as
        ``"MD5"``) when the store already holds it, else None (the default): then ``HASH``
        need not read the file."""
        await trio.lowlevel.checkpoint()
        return None

    def native_fd(self, file: AsyncFile) -> int | None:
        """The OS file descriptor behind ``file`` when it is a plain local file, else None.

        Lets the server hand the transfer to the kernel (``os.sendfile``, ``os.splice``).
        The descriptor belongs to ``file``: never close it, and use it only where nothing
        is buffered (right after the open or a seek). The default is None.
        """
        return None

    async def chmod(self, path: PathType, mode: int) -> None:
        """Set the permission bits of ``path`` (like :func:`os.chmod`; ``mode & 0o7777``).

        Optional: the default raises :class:`NotImplementedError`, which ``SITE CHMOD``
        answers as "not supported by this backend".

        Raises:
            NotImplementedError: the backend has no permission bits.
        """
        await trio.lowlevel.checkpoint()
        raise NotImplementedError(f"{type(self).__name__} does not support chmod")

    async def set_mtime(self, path: PathType, mtime: float) -> None:
        """Set the modification time of ``path`` (seconds since the epoch), for ``MFMT``.

        Optional: the default raises :class:`NotImplementedError`.
        """
        await trio.lowlevel.checkpoint()
        raise NotImplementedError(f"{type(self).__name__} does not support set_mtime")

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
        climbs above ``/``) is already done, so ``relative`` is normalized. A backend may
        also remember ``base_path`` and hold later operations on paths under it beneath it
        when they run (:class:`PathIO` does, with ``openat2`` on Linux).

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
