"""When a file-system call may run on the event loop: the one policy, and the calls that
use it.

A worker-thread call costs far more than a cached lookup (on a 2-core VM about 160 us of
CPU against 5 us), so the local backend (:class:`~trio_ftp.pathio.PathIO`) first tries a
few calls on the event loop, in forms the kernel answers without waiting or not at all:

* lookups (``stat``, ``exists``, ``is_dir``, ``is_file``, opening for reading) with
  ``openat2(RESOLVE_CACHED | RESOLVE_BENEATH | RESOLVE_NO_XDEV)``: from the dentry cache
  only, confined, and never across a mount point;
* reads with ``preadv2(RWF_NOWAIT)``: from the page cache only;
* the ``lseek`` of a file opened for reading, and its ``close`` (unless it is the last
  link to a removed file, whose close frees blocks).

Whatever would wait answers ``EAGAIN`` at once and goes to a worker thread. Writes,
creations, renames, removals, listings and ``chmod``/``utime`` always go to a thread.

The policy (:func:`allowed`): only when the backend's ``event_loop_calls`` is on (the
default), beneath a root :func:`classify_root` found on a file system of
:data:`SAFE_FILE_SYSTEMS` (ext2/3/4, XFS, Btrfs, tmpfs) on a kernel with ``RESOLVE_CACHED``
(5.12), and for reads only on a file on that same file system. Never on NFS, SMB, FUSE, 9p
or overlayfs, whose ``fstat`` or cached lookups may still ask a server or a lower layer.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

from . import _beneath

__all__ = [
    "RWF_NOWAIT",
    "SAFE_FILE_SYSTEMS",
    "allowed",
    "classify_root",
    "close_nowait",
    "read_nowait",
    "remember",
]

#: ``statfs`` ``f_type`` of the file systems where a call may run on the loop: ext2/3/4,
#: XFS, Btrfs and tmpfs, local file systems whose inodes, once a path resolves from the
#: dentry cache, are in memory, so a cached lookup or ``fstat`` never waits. Not NFS, SMB,
#: FUSE or 9p (their ``fstat`` may ask a server), not overlayfs (its lower layer may be
#: any of those), and none that nobody here has checked (F2FS, ZFS, bcachefs...).
SAFE_FILE_SYSTEMS = frozenset({0xEF53, 0x58465342, 0x9123683E, 0x01021994})

RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)

#: Roots :func:`classify_root` has checked (True: calls beneath may run on the loop); a cap
#: keeps a user manager with endless roots from growing it without bound.
_classified: dict[str, bool] = {}
_ROOTS_REMEMBERED = 1024


def classify_root(path: str) -> bool:
    """Whether calls beneath ``path`` may be tried on the event loop: ``RESOLVE_CACHED``
    works and ``path`` is on a file system of :data:`SAFE_FILE_SYSTEMS`. Blocking
    (``statfs``): call it from a worker thread, once per root (:func:`remember`)."""
    if not _beneath.cached_lookups_work():
        return False
    return _beneath.statfs_type(path) in SAFE_FILE_SYSTEMS


def known(root: str) -> bool:
    """Whether ``root`` was classified already."""
    return root in _classified


def remember(root: str, safe: bool) -> None:
    """Keep :func:`classify_root`'s answer for ``root``."""
    if len(_classified) >= _ROOTS_REMEMBERED:
        _classified.clear()
    _classified[root] = safe


def allowed(enabled: bool, root: str) -> bool:
    """The one policy: the backend allows loop calls (``enabled``) and ``root`` is known
    safe for them."""
    return enabled and _classified.get(root, False)


class NowaitFile(Protocol):
    """A file opened for reading whose page-cache reads reuse one buffer."""

    buffer: bytearray

    def fileno(self) -> int: ...

    def close(self) -> None: ...


def read_nowait(file: NowaitFile, size: int) -> bytes:
    """Up to ``size`` bytes from the page cache at the file's position (advancing it);
    BlockingIOError when none of them is cached."""
    if len(file.buffer) < size:
        file.buffer = bytearray(size)
    with memoryview(file.buffer) as view:
        count = os.preadv(file.fileno(), [view[:size]], -1, RWF_NOWAIT)  # -1: file position
        return bytes(view[:count])


def close_nowait(file: NowaitFile) -> None:
    """Close a file opened for reading on the loop, unless it is the last link to a removed
    file (then the close frees its blocks, which may take long): BlockingIOError."""
    if os.fstat(file.fileno()).st_nlink == 0:
        raise BlockingIOError(errno.EAGAIN, "last reference to a removed file")
    file.close()
