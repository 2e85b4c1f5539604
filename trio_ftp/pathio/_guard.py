"""The per-session wrapper, :class:`GuardedPathIO`: timeouts and error translation.

Separate so ``path_timeout`` and the OSError -> PathIOError mapping live in one place,
whatever the backend.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, Generic, ParamSpec, TypeVar

import trio

from ..errors import FTPError, PathIOError
from ._base import AbstractPathIO, AsyncFile, PathType

T = TypeVar("T")
P = ParamSpec("P")


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

    async def list_with_stats(
        self, path: PathType
    ) -> builtins.list[tuple[PathType, os.stat_result]]:
        return await self._guard(self.inner.list_with_stats, path)

    def native_fd(self, file: AsyncFile) -> int | None:
        """The inner backend's answer: ``file`` holds the inner backend's file object
        (this wrapper only guards the calls made on it)."""
        return self.inner.native_fd(file)

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

    async def chmod(self, path: PathType, mode: int) -> None:
        await self._guard(self.inner.chmod, path, mode)

    async def set_mtime(self, path: PathType, mtime: float) -> None:
        await self._guard(self.inner.set_mtime, path, mtime)

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
