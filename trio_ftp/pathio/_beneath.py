"""Confinement at the moment of use: Linux ``openat2(2)`` with ``RESOLVE_BENEATH``.

Theory of operation. :meth:`PathIO.confine` checks a path once, but the path is used
later; a local user who swaps a directory for a symlink in between would escape a plain
check. So every operation on a confined path resolves it again, in the same call as the
operation (in a worker thread, or on the event loop for cached lookups, below), relative
to an ``O_PATH`` descriptor of the user's root with ``RESOLVE_BENEATH |
RESOLVE_NO_MAGICLINKS``: the kernel refuses any step (``..``, a symlink, an absolute
symlink) that would leave the root, at the moment of use. Operations on a name (unlink,
rename, mkdir, rmdir) resolve the parent this way and then act with the
``dir_fd=`` forms on the final component, which is never followed.

``RESOLVE_BENEATH`` also refuses absolute symlinks that point back inside the root (the
old realpath check allowed them). On that ``EXDEV`` :meth:`Root.open` computes the real
path, checks it is inside the root, and resolves that again beneath the root, so the kernel
still confines the final resolution.

Cached lookups. With ``RESOLVE_CACHED`` (Linux 5.12) the kernel resolves a path only from
its dentry cache and answers ``EAGAIN`` rather than read the disk; :class:`Root` takes a
``cached`` flag that turns it on, and its opens then raise :class:`BlockingIOError` instead
of waiting. The local backend uses that to serve cached paths on the event loop itself
(no worker-thread call), and only where ``_onloop.classify_root`` found a safe local file system,
whose ``fstat`` of an open descriptor never waits for a server; cached opens also refuse to
cross a mount point (``RESOLVE_NO_XDEV``), so a network mount below the root is used from a
worker thread only.

Where ``openat2`` is missing (kernels before 5.6, seccomp filters answering ``ENOSYS`` or
``EPERM``, no ``/proc/self/fd``, other systems), :func:`supported` is False and the backend
falls back to the realpath check in ``confine`` alone. Separate from ``_local`` because it
is the only code that talks to the kernel through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import sys
from typing import Any, NamedTuple

from ..errors import PermissionDenied

__all__ = [
    "Confined",
    "Root",
    "cached_lookups_work",
    "is_within",
    "openat2",
    "statfs_type",
    "supported",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_CACHED = 0x20
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
_AT_FDCWD = -100

#: ``O_PATH`` (Linux only; 0 elsewhere, where this module is never used).
O_PATH: int = getattr(os, "O_PATH", 0)

# openat2 arrived (Linux 5.6) after the syscall tables were unified: it is 437 everywhere we
# know of. Only listed machines are tried, so an unknown ABI never gets a wrong syscall.
_OPENAT2 = 437
_MACHINES = frozenset(
    {"x86_64", "amd64", "aarch64", "arm64", "armv7l", "armv8l", "i386", "i686", "riscv64"}
    | {"ppc64le", "ppc64", "s390x", "loongarch64"}
)
_RETRIES = 16  # EAGAIN: a concurrent rename or mount raced a ".." step; the kernel asks to retry

OUTSIDE = "path is outside the user's root"


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


@functools.cache
def _libc_syscall() -> Any | None:
    """libc's ``syscall`` function, or None where openat2 cannot be called."""
    if not sys.platform.startswith("linux") or platform.machine().lower() not in _MACHINES:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    return function


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, *, resolve: int = _RESOLVE) -> int:
    """``openat2(dir_fd, path, {flags | O_CLOEXEC, mode, resolve})``; ``resolve`` is
    ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` unless given.

    Returns:
        The new file descriptor; the caller closes it.

    Raises:
        BlockingIOError: with ``RESOLVE_CACHED``, the path is not all in the dentry cache.
        OSError: what the kernel answered (``EXDEV`` for a step out of ``dir_fd``).
        ValueError: ``path`` contains a NUL byte (C would silently cut it there).
    """
    function = _libc_syscall()
    if function is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("embedded null byte")
    # openat2 refuses a mode without O_CREAT (unlike openat, which ignores it).
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    code = errno.EAGAIN
    # EAGAIN under RESOLVE_CACHED means "not cached": retrying would only ask again.
    for _ in range(1 if resolve & RESOLVE_CACHED else _RETRIES):
        fd = function(
            ctypes.c_long(_OPENAT2),
            ctypes.c_long(dir_fd),
            ctypes.c_char_p(encoded),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(code, os.strerror(code), path)


@functools.cache
def supported() -> bool:
    """Whether ``openat2`` confinement works in this process (probed once, then cached).

    Needs the syscall (not refused by a seccomp filter), a kernel that really refuses a
    ``..`` out of the directory, and ``/proc/self/fd`` (chmod and utime of an ``O_PATH``
    descriptor go through it).
    """
    if _libc_syscall() is None or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        root = os.open("/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(openat2(root, ".", O_PATH | os.O_DIRECTORY))
        try:
            os.close(openat2(root, "..", O_PATH | os.O_DIRECTORY))
        except OSError as exc:
            return exc.errno == errno.EXDEV
        return False  # the kernel let ".." through: it does not confine
    except OSError:  # ENOSYS, EPERM (seccomp), EINVAL/E2BIG (unknown flags)
        return False
    finally:
        os.close(root)


@functools.cache
def cached_lookups_work() -> bool:
    """Whether this kernel knows ``RESOLVE_CACHED`` (5.12; older ones answer EINVAL)."""
    if not supported():
        return False
    try:
        os.close(openat2(_AT_FDCWD, "/", O_PATH, resolve=RESOLVE_CACHED))
    except OSError:
        return False
    return True


def statfs_type(path: str) -> int | None:
    """``statfs(path).f_type`` (the first field of ``struct statfs`` on every Linux ABI),
    or None when it cannot be read."""
    try:
        function = ctypes.CDLL(None, use_errno=True).statfs
    except (OSError, AttributeError):
        return None
    buffer = ctypes.create_string_buffer(512)  # larger than struct statfs anywhere
    if function(ctypes.c_char_p(os.fsencode(path)), buffer) != 0:
        return None
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


def is_within(path: str, base: str) -> bool:
    """Whether the real path ``path`` is ``base`` or below it."""
    if path == base:
        return True
    return path.startswith(base if base.endswith(os.sep) else base + os.sep)


class Confined(NamedTuple):
    """A path to use beneath a root: the root as given and the path relative to it."""

    root: str
    relative: str

    def child(self, name: str) -> Confined:
        """The entry ``name`` of this directory."""
        if self.relative == ".":
            return Confined(self.root, name)
        return Confined(self.root, f"{self.relative}/{name}")

    def split(self) -> tuple[Confined, str]:
        """``(parent, final name)``, for operations on a name.

        Raises:
            OSError: ``EBUSY`` for the root itself (like ``rmdir("/")``), ``EINVAL`` for a
                final ``.`` or ``..``.
        """
        head, _, name = self.relative.rpartition("/")
        if self.relative == ".":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), self.root)
        if name in ("", ".", ".."):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.relative)
        return Confined(self.root, head or "."), name


