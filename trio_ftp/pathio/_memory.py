"""The in-memory backend, :class:`MemoryPathIO`, and its :class:`MemoryTree`.

Separate because it reimplements Linux file-system semantics itself (for tests and
throwaway servers), which is a lot of code the other backends never need.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import stat as stat_module
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePath, PurePosixPath
from typing import ClassVar

import trio

from ._base import AbstractPathIO, _check_mode, _check_relative, _Lister


class _Node:
    #: Permission bits of a new node (``st_mode & 0o7777``); ``chmod`` changes them.
    default_mode = 0o644

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.mode = self.default_mode
        self.ctime = self.mtime = self.atime = time.time()

    def touch(self) -> None:
        self.ctime = self.mtime = time.time()


class _Dir(_Node):
    default_mode = 0o755

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


def _stat(node: _Node) -> os.stat_result:
    """A node's stat result, shaped like the local file system's."""
    if isinstance(node, _File):
        mode, nlink, size = stat_module.S_IFREG | node.mode, 1, len(node.data)
    else:
        mode, nlink, size = stat_module.S_IFDIR | node.mode, 2, 0
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

    consistent_stat = True
    #: The tree an instance made without ``state`` starts from (see :meth:`with_files`);
    #: None: a new empty tree.
    seed_tree: ClassVar[MemoryTree | None] = None

    def __init__(
        self,
        timeout: float | None = None,
        connection: object | None = None,
        state: object | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connection=connection, state=state)
        if state is None:
            state = self.seed_tree if self.seed_tree is not None else MemoryTree()
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

    @classmethod
    def with_files(cls, files: Mapping[str, bytes | None]) -> type[MemoryPathIO]:
        """A backend class for ``Server(path_io_factory=...)`` whose sessions all share one
        tree seeded with ``files`` (as :meth:`from_files` takes them).

        Example:
            ``Server(users, path_io_factory=MemoryPathIO.with_files({"/in/a.txt": b"hi"}))``
        """
        tree = cls.from_files(files).tree
        namespace = {"seed_tree": tree, "__module__": cls.__module__}
        return type(f"Seeded{cls.__name__}", (cls,), namespace)

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
            if existing is not None and mode == "xb":
                raise _error(errno.EEXIST, path)
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

    async def names_with_stats(
        self, path: PurePosixPath
    ) -> builtins.list[tuple[str, os.stat_result]]:
        """Every child's name with its stat, from one lookup of the directory."""
        await trio.lowlevel.checkpoint()
        path = _memory_path(path)
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise _error(errno.ENOTDIR, path)
        return [(name, _stat(node.children[name])) for name in sorted(node.children)]

    async def stat(self, path: PurePosixPath) -> os.stat_result:
        await trio.lowlevel.checkpoint()
        return _stat(self._lookup(_memory_path(path)))

    async def chmod(self, path: PurePosixPath, mode: int) -> None:
        """Store the permission bits (``mode & 0o7777``) in the node; ``stat`` shows them.

        Only recorded: the tree does not enforce permissions.
        """
        await trio.lowlevel.checkpoint()
        node = self._lookup(_memory_path(path))
        node.mode = mode & 0o7777
        node.ctime = time.time()

    async def set_mtime(self, path: PurePosixPath, mtime: float) -> None:
        await trio.lowlevel.checkpoint()
        self._lookup(_memory_path(path)).mtime = mtime

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
