"""aioftp's spellings for a handler's own data transfer and waits, on trio.

aioftp's tutorial handler takes ``connection.data_connection`` (a stream with ``write``,
``read``, ``readline``, ``readexactly``, ``close`` and ``async with``) and runs its worker
with ``connection.loop.create_task(coro)`` and ``connection.extra_workers.add(task)``.
Here the data connection is a trio stream and a worker is the session's transfer task, so:

* :class:`AioftpDataStream` wraps the trio stream with aioftp's methods (paced by the
  connection's speed limits, like aioftp's ``ThrottleStreamIO``) and is itself a
  ``trio.abc.Stream``;
* :class:`WorkerLauncher` (``connection.loop``) starts the coroutine as the session's
  transfer (its own cancel scope, aborted by ``ABOR``, ended with the session) and returns a
  :class:`WorkerHandle`; ``connection.extra_workers`` is the set aioftp code adds it to;
* :class:`KeyFutures` (``connection.future``): ``connection.future.data_connection.done()``
  and ``await connection.future.user`` as in aioftp, on :meth:`Connection.wait_for`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["AioftpDataStream", "KeyFuture", "KeyFutures", "WorkerHandle", "WorkerLauncher"]

#: The most bytes ``readline`` buffers looking for the end of a line.
MAX_LINE = 64 * 1024
_BLOCK = 64 * 1024


class AioftpDataStream(trio.abc.Stream):
    """A data connection with aioftp's stream methods besides trio's.

    ``write``/``read`` wait for the connection's speed limits (``send_all``/``receive_some``
    do not: they are the raw stream). Timeouts: none of its own; the session's socket
    timeout does not apply here, so bound a handler's waits with ``trio.fail_after``.
    """

    def __init__(self, stream: trio.abc.Stream, connection: Connection) -> None:
        self.stream = stream
        # The throttles are asked for when data moves: a key check like
        # ``"data_connection" in connection`` builds this wrapper and must stay cheap.
        self._connection = connection
        self._buffer = bytearray()

    # trio.abc.Stream ----------------------------------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buffer:
            size = len(self._buffer) if max_bytes is None else max_bytes
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.stream.aclose()

    # aioftp's StreamIO -------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        """Send ``data`` whole, paced by the download (write) speed limits."""
        await self._connection.write_throttle.acquire(len(data))
        await self.stream.send_all(data)

    async def read(self, count: int = -1) -> bytes:
        """Up to ``count`` bytes (a block when ``count < 0``); ``b""`` at the end."""
        data = await self.receive_some(_BLOCK if count < 0 else count)
        if data:
            await self._connection.read_throttle.acquire(len(data))
        return data

    async def readexactly(self, count: int) -> bytes:
        """Exactly ``count`` bytes; ``EOFError`` when the stream ends first."""
        chunks = bytearray()
        while len(chunks) < count:
            data = await self.read(count - len(chunks))
            if not data:
                raise EOFError(f"stream ended after {len(chunks)} of {count} bytes")
            chunks += data
        return bytes(chunks)

    async def readline(self) -> bytes:
        """Bytes up to and including ``b"\\n"``, or what is left at the end; a line longer
        than :data:`MAX_LINE` raises ``ValueError``."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"line longer than {MAX_LINE} bytes")
            data = await self.stream.receive_some(_BLOCK)
            if not data:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            await self._connection.read_throttle.acquire(len(data))
            self._buffer += data

    async def iter_by_block(self, count: int = _BLOCK) -> AsyncIterator[bytes]:
        """Blocks of at most ``count`` bytes until the end."""
        while data := await self.read(count):
            yield data

    async def iter_by_line(self) -> AsyncIterator[bytes]:
        """Lines until the end."""
        while line := await self.readline():
            yield line

    def close(self) -> None:
        """Close at once, without a goodbye (aioftp's ``close`` is synchronous too)."""
        socket_stream = self.stream
        while not isinstance(socket_stream, trio.SocketStream):
            inner = getattr(socket_stream, "transport_stream", None)
            if inner is None:
                return
            socket_stream = inner
        socket_stream.socket.close()


class WorkerHandle:
    """What ``connection.loop.create_task`` returns: the running worker."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._done = trio.Event()

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> bool:
        """Cancel the worker, as ``ABOR`` would; False when it already ended."""
        if self.done():
            return False
        self._connection.control.cancel_transfer()
        return True

    async def wait(self) -> None:
        """Return when the worker has ended."""
        await self._done.wait()


class WorkerLauncher:
    """``connection.loop``: aioftp's ``create_task`` for a handler's worker."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create_task(self, coro: Coroutine[Any, Any, object]) -> WorkerHandle:
        """Run ``coro`` as the session's transfer (one at a time: ``503`` while another
        runs; ``ABOR`` cancels it; decorate the worker with :func:`trio_ftp.worker` for
        aioftp's ``426``/``226``)."""
        handle = WorkerHandle(self._connection)

        async def run() -> None:
            try:
                await coro
            finally:
                handle._done.set()

        try:
            self._connection.control.start_transfer(run)
        except BaseException:
            coro.close()  # never started: no "coroutine was never awaited" warning
            raise
        return handle


class KeyFuture:
    """aioftp's future for one connection key: ``done()``, ``result()``, ``await``.

    Awaiting waits until the key is set, without a bound of its own (as in aioftp): wrap
    it in ``trio.move_on_after`` or use ``ConnectionConditions(..., wait=True)``.
    """

    def __init__(self, connection: Connection, name: str) -> None:
        self._connection = connection
        self._name = name

    def done(self) -> bool:
        return self._name in self._connection

    def result(self) -> Any:
        """The key's value; ``LookupError`` while it is not set."""
        if not self.done():
            raise LookupError(f"{self._name!r} is not set yet")
        return self._connection[self._name]

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._connection.wait_for(self._name).__await__()
        return self._connection[self._name]


class KeyFutures:
    """``connection.future``: ``connection.future.<key>`` is a :class:`KeyFuture`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> KeyFuture:
        if name.startswith("_"):
            raise AttributeError(name)
        return KeyFuture(self._connection, name)