class Root:
    """An ``O_PATH`` descriptor of a user's root, to resolve paths beneath it.

    A context manager: the descriptor lives only for one operation. ``cached``: resolve the
    root and every path beneath it from the dentry cache only; anything that would read the
    disk (or take the slow ``EXDEV`` route below) raises :class:`BlockingIOError`.
    """

    def __init__(self, path: str, *, cached: bool = False) -> None:
        self.path = path
        self.cached = cached
        if cached:
            self.fd = openat2(_AT_FDCWD, path, O_PATH | os.O_DIRECTORY, resolve=RESOLVE_CACHED)
        else:
            self.fd = os.open(path, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)

    def open(self, relative: str, flags: int, mode: int = 0) -> int:
        """Open ``relative`` beneath the root with ``flags``; the caller closes the result.

        Raises:
            trio_ftp.errors.PermissionDenied: the path leaves the root (now, at use time).
            OSError: any other failure of the open.
        """
        # Cached: never across a mount point either (EXDEV), so the path stays on the root's
        # file system, the one _onloop.classify_root found safe: an NFS or FUSE mount below the
        # root is reached only from a worker thread.
        resolve = _RESOLVE | RESOLVE_CACHED | RESOLVE_NO_XDEV if self.cached else _RESOLVE
        try:
            return openat2(self.fd, relative, flags, mode, resolve=resolve)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            if self.cached:  # realpath below may read the disk: leave it to a worker thread
                raise BlockingIOError(errno.EAGAIN, "needs a real path", relative) from exc
        # An absolute symlink, or a ".." out of the root: allowed only when the real path is
        # inside, and then resolved again beneath the root so the kernel has the last word.
        base = os.path.realpath(self.path)
        real = os.path.realpath(os.path.join(self.path, relative))
        if not is_within(real, base):
            raise PermissionDenied(OUTSIDE)
        try:
            return openat2(self.fd, os.path.relpath(real, base), flags, mode)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        raise PermissionDenied(OUTSIDE)  # changed under us again: refuse, do not loop
