"""Moving bytes on a data connection: the Python path (blocks under the speed limits and
``socket_timeout``) and the kernel path (:mod:`trio_ftp.fastpath` in a worker thread), with
the same errors either way. Used by the transfer handlers; no commands here.
"""

from __future__ import annotations

import errno
import functools
import math
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

import trio

from ..connection import Connection
from ..errors import TransferAborted
from ..fastpath import StallClock, StallTimeout
from ..pathio import AsyncFile
from ..state import TransferProgress
from ..tls import is_ragged_eof
from ..tlsread import read_received, refill
from ..validation import as_seconds

__all__ = [
    "KERNEL_CHUNK",
    "KERNEL_MINIMUM",
    "TLS_SLICE",
    "TransferProgress",
    "close_data",
    "kernel_copy",
    "kernel_fd",
    "next_size",
    "receive_block",
    "send_data",
    "socket_timeout",
]

T = TypeVar("T")

#: Most bytes one worker-thread call of the kernel fast path moves (see ..fastpath).
KERNEL_CHUNK = 64 * 1024 * 1024
#: The most plaintext handed to ``SSLStream.send_all`` at once. It encrypts a whole send
#: into one ciphertext buffer before writing it; at 1 MiB that buffer is fresh memory every
#: time. 256 KiB slices of a 1 MiB block cost about a fifth less CPU per GiB (measured on
#: loopback; 64 and 128 KiB slices were slower again).
TLS_SLICE = 256 * 1024
#: Downloads shorter than this take the Python path: copying them costs less than the
#: worker-thread call that sendfile needs (and the local backend reads cached files
#: without one).
KERNEL_MINIMUM = 256 * 1024
#: errno values that mean the data connection broke (a 426, as in the Python path).
_BROKEN_CONNECTION = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ETIMEDOUT}
)

#: The ``426`` text of a data connection on which nothing moved for ``socket_timeout``.
TIMED_OUT = "data connection timed out; transfer aborted"


def next_size(block_size: int, limit: int | None, done: int) -> int:
    """How much to read next when at most ``limit`` bytes (RANG) may be sent in all."""
    return block_size if limit is None else min(block_size, limit - done)


def socket_timeout(connection: Connection) -> float:
    """The session's ``socket_timeout`` for a trio scope (``None``: no limit)."""
    timeout: float | None = connection.socket_timeout
    return as_seconds(timeout)


async def send_data(connection: Connection, stream: trio.abc.Stream, data: bytes) -> None:
    """Send on a data connection, at the pace of every write speed limit that applies.

    Timeouts: ``socket_timeout`` for the send itself (then ``426``), for each
    :data:`TLS_SLICE` on TLS; waiting for the throttle is not counted, so a low limit never
    times a transfer out.
    """
    await connection.write_throttle.acquire(len(data))
    timeout = socket_timeout(connection)
    pieces: Iterable[bytes | memoryview] = (data,)
    if isinstance(stream, trio.SSLStream) and len(data) > TLS_SLICE:
        view = memoryview(data)
        pieces = (view[start : start + TLS_SLICE] for start in range(0, len(data), TLS_SLICE))
    try:
        for piece in pieces:
            with trio.fail_after(timeout):
                await stream.send_all(piece)
    except trio.TooSlowError:
        raise TransferAborted(TIMED_OUT, timed_out=True) from None


async def receive_block(
    connection: Connection,
    stream: trio.abc.Stream,
    size: int,
    progress: TransferProgress | None = None,
    *,
    strict_eof: bool = False,
    into: bytearray | None = None,
) -> bytes:
    """Receive up to ``size`` bytes from a data connection, gathering reads (over TLS, one
    record each) into one block. A block shorter than ``size`` means the upload ended.
    ``progress`` counts every read as it arrives (what ``STAT`` reports). ``into``: the
    block is gathered there, so the caller keeps what arrived when this raises.

    Per read it costs one deadline move, no cancel scope and no yield of its own: over TLS a
    client's 8 or 16 KiB records each need a read, and that per-read overhead was most of an
    FTPS upload's CPU.

    Timeouts: ``socket_timeout`` for each read (then ``426``). Read speed limits: each read
    is paid for before the next, so TCP flow control slows the client; waiting for the
    throttle is not counted as a timeout. Whether a limit applies is read once per block, so
    one switched on mid-transfer holds from the next block. A TLS upload ended by a bare TCP
    FIN (no ``close_notify``) is a normal end unless ``strict_eof`` (the server's
    ``tls_strict_eof``); a reset is always a
    failure (``426``).
    """
    throttle = connection.read_throttle
    limited = throttle.current_rate() is not None
    timeout = socket_timeout(connection)
    block = bytearray() if into is None else into
    with trio.CancelScope() as scope:
        while len(block) < size:
            scope.deadline = trio.current_time() + timeout
            # Over TLS, the records already received first, and the network waited for
            # here while they come one by one (see ..tlsread); else trio's receive_some.
            data: bytes | bytearray | Literal[False] | None = read_received(
                stream, size - len(block)
            )
            if data is None and await refill(stream):
                continue
            if not data:
                try:
                    data = await stream.receive_some(size - len(block))
                except trio.BrokenResourceError as exc:
                    if not is_ragged_eof(exc):
                        raise
                    if strict_eof:
                        raise TransferAborted("upload ended without TLS close_notify") from exc
                    break
                if not data:
                    break
            block += data
            if progress is not None:
                progress.bytes += len(data)
            if limited:  # pay for what arrived before asking for more (TCP pushes back)
                scope.deadline = math.inf
                await throttle.acquire(len(data))
    if scope.cancelled_caught:
        raise TransferAborted(TIMED_OUT, timed_out=True)
    return bytes(block)


async def close_data(connection: Connection, stream: trio.abc.Stream) -> None:
    """Close a data connection (with a TLS ``close_notify`` when it is TLS), bounded by
    ``socket_timeout``; a peer that will not take the goodbye gets a plain close."""
    if type(stream) is trio.SocketStream:  # closing a plain socket never waits
        await stream.aclose()
        return
    with trio.move_on_after(socket_timeout(connection)) as scope:
        try:
            await stream.aclose()
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(stream)
    if scope.cancelled_caught:
        await trio.aclose_forcefully(stream)


def kernel_fd(connection: Connection, stream: trio.abc.Stream, file: AsyncFile) -> int | None:
    """The file's descriptor if this transfer may go through the kernel (:mod:`..fastpath`):
    a plain TCP data connection (not TLS) and a local file; else None."""
    if not isinstance(stream, trio.SocketStream):
        return None
    fd: int | None = connection.path_io.native_fd(file)
    return fd


async def kernel_copy(
    limiter: trio.CapacityLimiter, clock: StallClock, fn: Callable[..., T], *args: object
) -> T:
    """Run a :mod:`..fastpath` copy in a worker thread of ``limiter``'s (cancellable, see
    there), with the errors the Python path would give: a stall is ``426``, a broken
    connection ``426``."""
    try:
        return await trio.to_thread.run_sync(
            functools.partial(fn, *args, clock),
            abandon_on_cancel=False,
            limiter=limiter,
        )
    except StallTimeout:
        raise TransferAborted(TIMED_OUT, timed_out=True) from None
    except OSError as exc:
        if exc.errno in _BROKEN_CONNECTION:
            raise trio.BrokenResourceError(str(exc)) from exc
        raise
