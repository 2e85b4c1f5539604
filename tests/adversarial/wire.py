"""Raw-socket tools for the adversarial tests: a client that sends exactly the bytes it is
told to, and probes of what the server process holds (descriptors, tasks, CPU time).

The server runs in the test's own trio run (the ``start_server`` fixture), so "the server's
descriptors" are this process's, counted after the attacking sockets are closed.
"""

from __future__ import annotations

import os
import re
import resource
import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD

#: How long a single read from the server may take before the test fails.
READ_TIMEOUT = 10

# Every connection a test opens, closed by the start_server fixture below at the end of the
# test whatever happened, so one failing test never shows up in the next one's leak check.
_opened: list[trio.SocketStream] = []


def track(stream: trio.SocketStream) -> trio.SocketStream:
    """Have ``stream`` closed at the end of the test (see ``start_server``)."""
    _opened.append(stream)
    return stream


@pytest.fixture
async def start_server(start_server):  # type: ignore[no-untyped-def]
    """conftest's ``start_server``; first closes what the test left open (an autouse async
    fixture would not run under pytest-trio). Import it into a test module to use it."""
    try:
        yield start_server
    finally:  # synchronous: a failed test's teardown runs cancelled
        while _opened:
            _opened.pop().socket.close()


_PASV = re.compile(rb"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")
_EPSV = re.compile(rb"\(\|\|\|(\d+)\|\)")


class Wire:
    """One raw control connection: send bytes, read whole replies.

    Replies are returned as the raw bytes of every line (CR LF included), so a test can
    check that nothing but well-formed ``ddd text`` lines came back.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int, *, source: str | None = None) -> Wire:
        """Connect from ``source`` (e.g. ``"127.0.0.2"``) or the default loopback address."""
        sock = trio.socket.socket(
            trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET,
            trio.socket.SOCK_STREAM,
        )
        try:
            if source is not None:
                await sock.bind((source, 0))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(track(trio.SocketStream(sock)))

    async def send(self, data: bytes | str) -> None:
        """Send raw bytes (a ``str`` is UTF-8 encoded; no terminator is added)."""
        await self.stream.send_all(data.encode() if isinstance(data, str) else data)

    async def command(self, line: str | bytes) -> bytes:
        """Send one line with CR LF and return its whole reply."""
        raw = line.encode() if isinstance(line, str) else line
        await self.send(raw + b"\r\n")
        return await self.reply()

    async def line(self) -> bytes:
        """The next raw line (CR LF included); ``b""`` at EOF."""
        with trio.fail_after(READ_TIMEOUT):
            while b"\r\n" not in self._buffer:
                data = await self.stream.receive_some(65536)
                if not data:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return rest
                self._buffer += data
        end = self._buffer.index(b"\r\n") + 2
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    async def reply(self) -> bytes:
        """The next whole reply, multi-line ones included; ``b""`` at EOF."""
        first = await self.line()
        if len(first) < 4 or first[3:4] != b"-":
            return first
        lines = [first]
        while True:
            line = await self.line()
            lines.append(line)
            if not line or (line[:3] == first[:3] and line[3:4] == b" "):
                return b"".join(lines)

    async def greeting(self) -> bytes:
        return await self.reply()

    async def login(self, user: str, password: str) -> bytes:
        """USER + PASS; the reply to PASS (or to USER if it was final)."""
        reply = await self.command(f"USER {user}")
        if reply.startswith(b"331"):
            reply = await self.command(f"PASS {password}")
        return reply

    async def pasv(self) -> tuple[str, int]:
        """``PASV`` and the address it announced."""
        reply = await self.command("PASV")
        match = _PASV.search(reply)
        assert match is not None, reply
        numbers = [int(group) for group in match.groups()]
        return ".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5]

    async def closed(self, within: float = READ_TIMEOUT) -> bool:
        """True if the server closes (EOF or reset) within ``within`` seconds, whatever it
        sent before."""
        with trio.move_on_after(within):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
            return True
        return False

    async def aclose(self) -> None:
        await self.stream.aclose()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        reset_socket(self.stream.socket)


async def logged_in(
    host: str, port: int, *, source: str | None = None, kind: str | None = None
) -> Wire:
    """A control connection (from ``source``) logged in as the default read/write user,
    in ``TYPE kind`` when given."""
    wire = await Wire.connect(host, port, source=source)
    greeting = await wire.greeting()
    assert greeting.startswith(b"220"), greeting
    reply = await wire.login(LOGIN, PASSWORD)
    assert reply.startswith(b"230"), reply
    if kind is not None:
        assert (await wire.command(f"TYPE {kind}")).startswith(b"200")
    return wire


async def transfer(wire: Wire, line: str | bytes, upload: bytes = b"") -> tuple[bytes, bytes]:
    """PASV, ``line``, and its data connection if a ``1xx`` opens one (sending ``upload``
    first): ``(final reply, data received)``."""
    address = await wire.pasv()
    first = await wire.command(line)
    if not first.startswith(b"1"):
        return first, b""
    stream = await data_connect(address)
    chunks = []
    try:
        with trio.fail_after(READ_TIMEOUT):
            if upload:
                await stream.send_all(upload)
            await stream.send_eof()
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    finally:
        await stream.aclose()
    return await wire.reply(), b"".join(chunks)


async def quit_and_close(wire: Wire) -> None:
    """QUIT, its 221, the server's close, then ours."""
    reply = await wire.command("QUIT")
    assert reply.startswith(b"221"), reply
    assert await wire.closed(5)
    await wire.aclose()


def reset_socket(sock: trio.socket.SocketType | socket.socket) -> None:
    """Close ``sock`` abortively: the peer sees ``ECONNRESET``, not an orderly end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


async def data_connect(address: tuple[str, int]) -> trio.SocketStream:
    """Open a passive data connection."""
    with trio.fail_after(READ_TIMEOUT):
        return track(await trio.open_tcp_stream(*address))


async def receive_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends on a data connection until it closes it."""
    chunks = []
    with trio.fail_after(READ_TIMEOUT):
        while chunk := await stream.receive_some(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def reply_lines_are_clean(reply: bytes) -> bool:
    """Every line is ``ddd text`` or a continuation, ends in CR LF, has no bare CR/LF/NUL."""
    if not reply.endswith(b"\r\n"):
        return False
    for line in reply.split(b"\r\n")[:-1]:
        if b"\r" in line or b"\n" in line or b"\0" in line:
            return False
    return True


def open_fd_count() -> int:
    """Descriptors open in this process (the server's, once the test's sockets are closed)."""
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Trio tasks alive in this run: the server's sessions and transfers show up here."""
    root = trio.lowlevel.current_root_task()
    assert root is not None

    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    return sum(1 for _ in walk(root))


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def baseline() -> tuple[int, int]:
    """(descriptors, tasks) once everything started so far has settled: take it after the
    server is up and before the attack."""
    await trio.testing.wait_all_tasks_blocked(0.05)
    return open_fd_count(), task_count()


async def back_to(expected: tuple[int, int], *, within: float = 5.0) -> tuple[int, int]:
    """Wait (bounded) until descriptors and tasks are back to ``expected``; returns what
    they are at the end, for the test's assert."""
    with trio.move_on_after(within):
        while (open_fd_count(), task_count()) != expected:  # noqa: ASYNC110 (polling /proc)
            await trio.sleep(0.02)
    return open_fd_count(), task_count()
