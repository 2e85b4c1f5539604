"""Kernel-side copies between a local file and a plain data socket, for the transfers that
need no per-byte work in Python: binary, unprotected (no TLS), unthrottled, local disk.

Why a worker thread and not the event loop: ``sendfile``/``splice`` may block on the disk
(a file not in the page cache, dirty-page writeback), which must never stall the other
sessions. One worker-thread call moves up to ``count`` bytes, waiting for the socket with
``poll``; it notices a trio cancellation (``ABOR``, session end) within
:data:`POLL_INTERVAL` through :func:`trio.from_thread.check_cancelled`, and gives up after
``socket_timeout`` seconds without progress (the data connection stall timeout, counted
across calls by a :class:`StallClock`). Every system call that moves bytes adds them to the
transfer's counter at once, from the worker thread, so ``STAT`` sees a kernel-path transfer
advance as it goes, not once per call.

The transfer handlers (through ``handlers/dataio.py``) decide when the fast path applies
and call these in chunks, so a speed limit switched on during a transfer takes effect at
the next chunk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

import trio

__all__ = [
    "POLL_INTERVAL",
    "UNSUPPORTED_ERRNOS",
    "ByteCounter",
    "KernelCopyUnsupported",
    "StallClock",
    "StallTimeout",
    "receive_into_file",
    "send_file",
]

#: Seconds between checks for cancellation while the socket is not ready.
POLL_INTERVAL = 0.05
#: Seconds one call may keep its worker thread before returning what it moved so far, so
#: slow clients share the threads and a speed limit switched on applies soon.
CALL_BUDGET = 1.0
#: Bytes per splice through the pipe (the pipe is grown to this size where allowed).
_PIPE_SIZE = 1 << 20
#: Bytes per recv_into/write when splice cannot be used (append mode, other systems).
_COPY_SIZE = 1 << 20

_SPLICE = getattr(os, "splice", None)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)
_SPLICE_MOVE = getattr(os, "SPLICE_F_MOVE", 0)
_SPLICE_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 0)


class StallTimeout(Exception):
    """The peer made no progress for ``timeout`` seconds."""


#: errno values by which ``sendfile``/``splice`` say "not with this file or socket" (some
#: FUSE, 9p and network file systems, special sockets): the transfer goes on by copying
#: through user space from the exact byte where the kernel copy stopped.
UNSUPPORTED_ERRNOS = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ESPIPE}
)


class KernelCopyUnsupported(Exception):
    """``sendfile`` refused this file or socket (an errno of :data:`UNSUPPORTED_ERRNOS`);
    the bytes moved before are counted, the caller sends the rest another way."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"kernel copy unsupported here: {error}")
        self.errno = error.errno


class ByteCounter(Protocol):
    """Where a transfer counts the bytes it moved (``TransferProgress``, what ``STAT`` shows)."""

    bytes: int


class StallClock:
    """When a transfer last made progress: one per transfer, shared by its calls, so the
    stall timeout counts across them (each call lasts at most :data:`CALL_BUDGET`).

    ``counter.bytes`` grows by every byte moved, as soon as its system call returns (from
    the worker thread: only that thread writes the counter while a call runs; the event
    loop only reads it).
    """

    def __init__(self, timeout: float, counter: ByteCounter) -> None:
        self.timeout = timeout
        self.last_progress = time.monotonic()
        self.counter = counter
        #: The errno by which this transfer's file or socket refused splice (then it goes
        #: on through recv and pwrite), or None.
        self.splice_refused: int | None = None


class _Waiter:
    """``poll`` one socket for one event, bounded by the stall timeout, checking trio's
    cancellation between polls."""

    def __init__(self, sock_fd: int, event: int, clock: StallClock) -> None:
        self._poll = select.poll()
        self._poll.register(sock_fd, event | select.POLLERR | select.POLLHUP)
        self._clock = clock
        self._budget_end = time.monotonic() + CALL_BUDGET

    def progressed(self) -> None:
        self._clock.last_progress = time.monotonic()

    def count(self, moved: int) -> None:
        self._clock.counter.bytes += moved

    @property
    def over_budget(self) -> bool:
        return time.monotonic() > self._budget_end

    def wait(self) -> bool:
        """Wait until the socket is ready; False if this call's budget ran out first."""
        trio.from_thread.check_cancelled()  # a slow peer keeps the socket ready often
        while not self._poll.poll(POLL_INTERVAL * 1000):
            trio.from_thread.check_cancelled()
            if time.monotonic() - self._clock.last_progress > self._clock.timeout:
                raise StallTimeout
            if self.over_budget:
                return False
        return True


def _when_ready(waiter: _Waiter, move: Callable[[], int]) -> int | None:
    """``move()`` (a non-blocking read or write), waiting for the socket as long as it would
    block; None when this call's budget ran out while waiting."""
    while True:
        try:
            return move()
        except BlockingIOError:
            if not waiter.wait():
                return None


