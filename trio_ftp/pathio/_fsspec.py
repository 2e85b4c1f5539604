"""The object-storage backend, :class:`FsspecPathIO`: any fsspec file system (S3 through
s3fs, GCS, Azure, memory, local...) as an FTP tree.

Kept apart because it is the only backend over a library that may not be installed
(``pip install 'trio_ftp[s3]'``), and because an object store is not a disk: objects are
written whole, directories are key prefixes and ``name/`` marker objects, a rename is a
copy then a delete. What a store can and cannot do is declared in :meth:`capabilities`,
which FEAT and the commands follow. fsspec's calls block, so each one runs in a worker
thread under the backend's own capacity limiter, never on the event loop.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import logging
import os
import re
import stat as stat_module
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import PurePath, PurePosixPath
from typing import IO, Any, ClassVar, Protocol, TypeVar

import trio

from ..logsafe import printable
from ._base import AbstractPathIO, Capabilities, _check_mode, _check_relative, _Lister
from ._objectstore import Flavour, flavour_of

__all__ = [
    "DEFAULT_PART_SIZE",
    "DEFAULT_READ_BLOCK_SIZE",
    "DEFAULT_STORAGE_THREADS",
    "FsspecPathIO",
    "StorageRoot",
    "is_storage_url",
    "redacted",
]

logger = logging.getLogger("trio_ftp.pathio")
T = TypeVar("T")

#: Bytes per multipart part of an upload: what one upload holds in memory (S3 needs 5 MiB
#: at least, and at most 10,000 parts: 8 MiB parts allow objects up to 78 GiB).
DEFAULT_PART_SIZE = 8 * 1024 * 1024
#: Bytes fetched per range request of a download.
DEFAULT_READ_BLOCK_SIZE = 8 * 1024 * 1024
#: Worker threads the backend's blocking calls may use at once (per server).
DEFAULT_STORAGE_THREADS = 16

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: A user's ``base_path`` given as a URL, as :class:`pathlib.Path` keeps it ("s3:/b/p").
_COLLAPSED_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?:/(.*))?")


def is_storage_url(text: str) -> bool:
    """Whether ``text`` names a storage URL (``s3://bucket/prefix``, ``memory://``...)
    rather than a local directory."""
    return _URL.match(text) is not None


class FileSystem(Protocol):
    """The part of :class:`fsspec.AbstractFileSystem` this backend uses."""

    protocol: str | tuple[str, ...]
    root_marker: str

    def info(self, path: str) -> dict[str, Any]: ...

    def ls(self, path: str, detail: bool = ...) -> builtins.list[dict[str, Any]]: ...

    def open(self, path: str, mode: str = ..., **kwargs: Any) -> IO[bytes]: ...

    def mkdir(self, path: str, create_parents: bool = ...) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def rm_file(self, path: str) -> None: ...

    def rm(self, path: str, recursive: bool = ...) -> None: ...

    def copy(self, path1: str, path2: str, recursive: bool = ...) -> None: ...

    def invalidate_cache(self, path: str | None = None) -> None: ...


def redacted(url: str) -> str:
    """``url`` without the user information a URL may carry (``s3://key:secret@bucket``)."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


@dataclass(frozen=True)
class StorageRoot:
    """Where a :class:`FsspecPathIO` serves from, and how it talks to the store.

    Made by :meth:`FsspecPathIO.for_root`; shared by every session of the server.
    """

    url: str
    file_system: FileSystem = field(repr=False)
    path: str = field(repr=False)
    storage_options: Mapping[str, object] = field(repr=False)
    part_size: int = DEFAULT_PART_SIZE
    read_block_size: int = DEFAULT_READ_BLOCK_SIZE
    recursive_rename: bool = False
    threads: int = DEFAULT_STORAGE_THREADS
    _others: dict[str, FileSystem] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.part_size < 5 * 1024 * 1024:
            raise ValueError(
                f"part_size must be 5 MiB or more (S3's minimum), got {self.part_size}"
            )
        if self.read_block_size <= 0 or self.threads <= 0:
            raise ValueError("read_block_size and threads must be positive")

    @property
    def protocol(self) -> str:
        """The root's protocol, as the first component of every real path."""
        return _main_protocol(self.file_system)

    @property
    def real_root(self) -> PurePosixPath:
        """The real path of the root URL."""
        return _real_path(self.protocol, self.path)

    def file_system_for(self, protocol: str) -> FileSystem:
        """The file system of ``protocol``: the root's, or one made from fsspec's usual
        configuration (environment, config files) for a user root of another protocol."""
        if protocol == self.protocol or protocol in _protocols(self.file_system):
            return self.file_system
        with self._lock:
            found = self._others.get(protocol)
            if found is None:
                import fsspec  # type: ignore[import-untyped,import-not-found,unused-ignore]

                found = fsspec.filesystem(protocol, use_listings_cache=False)
                self._others[protocol] = found
            return found


def _protocols(file_system: FileSystem) -> tuple[str, ...]:
    protocol = file_system.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _main_protocol(file_system: FileSystem) -> str:
    return _protocols(file_system)[0]


def _real_path(protocol: str, path: str) -> PurePosixPath:
    """The real path of ``path`` in the file system of ``protocol``: ``/<protocol>/<path>``
    (so ``.parent``, ``.name`` and ``/`` work as for any path)."""
    return PurePosixPath("/", protocol, *[part for part in path.split("/") if part])


def _open_root(url: str, storage_options: Mapping[str, object]) -> tuple[FileSystem, str]:
    """The file system and path of ``url``; ImportError names the extra to install."""
    try:
        import fsspec  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ImportError(
            "serving a storage URL needs fsspec: pip install 'trio_ftp[s3]'"
        ) from None
    options = dict(storage_options)
    # Other instances and sessions change the store: never answer from a stale listing.
    options.setdefault("use_listings_cache", False)
    try:
        file_system, path = fsspec.url_to_fs(url, **options)
    except ImportError as exc:
        raise ImportError(
            f"serving {redacted(url)} needs a package fsspec names ({exc}); for S3: "
            "pip install 'trio_ftp[s3]'"
        ) from None
    return file_system, path


class _StoreFile:
    """An open object: the fsspec file, and a lock so that a discard waits for a write
    still running in an abandoned worker thread."""

    def __init__(self, raw: IO[bytes], mode: str, flavour: Flavour, committing: bool) -> None:
        self.raw = raw
        self.mode = mode
        self.flavour = flavour
        #: Opened with ``autocommit=False``: the object shows only on :meth:`finish`.
        self.committing = committing
        self.lock = threading.Lock()

    def read(self, count: int) -> bytes:
        with self.lock:
            return self.raw.read(count)

    def write(self, data: bytes) -> int:
        with self.lock:
            self.raw.write(data)
            return len(data)

    def seek(self, offset: int, whence: int) -> int:
        with self.lock:
            return self.raw.seek(offset, whence)

    def finish(self) -> None:
        """Close; a written object becomes visible, whole."""
        with self.lock:
            self.raw.close()
            if self.committing:
                self.raw.commit()  # type: ignore[attr-defined]

    def throw_away(self) -> None:
        """Close without making what was written visible (abort the multipart upload)."""
        with self.lock:
            if self.mode == "rb":
                self.raw.close()
            else:
                self.flavour.discard(self.raw)


def _mtime(info: Mapping[str, Any]) -> float:
    """The modification time in an fsspec ``info`` dict (0 when the store has none, as
    for a prefix without a marker object)."""
    for key in ("LastModified", "mtime", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def _stat_of(info: Mapping[str, Any]) -> os.stat_result:
    """An :class:`os.stat_result` from object metadata; the inode number is a hash of the
    name, so MLSD's ``unique`` fact tells objects apart."""
    kind = info.get("type")
    if kind == "directory":
        mode, size = stat_module.S_IFDIR | 0o755, 0
    elif kind == "file":
        mode, size = stat_module.S_IFREG | 0o644, int(info.get("size") or 0)
    else:  # a link or device of a local file system: neither listed as a file nor entered
        mode, size = stat_module.S_IFSOCK | 0o644, 0
    mtime = _mtime(info)
    name = str(info.get("name", "")).rstrip("/").encode("utf-8", "surrogateescape")
    inode = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big")
    return os.stat_result((mode, inode, 0, 1, 0, 0, size, int(mtime), int(mtime), int(mtime)))


def _error(code: int, text: str) -> OSError:
    return OSError(code, text)


#: Errors a store raises that are answers about the path, passed through as they are.
_PATH_ANSWERS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
_ERRNO_OF: dict[type[OSError], int] = {
    FileNotFoundError: errno.ENOENT,
    FileExistsError: errno.EEXIST,
    IsADirectoryError: errno.EISDIR,
    NotADirectoryError: errno.ENOTDIR,
    PermissionError: errno.EACCES,
}
#: Errnos of the store that say "try again later": throttling (S3's SlowDown and 503 come
#: as EBUSY from s3fs), remote errors and timeouts.
_TRANSIENT = frozenset({errno.EBUSY, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EAGAIN, errno.EIO})
#: Errnos that are permanent answers with a clear meaning.
_PERMANENT = frozenset(
    {errno.EINVAL, errno.ENOTEMPTY, errno.EOPNOTSUPP, errno.ENAMETOOLONG, errno.EMSGSIZE}
)


def translate(exc: Exception) -> OSError:
    """A store's exception as the :class:`OSError` an FTP reply is chosen from:
    not found and access denied stay (``550``); throttling, timeouts and anything
    unexpected (a botocore or HTTP error) become transient (``451``)."""
    if isinstance(exc, _PATH_ANSWERS):
        if exc.errno is None:  # s3fs raises them with a message only
            kind = next(kind for kind in _ERRNO_OF if isinstance(exc, kind))
            return kind(_ERRNO_OF[kind], _summary(exc))
        return exc
    if isinstance(exc, OSError) and exc.errno in _PERMANENT:
        return exc
    if isinstance(exc, TimeoutError) or (isinstance(exc, OSError) and exc.errno in _TRANSIENT):
        return _error(errno.EAGAIN, f"storage busy or timed out: {_summary(exc)}")
    return _error(errno.EIO, f"storage error: {_summary(exc)}")


def _summary(exc: BaseException) -> str:
    """One line about ``exc`` for the log (escaped: it may quote a client's key)."""
    return printable(f"{type(exc).__name__}: {exc}"[:300])


class _Shared:
    """What every session of one server shares: the threads' limiter, and the errors
    already logged (each kind once)."""

    def __init__(self, root: StorageRoot) -> None:
        self.root = root
        self.limiter = trio.CapacityLimiter(root.threads)
        self.logged: set[str] = set()


class FsspecPathIO(AbstractPathIO[PurePosixPath]):
    """Serve a storage URL (``s3://bucket/prefix``, any fsspec file system) as the FTP tree.

    Make the ``path_io_factory`` with :meth:`for_root`::

        factory = FsspecPathIO.for_root("s3://bucket/prefix")
        server = Server(users, path_io_factory=factory)

    A user's ``base_path`` is a path below the root URL (``"."``, the default, is the
    root itself; ``"alice"`` is ``s3://bucket/prefix/alice``), or a URL of its own
    (``"s3://other-bucket/bob"``).

    On an object store (:meth:`capabilities`): uploads stream as multipart parts of
    ``part_size`` bytes and show only when complete; a failed or aborted one is discarded
    (the multipart upload is aborted). ``APPE`` and ``REST`` + ``STOR`` are refused;
    ``MFMT`` and ``SITE CHMOD`` are not offered. ``MKD`` writes a ``name/`` marker object;
    a prefix with objects but no marker is a directory too. A file's rename is a copy
    then a delete (not atomic); a non-empty directory's is refused unless
    ``recursive_rename``. Downloads read ranges, so ``REST`` + ``RETR`` starts at the
    offset.
    """

    consistent_stat = True
    #: Set by :meth:`for_root` on the subclass it returns.
    root: ClassVar[StorageRoot | None] = None

    @classmethod
    def for_root(
        cls,
        url: str,
        storage_options: Mapping[str, object] | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        read_block_size: int = DEFAULT_READ_BLOCK_SIZE,
        recursive_rename: bool = False,
        threads: int = DEFAULT_STORAGE_THREADS,
    ) -> type[FsspecPathIO]:
        """A ``path_io_factory`` serving ``url``.

        Args:
            url: the root, e.g. ``s3://bucket/prefix`` or ``memory://``.
            storage_options: keywords for the file system (for S3: ``endpoint_url``,
                ``key``, ``secret``, ``profile``...); without them it reads its usual
                sources (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``... for S3).
            part_size: bytes per uploaded part, and so the memory one upload holds.
            read_block_size: bytes per range read of a download.
            recursive_rename: let RNFR/RNTO rename a non-empty directory (a copy of every
                object, then their removal: slow and not atomic).
            threads: worker threads the store's calls may use at once.

        Raises:
            ValueError: ``url`` is not a storage URL, or fsspec does not know its protocol.
            ImportError: fsspec, or the protocol's package (s3fs...), is not installed.
        """
        if not is_storage_url(url):
            raise ValueError(f"not a storage URL (like s3://bucket/prefix): {url!r}")
        options = dict(storage_options or {})
        file_system, path = _open_root(url, options)
        root = StorageRoot(
            url=redacted(url),
            file_system=file_system,
            path=path,
            storage_options=options,
            part_size=part_size,
            read_block_size=read_block_size,
            recursive_rename=recursive_rename,
            threads=threads,
        )
        return type(cls.__name__, (cls,), {"root": root, "__module__": cls.__module__})

    def __init__(
        self,
        timeout: float | None = None,
        connection: object | None = None,
        state: object | None = None,
    ) -> None:
        super().__init__(timeout=timeout, connection=connection, state=state)
        if self.root is None:
            raise TypeError("use FsspecPathIO.for_root(url) as the path_io_factory")
        if state is None or not isinstance(state, _Shared) or state.root is not self.root:
            state = _Shared(self.root)
        self._shared: _Shared = state
        self._log: logging.Logger | logging.LoggerAdapter[Any] = (
            getattr(connection, "log", None) or logger
        )
        #: The user roots :meth:`confine` has seen: directories even when empty.
        self._roots: set[PurePath] = set()
        self._known_roots: dict[str, PurePosixPath] = {}

    @property
    def state(self) -> _Shared:
        """The server-wide part (threads' limiter); pass it on as ``state=``."""
        return self._shared

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._shared.root.url!r})"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            write_at_offset=False,
            set_mtime=False,
            chmod=False,
            rename_directories=self._shared.root.recursive_rename,
            whole_file_writes=True,
        )

    # plumbing --------------------------------------------------------------------------------
    def _locate(self, path: PurePath) -> tuple[FileSystem, str, Flavour]:
        """The file system, its path and its flavour for a real path ``/<protocol>/...``."""
        parts = PurePosixPath(path).parts
        if len(parts) < 2 or parts[0] != "/":
            raise _error(errno.EINVAL, f"not a path of this backend: {str(path)!r}")
        file_system = self._shared.root.file_system_for(parts[1])
        inner = "/".join(parts[2:])
        return file_system, file_system.root_marker + inner, flavour_of(file_system)

    async def _run(self, call: Callable[[], T]) -> T:
        """``call()`` in a worker thread, its exceptions translated (:func:`translate`).

        Abandoned on cancellation: a store call that hangs costs a thread until the
        store's own timeout, never the session's ABOR or ``path_timeout``.
        """
        try:
            return await trio.to_thread.run_sync(
                call, limiter=self._shared.limiter, abandon_on_cancel=True
            )
        except Exception as exc:
            translated = translate(exc)
            if translated.errno in (errno.EAGAIN, errno.EIO):  # the store failed: say so
                self._log_once(translated)
            raise translated from exc

    def _log_once(self, error: OSError) -> None:
        """Log a store failure at ERROR the first time its kind is seen (per server)."""
        kind = str(error.strerror).split(":", 2)[:2]
        key = ":".join(kind)
        if key in self._shared.logged or len(self._shared.logged) > 1000:
            return
        self._shared.logged.add(key)
        self._log.error("object store: %s (answered 451; logged once)", error.strerror)

    def _info(self, path: PurePath) -> dict[str, Any]:
        """Blocking: ``info`` of a real path (FileNotFoundError when it does not exist).

        A user's root is a directory even while no object is under it (a new prefix).
        """
        file_system, inner, _ = self._locate(path)
        try:
            return file_system.info(inner)
        except FileNotFoundError:
            if path in self._roots:
                return {"name": inner, "type": "directory", "size": 0}
            raise

    def _children(self, path: PurePath) -> builtins.list[tuple[str, dict[str, Any]]]:
        """Blocking: ``(name, info)`` of a directory's children, sorted, markers left out."""
        file_system, inner, _ = self._locate(path)
        try:
            entries = file_system.ls(inner, detail=True)
        except FileNotFoundError:
            if path in self._roots:
                return []
            raise
        own = inner.rstrip("/")
        only = entries[0] if len(entries) == 1 else {}
        if only.get("type") == "file" and str(only.get("name", "")) == own:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")  # ls of a file
        found: dict[str, dict[str, Any]] = {}
        for entry in entries:
            full = str(entry.get("name", ""))
            if full.rstrip("/") == own:
                continue  # the directory's own marker object
            name = full.rstrip("/").rpartition("/")[2]
            if name in ("", ".", ".."):
                continue  # keys no path can name
            if name not in found or entry.get("type") == "directory":
                found[name] = entry  # a key and a prefix of one name: the prefix wins
        return sorted(found.items())

    def _require_directory(self, path: PurePath) -> None:
        """Blocking: FileNotFoundError/NotADirectoryError unless ``path`` is a directory."""
        info = self._info(path)
        if info.get("type") != "directory":
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")

    def _kind(self, path: PurePath) -> str | None:
        """Blocking: ``"file"``, ``"directory"`` (or another fsspec type), None if absent."""
        try:
            return str(self._info(path).get("type"))
        except FileNotFoundError:
            return None

    # the interface ---------------------------------------------------------------------------
    async def stat(self, path: PurePosixPath) -> os.stat_result:
        return _stat_of(await self._run(partial(self._info, path)))

    async def exists(self, path: PurePosixPath) -> bool:
        return await self._run(partial(self._kind, path)) is not None

    async def is_dir(self, path: PurePosixPath) -> bool:
        return await self._run(partial(self._kind, path)) == "directory"

    async def is_file(self, path: PurePosixPath) -> bool:
        return await self._run(partial(self._kind, path)) == "file"

    def list(self, path: PurePosixPath) -> AsyncIterator[PurePosixPath]:
        async def fetch() -> builtins.list[PurePosixPath]:
            children = await self._run(partial(self._children, path))
            return [path / name for name, _ in children]

        return _Lister(fetch)

    async def names_with_stats(
        self, path: PurePosixPath
    ) -> builtins.list[tuple[str, os.stat_result]]:
        """One listing (paged through by the store's client) with each object's facts."""
        children = await self._run(partial(self._children, path))
        return [(name, _stat_of(info)) for name, info in children]

    async def mkdir(
        self, path: PurePosixPath, *, parents: bool = False, exist_ok: bool = False
    ) -> None:
        await self._run(partial(self._mkdir, path, parents, exist_ok))

    def _mkdir(self, path: PurePosixPath, parents: bool, exist_ok: bool) -> None:
        kind = self._kind(path)
        if kind is not None:
            if exist_ok and kind == "directory":
                return
            raise FileExistsError(errno.EEXIST, "file exists")
        parent_kind = self._kind(path.parent)
        if parent_kind is None and parents and path.parent != path:
            self._mkdir(path.parent, True, True)
        elif parent_kind is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory")
        elif parent_kind != "directory":
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        file_system, inner, flavour = self._locate(path)
        flavour.make_directory(file_system, inner)

    async def rmdir(self, path: PurePosixPath) -> None:
        await self._run(partial(self._rmdir, path))

    def _rmdir(self, path: PurePosixPath) -> None:
        self._require_directory(path)
        if self._children(path):
            raise OSError(errno.ENOTEMPTY, "directory not empty")
        file_system, inner, flavour = self._locate(path)
        flavour.remove_directory(file_system, inner)

    async def unlink(self, path: PurePosixPath) -> None:
        await self._run(partial(self._unlink, path))

    def _unlink(self, path: PurePosixPath) -> None:
        kind = self._kind(path)
        if kind is None:
            raise FileNotFoundError(errno.ENOENT, "no such file")
        if kind == "directory":
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        file_system, inner, _ = self._locate(path)
        file_system.rm_file(inner)

    async def rename(self, source: PurePosixPath, destination: PurePosixPath) -> PurePosixPath:
        """A file: copy, then delete the source (not atomic). An empty directory: its
        marker moves. A non-empty one: :class:`OSError` ``EOPNOTSUPP`` unless
        ``recursive_rename`` (then every object is copied, then removed)."""
        await self._run(partial(self._rename, source, destination))
        return destination

    def _rename(self, source: PurePosixPath, destination: PurePosixPath) -> None:
        if source == destination:
            return
        kind = self._kind(source)
        if kind is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory")
        self._require_directory(destination.parent)
        target = self._kind(destination)
        source_fs, source_inner, flavour = self._locate(source)
        destination_fs, destination_inner, _ = self._locate(destination)
        if source_fs is not destination_fs:
            raise OSError(errno.EXDEV, "rename across file systems")
        if kind == "file":
            if target == "directory":
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            source_fs.copy(source_inner, destination_inner)
            source_fs.rm_file(source_inner)
            return
        if source in destination.parents:
            raise OSError(errno.EINVAL, "can't move a directory into itself")
        if target is not None:
            if target != "directory":
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            if self._children(destination):
                raise OSError(errno.ENOTEMPTY, "directory not empty")
        if not self._children(source):
            if target is None:
                flavour.make_directory(source_fs, destination_inner)
            flavour.remove_directory(source_fs, source_inner)
            return
        if not self._shared.root.recursive_rename:
            raise OSError(errno.EOPNOTSUPP, "renaming a non-empty directory is not supported")
        flavour.copy_tree(source_fs, source_inner, destination_inner)
        flavour.remove_tree(source_fs, source_inner)

    async def _open(self, path: PurePosixPath, mode: str) -> _StoreFile:
        _check_mode(mode)
        return await self._run(partial(self._open_object, path, mode))

    def _open_object(self, path: PurePosixPath, mode: str) -> _StoreFile:
        root = self._shared.root
        file_system, inner, flavour = self._locate(path)
        if mode in ("ab", "r+b"):
            raise OSError(errno.EOPNOTSUPP, "objects are written whole")
        try:
            info: dict[str, Any] | None = self._info(path)
        except FileNotFoundError:
            info = None
        kind = None if info is None else info.get("type")
        if kind == "directory":
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if mode == "rb":
            if info is None:
                raise FileNotFoundError(errno.ENOENT, "no such file")
            size = int(info.get("size") or 0)
            raw = flavour.open_for_reading(file_system, inner, root.read_block_size, size)
            return _StoreFile(raw, mode, flavour, committing=False)
        if mode == "xb" and kind is not None:
            raise FileExistsError(errno.EEXIST, "file exists")
        self._require_directory(path.parent)
        raw, committing = flavour.open_for_writing(file_system, inner, root.part_size)
        return _StoreFile(raw, mode, flavour, committing)

    async def read(self, file: _StoreFile, block_size: int) -> bytes:
        return await self._run(partial(file.read, block_size))

    async def write(self, file: _StoreFile, data: bytes) -> int:
        """Buffered up to a part; a full part is uploaded within this call, so a store
        slower than the client slows the client down (no queue grows)."""
        return await self._run(partial(file.write, data))

    async def seek(self, file: _StoreFile, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._run(partial(file.seek, offset, whence))

    async def close(self, file: _StoreFile) -> None:
        await self._run(file.finish)

    async def discard(self, file: _StoreFile) -> None:
        """Abort the upload: nothing of it shows in the store."""
        await self._run(file.throw_away)

    async def stored_digest(self, path: PurePosixPath, algorithm: str) -> str | None:
        """S3's ETag, when it is the object's MD5 (a single-part upload without KMS)."""
        info = await self._run(partial(self._info, path))
        _, _, flavour = self._locate(path)
        return flavour.stored_digest(info, algorithm)

    async def confine(self, base_path: PurePath, relative: PurePosixPath) -> PurePosixPath:
        """The real path of ``relative`` under the user's root: ``base_path`` is a URL
        (``s3://bucket/alice``, which :class:`pathlib.Path` shows as ``s3:/bucket/alice``)
        or a path below the root URL. Keys have no symlinks: nothing can lead out."""
        relative = _check_relative(relative)
        root = self._known_roots.get(str(base_path))
        if root is not None:
            await trio.lowlevel.checkpoint()
            return root / relative
        if _COLLAPSED_URL.fullmatch(str(base_path)):  # may import and make a file system
            root = await self._run(partial(self._user_root, base_path))
        else:
            await trio.lowlevel.checkpoint()
            root = self._user_root(base_path)
        if len(self._roots) < 64:  # one user per session: a handful at most
            self._roots.add(root)
            self._known_roots[str(base_path)] = root
        return root / relative

    def _user_root(self, base_path: PurePath | str) -> PurePosixPath:
        text = str(base_path)
        found = _COLLAPSED_URL.fullmatch(text)
        if found is not None:
            protocol, rest = found.group(1), found.group(2) or ""
            file_system = self._shared.root.file_system_for(protocol)
            inner = _strip(file_system, f"{protocol}://{file_system.root_marker}{rest}")
            return _real_path(_main_protocol(file_system), inner)
        below = PurePosixPath(text.lstrip("/"))
        if ".." in below.parts:
            raise ValueError(f"a user root below the storage root may not contain '..': {text!r}")
        return self._shared.root.real_root / below


def _strip(file_system: FileSystem, url: str) -> str:
    """The file system's own path for ``url``."""
    strip: Callable[[str], str] = getattr(file_system, "_strip_protocol")  # noqa: B009
    return strip(url)
