"""The local-disk backend, :class:`PathIO`: blocking calls run in trio worker threads.

Separate because it is the only backend that touches the real file system.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

import trio

from ..errors import PermissionDenied
from ._base import AbstractPathIO, _check_mode, _check_relative, _Lister

T = TypeVar("T")


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

    async def chmod(self, path: Path, mode: int) -> None:
        """:func:`os.chmod` in a worker thread. A symlink is followed: its target is what
        :meth:`confine` checked to be inside the user's root."""
        await _in_thread(functools.partial(os.chmod, path, mode & 0o7777), read_only=False)

    async def set_mtime(self, path: Path, mtime: float) -> None:
        """:func:`os.utime` in a worker thread (the access time is left as it was)."""

        def utime() -> None:
            os.utime(path, (os.stat(path).st_atime, mtime))

        await _in_thread(utime, read_only=False)

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
