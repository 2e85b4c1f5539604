"""Many concurrent short sessions from one process, for sessions/s and latency.

A session: connect, read the greeting, USER, PASS, TYPE I, PASV, connect the data
connection, RETR the small file, read it to the end, QUIT, wait for the server to close.
``TYPE I`` makes every server send the file as bytes (without it some convert line ends).

The client must cost far less CPU than the servers it measures, on a machine where they
share two cores; asyncio spends several times the CPU of the socket calls themselves, so
each session is a plain generator that yields ``(socket, events)`` when it has to wait, and
one ``epoll`` loop (:func:`run_sessions`) resumes it. One ``epoll_ctl`` per wait, nothing
else.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Generator
from typing import Any

from benchmarks.ftpwire import FTPReplyError, Reply, ReplyParser, abortive_close, pasv_port

__all__ = ["run_sessions"]

Wait = tuple[socket.socket, int]
Session = Generator[Wait, None, None]

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_ONESHOT = select.EPOLLONESHOT
_SESSION_TIMEOUT = 30.0
_RETRY_DELAY = 0.01  # after a failed session: a refusing server must not be hammered
_GRACE = 2.0  # seconds the sessions still running at the window's end get to finish


def _connect(host: str, port: int) -> Generator[Wait, None, socket.socket]:
    sock = socket.socket()
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((host, port))
        if code == errno.EINPROGRESS:
            yield sock, _OUT
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to port {port}: {errno.errorcode.get(code, code)}")
    except BaseException:
        sock.close()
        raise
    return sock


def _reply(sock: socket.socket, parser: ReplyParser) -> Generator[Wait, None, Reply]:
    while not parser.replies:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            yield sock, _IN
            continue
        if not data:
            raise FTPReplyError("control connection closed")
        parser.feed(data)
    return parser.replies.pop(0)


def _command(
    sock: socket.socket, parser: ReplyParser, line: str, code: int
) -> Generator[Wait, None, Reply]:
    sock.send(line.encode() + b"\r\n")  # a command line always fits in an empty buffer
    yield sock, _IN  # the reply is never there yet: skip a recv that would fail
    return (yield from _expect(sock, parser, code))


def _expect(sock: socket.socket, parser: ReplyParser, code: int) -> Generator[Wait, None, Reply]:
    reply = yield from _reply(sock, parser)
    if reply[0] != code and reply[0] // 100 != code:
        raise FTPReplyError(f"expected {code}, got {reply}")
    return reply


def _until_closed(sock: socket.socket, buffer: bytearray) -> Generator[Wait, None, None]:
    while True:
        try:
            if not sock.recv_into(buffer):
                return
        except BlockingIOError:
            yield sock, _IN


def _session(spec: dict[str, Any], buffer: bytearray) -> Session:
    host = spec["host"]
    sock = yield from _connect(host, spec["port"])
    data: socket.socket | None = None
    try:
        parser = ReplyParser()
        yield from _expect(sock, parser, 220)
        reply = yield from _command(sock, parser, f"USER {spec['user']}", 3)
        if reply[0] == 331:
            yield from _command(sock, parser, f"PASS {spec['password']}", 230)
        yield from _command(sock, parser, "TYPE I", 200)
        port = pasv_port((yield from _command(sock, parser, "PASV", 227)))
        data = yield from _connect(host, port)
        yield from _command(sock, parser, f"RETR {spec['path']}", 1)
        yield from _until_closed(data, buffer)
        abortive_close(data)
        data = None
        yield from _expect(sock, parser, 2)
        yield from _command(sock, parser, "QUIT", 221)
        yield from _until_closed(sock, buffer)
    finally:
        if data is not None:
            abortive_close(data)
        abortive_close(sock)


class _Loop:
    """Runs ``concurrency`` session slots until the window closes."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        start = time.perf_counter()
        self.window_open = start + spec["warmup"]
        self.window_close = self.window_open + spec["duration"]
        self.epoll = select.epoll()
        self.buffer = bytearray(65536)
        self.waiting: dict[int, tuple[Session, float]] = {}  # fd -> (session, its start)
        self.delayed: list[float] = []  # start times of slots waiting to retry
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.unfinished = 0
        self.running = 0

    def start_session(self) -> None:
        """Start a session in a free slot (unless the window has closed)."""
        began = time.perf_counter()
        if began < self.window_close:
            self.running += 1
            self.step(_session(self.spec, self.buffer), began)

    def step(self, session: Session, began: float, error: BaseException | None = None) -> None:
        """Resume ``session`` until it waits again, or account for its end."""
        try:
            sock, events = session.throw(error) if error else next(session)
        except StopIteration:
            self.running -= 1
            ended = time.perf_counter()
            if self.window_open <= ended <= self.window_close:
                self.latencies.append(ended - began)
            self.start_session()
            return
        except (OSError, FTPReplyError) as exc:
            self.running -= 1
            self.errors.append(repr(exc))
            self.delayed.append(time.perf_counter() + _RETRY_DELAY)
            return
        fd = sock.fileno()
        try:
            self.epoll.modify(fd, events | _ONESHOT)
        except FileNotFoundError:  # a new socket (closed ones leave the epoll set)
            self.epoll.register(fd, events | _ONESHOT)
        self.waiting[fd] = (session, began)

    def expire(self, now: float) -> None:
        """Fail sessions that have run too long, restart delayed slots."""
        for fd, (session, began) in list(self.waiting.items()):
            if now - began > _SESSION_TIMEOUT:
                del self.waiting[fd]
                self.step(session, began, TimeoutError("session timed out"))
        due = [when for when in self.delayed if when <= now]
        self.delayed = [when for when in self.delayed if when > now]
        for _ in due:
            self.start_session()

    def run(self) -> None:
        """Start every slot and turn the loop until the last session has ended."""
        for _ in range(self.spec["concurrency"]):
            self.start_session()
        next_check = time.perf_counter() + 0.05
        while self.running or self.delayed:
            for fd, _ in self.epoll.poll(0.05):
                session, began = self.waiting.pop(fd)
                self.step(session, began)
            now = time.perf_counter()
            if now >= next_check:
                self.expire(now)
                next_check = now + 0.05
            if now >= self.window_close:
                self.delayed.clear()
                if now >= self.window_close + _GRACE:
                    self.abandon()
        self.epoll.close()

    def abandon(self) -> None:
        """Soon after the window's end: a session still running can no longer count, so
        close it (with a reset) rather than wait; a server stuck on some connections
        (vsftpd's short listen queue) would otherwise hold the run up to the timeout."""
        self.unfinished += len(self.waiting)
        for session, _ in self.waiting.values():
            session.close()
            self.running -= 1
        self.waiting.clear()


def run_sessions(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``concurrency`` clients looping sessions against ``host:port``; count the sessions
    that end within the ``duration``-second window that opens ``warmup`` seconds after the
    start, and their latencies (connect to the server's close after ``QUIT``). Sessions
    still running two seconds after the window closed are abandoned (``unfinished``)."""
    loop = _Loop(spec)
    loop.run()
    return {
        "sessions": len(loop.latencies),
        "seconds": spec["duration"],
        "latencies_ms": [round(latency * 1000, 3) for latency in loop.latencies],
        "errors": len(loop.errors),
        "unfinished": loop.unfinished,
        "first_error": loop.errors[0] if loop.errors else None,
    }
