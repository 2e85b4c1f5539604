"""The per-session wrapper, :class:`GuardedPathIO`: timeouts and error translation.

Separate so ``path_timeout`` and the OSError -> PathIOError mapping live in one place,
whatever the backend.
"""

from __future__ import annotations

import builtins
import logging
import os
import stat as stat_module
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, Generic, ParamSpec, TypeVar

import trio

from ..errors import FTPError, PathIOError
from ._base import AbstractPathIO, AsyncFile, Capabilities, PathType

T = TypeVar("T")

logger = logging.getLogger("trio_ftp.pathio")
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
      with the exception as ``reason`` (its errno decides the reply code); one that is
      neither an ``OSError`` nor ``NotImplementedError`` (an optional method) is a bug in
      the backend, and its traceback is logged;
    * :class:`~trio_ftp.errors.FTPError` (e.g. ``PermissionDenied`` from :meth:`confine`),
      ``trio.Cancelled`` and other ``BaseException`` pass through unchanged.

    Args:
        inner: the backend.
        timeout: seconds each call may take, or None for no limit.
    """

    def __init__(self, inner: AbstractPathIO[PathType], timeout: float | None = None) -> None:
        super().__init__(timeout=timeout, connection=inner.connection)
        self.inner = inner
        self._log: logging.Logger | logging.LoggerAdapter[Any] = (
            getattr(inner.connection, "log", None) or logger
        )
        # Stat results (or the "no such path" error) of this command, when the backend's
        # exists/is_dir/is_file agree with stat: the checks a command makes on one path
        # (exists, then is_file, then stat) cost one worker-thread call, not three.
        self._stats: dict[Any, os.stat_result | PathIOError] | None = (
            {} if _stat_is_consistent(type(inner)) else None
        )

    def close_now(self, file: Any) -> bool:
        try:
            return self.inner.close_now(file)
        except OSError:  # the shielded close below tries again and reports it
            return False
        except Exception:  # a backend's bug: logged, and the shielded close goes on
            self._log.exception("close_now of %r raised", type(self.inner).__name__)
            return False

    def forget_stats(self) -> None:
        """Drop remembered stat results: the session calls it after every command, and
        every call that changes the file system calls it."""
        if self._stats:
            self._stats.clear()

    async def _stat(self, path: PathType) -> os.stat_result | PathIOError:
        """The path's stat result, or the PathIOError saying it does not exist."""
        assert self._stats is not None
        known = self._stats.get(path)
        if known is None:
            try:
                known = await self._guard(self.inner.stat, path)
            except PathIOError as exc:
                if not isinstance(exc.reason, (FileNotFoundError, NotADirectoryError)):
                    raise
                known = exc
            self._stats[path] = known
        return known

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
            if not isinstance(exc, (OSError, NotImplementedError)):
                # Not a file-system answer but a bug in the backend: its one traceback.
                name = getattr(fn, "__name__", "operation")
                self._log.exception("path IO %s raised", name)
            raise PathIOError(reason=exc) from exc

    async def exists(self, path: PathType) -> bool:
        if self._stats is None:
            return await self._guard(self.inner.exists, path)
        return not isinstance(await self._stat(path), PathIOError)

    async def is_dir(self, path: PathType) -> bool:
        if self._stats is None:
            return await self._guard(self.inner.is_dir, path)
        known = await self._stat(path)
        return not isinstance(known, PathIOError) and stat_module.S_ISDIR(known.st_mode)

    async def is_file(self, path: PathType) -> bool:
        if self._stats is None:
            return await self._guard(self.inner.is_file, path)
        known = await self._stat(path)
        return not isinstance(known, PathIOError) and stat_module.S_ISREG(known.st_mode)

    async def mkdir(self, path: PathType, *, parents: bool = False, exist_ok: bool = False) -> None:
        self.forget_stats()
        await self._guard(self.inner.mkdir, path, parents=parents, exist_ok=exist_ok)

    async def rmdir(self, path: PathType) -> None:
        self.forget_stats()
        await self._guard(self.inner.rmdir, path)

    async def unlink(self, path: PathType) -> None:
        self.forget_stats()
        await self._guard(self.inner.unlink, path)

    def list(self, path: PathType) -> AsyncIterator[PathType]:
        return _GuardedIterator(self, lambda: self.inner.list(path))

    async def stat(self, path: PathType) -> os.stat_result:
        if self._stats is None:
            return await self._guard(self.inner.stat, path)
        known = await self._stat(path)
        if isinstance(known, PathIOError):
            raise known
        return known

    async def names_with_stats(self, path: PathType) -> builtins.list[tuple[str, os.stat_result]]:
        return await self._guard(self.inner.names_with_stats, path)

    def native_fd(self, file: AsyncFile) -> int | None:
        """The inner backend's answer: ``file`` holds the inner backend's file object
        (this wrapper only guards the calls made on it)."""
        return self.inner.native_fd(file)

    async def _open(self, path: PathType, mode: str) -> Any:
        if mode != "rb":
            self.forget_stats()
        return await self._guard(self.inner._open, path, mode)

    async def write_file(self, path: PathType, data: bytes, mode: str = "wb") -> None:
        self.forget_stats()
        await self._guard(self.inner.write_file, path, data, mode)

    async def seek(self, file: Any, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._guard(self.inner.seek, file, offset, whence)

    async def write(self, file: Any, data: bytes) -> int:
        self.forget_stats()
        return await self._guard(self.inner.write, file, data)

    async def read(self, file: Any, block_size: int) -> bytes:
        return await self._guard(self.inner.read, file, block_size)

    async def close(self, file: Any) -> None:
        self.forget_stats()
        await self._guard(self.inner.close, file)

    async def discard(self, file: Any) -> None:
        self.forget_stats()
        await self._guard(self.inner.discard, file)

    def capabilities(self) -> Capabilities:
        """The inner backend's."""
        return self.inner.capabilities()

    async def stored_digest(self, path: PathType, algorithm: str) -> str | None:
        return await self._guard(self.inner.stored_digest, path, algorithm)

    async def rename(self, source: PathType, destination: PathType) -> PathType:
        self.forget_stats()
        return await self._guard(self.inner.rename, source, destination)

    async def chmod(self, path: PathType, mode: int) -> None:
        self.forget_stats()
        await self._guard(self.inner.chmod, path, mode)

    async def set_mtime(self, path: PathType, mtime: float) -> None:
        self.forget_stats()
        await self._guard(self.inner.set_mtime, path, mtime)

    async def confine(self, base_path: PathType, relative: PurePosixPath) -> PathType:
        return await self._guard(self.inner.confine, base_path, relative)


_STAT_METHODS = ("exists", "is_dir", "is_file", "stat")


def _stat_is_consistent(backend: type[AbstractPathIO[Any]]) -> bool:
    """``consistent_stat`` holds for ``backend``: the class that declared it, and no
    subclass below it has overridden one of the methods it speaks for."""
    for declaring in backend.__mro__:
        if "consistent_stat" in vars(declaring):
            if not vars(declaring)["consistent_stat"]:
                return False
            return all(getattr(backend, name) is getattr(declaring, name) for name in _STAT_METHODS)
    return False


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