def send_file(
    sock_fd: int, file_fd: int, offset: int, count: int, clock: StallClock
) -> tuple[int, bool]:
    """Send ``count`` bytes of the file from ``offset`` with ``os.sendfile`` (zero copy).

    Returns:
        ``(bytes sent, True if the file ended first)``; fewer than ``count`` bytes without
        the end when :data:`CALL_BUDGET` ran out.

    Raises:
        StallTimeout: the client read nothing for ``clock.timeout`` seconds.
        OSError: the connection broke (``EPIPE``, ``ECONNRESET``).
        trio.Cancelled: the transfer was cancelled (raised in this thread).
    """
    waiter = _Waiter(sock_fd, select.POLLOUT, clock)
    sent = 0
    while sent < count:
        move = partial(os.sendfile, sock_fd, file_fd, offset + sent, count - sent)
        try:
            n = _when_ready(waiter, move)
        except OSError as exc:
            if exc.errno in UNSUPPORTED_ERRNOS:
                raise KernelCopyUnsupported(exc) from exc
            raise
        if n is None:
            break
        if n == 0:
            return sent, True
        sent += n
        waiter.count(n)
        waiter.progressed()
        if waiter.over_budget:
            break
    return sent, False


def receive_into_file(
    sock_fd: int, file_fd: int, offset: int | None, count: int, clock: StallClock
) -> tuple[int, bool]:
    """Receive up to ``count`` bytes into the file, at ``offset`` (``None``: append).

    ``splice`` moves the bytes socket -> pipe -> file inside the kernel; in append mode
    (where Linux refuses ``splice``) and where it is missing, ``recv_into`` a 1 MiB buffer
    and ``write`` it.

    Returns:
        ``(bytes received, True if the client ended the upload)``; fewer than ``count``
        bytes without the end when :data:`CALL_BUDGET` ran out.

    Raises:
        StallTimeout: nothing arrived for ``clock.timeout`` seconds.
        OSError: the connection broke (``ECONNRESET``) or the disk failed (``ENOSPC``).
        trio.Cancelled: the transfer was cancelled (raised in this thread).
    """
    waiter = _Waiter(sock_fd, select.POLLIN, clock)
    if _SPLICE is not None and offset is not None and clock.splice_refused is None:
        received, ended, refused = _splice_into(waiter, sock_fd, file_fd, offset, count)
        if refused is None:
            return received, ended
        clock.splice_refused = refused  # for the rest of this transfer: recv and pwrite
        more, ended = _copy_into(waiter, sock_fd, file_fd, offset + received, count - received)
        return received + more, ended
    return _copy_into(waiter, sock_fd, file_fd, offset, count)


def _splice_into(
    waiter: _Waiter, sock_fd: int, file_fd: int, offset: int, count: int
) -> tuple[int, bool, int | None]:
    """``(received, ended, refused)``; ``refused``: the errno (of
    :data:`UNSUPPORTED_ERRNOS`) by which splice is unsupported here, else None; every byte
    taken from the socket is in the file either way, the caller goes on without splice."""
    assert _SPLICE is not None
    read_end, write_end = os.pipe()
    try:
        if _F_SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):  # a smaller pipe only means more calls
                fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        received = 0
        while received < count:
            wanted = min(_PIPE_SIZE, count - received)
            flags = _SPLICE_MOVE | _SPLICE_NONBLOCK
            move = partial(_SPLICE, sock_fd, write_end, wanted, flags=flags)
            try:
                n = _when_ready(waiter, move)
            except OSError as exc:
                if exc.errno in UNSUPPORTED_ERRNOS:
                    return received, False, exc.errno  # nothing was taken from the socket
                raise
            if n is None:
                break
            if n == 0:
                return received, True, None
            waiter.progressed()
            while n:  # drain the pipe into the file before reading more
                try:
                    written = _SPLICE(read_end, file_fd, n, offset_dst=offset + received)
                except OSError as exc:
                    if exc.errno not in UNSUPPORTED_ERRNOS:
                        raise
                    # The file system takes no splice: what sits in the pipe was already
                    # taken from the socket, so it goes to the file through user space.
                    _drain_pipe(read_end, file_fd, n, offset + received, waiter)
                    return received + n, False, exc.errno
                received += written
                waiter.count(written)
                n -= written
            if waiter.over_budget:
                break
        return received, False, None
    finally:
        os.close(read_end)
        os.close(write_end)


def _drain_pipe(read_end: int, file_fd: int, count: int, offset: int, waiter: _Waiter) -> None:
    """Move ``count`` bytes waiting in the pipe into the file at ``offset`` with ``read``
    and ``pwrite`` (the pipe is blocking and holds them all)."""
    while count:
        chunk = os.read(read_end, count)
        while chunk:
            written = os.pwrite(file_fd, chunk, offset)
            offset += written
            count -= written
            waiter.count(written)
            chunk = chunk[written:]


def _copy_into(
    waiter: _Waiter, sock_fd: int, file_fd: int, offset: int | None, count: int
) -> tuple[int, bool]:
    buffer = bytearray(min(_COPY_SIZE, max(count, 1)))
    view = memoryview(buffer)
    received = 0
    while received < count:
        room = view[: min(len(view), count - received)]
        n = _when_ready(waiter, partial(os.readv, sock_fd, [room]))
        if n is None:
            break
        if n == 0:
            return received, True
        waiter.progressed()
        chunk = view[:n]
        while chunk:
            if offset is None:
                written = os.write(file_fd, chunk)
            else:
                written = os.pwrite(file_fd, chunk, offset + received)
            received += written
            waiter.count(written)
            chunk = chunk[written:]
        if waiter.over_budget:
            break
    return received, False
