"""The client side of the FTP control connection, kept minimal so it costs little CPU:
a reply parser shared by the blocking and the asyncio clients, and the blocking client.

The data address of a ``227`` reply is taken from its port only; the host is always the
control connection's (127.0.0.1), so the benchmark never connects anywhere else.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct

__all__ = [
    "Control",
    "FTPReplyError",
    "Reply",
    "ReplyParser",
    "abortive_close",
    "client_context",
    "pasv_port",
]

Reply = tuple[int, str]
_PASV = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_LINGER_ZERO = struct.pack("ii", 1, 0)


class FTPReplyError(Exception):
    """The server answered something other than what the benchmark needs."""


class ReplyParser:
    """Turns control-connection bytes into complete replies (RFC 959 multi-line aware)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._open: bytes | None = None  # "123-" while inside a multi-line reply
        self._text: list[bytes] = []
        self.replies: list[Reply] = []

    def feed(self, data: bytes) -> None:
        """Add received bytes; complete replies are appended to :attr:`replies`."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            self._text.append(line)
            if self._open is None:
                if line[3:4] == b"-":
                    self._open = line[:3] + b" "
                    continue
            elif not line.startswith(self._open):
                continue
            self._open = None
            code = int(line[:3])
            self.replies.append((code, b"\n".join(self._text).decode(errors="replace")))
            self._text = []


def pasv_port(reply: Reply) -> int:
    """The port of a ``227`` reply."""
    match = _PASV.search(reply[1].encode())
    if reply[0] != 227 or match is None:
        raise FTPReplyError(f"PASV: {reply}")
    return int(match[5]) * 256 + int(match[6])


def abortive_close(sock: socket.socket) -> None:
    """Close with a reset, once the server has closed its side (the FTP session is over).

    Loopback benchmarks open thousands of connections per second; a normal close leaves
    each in TIME_WAIT for a minute and exhausts the ephemeral ports. The server closed
    first, so the reset only saves its FIN_WAIT2 socket from turning into TIME_WAIT.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    sock.close()


def client_context(ca: str) -> ssl.SSLContext:
    """What a careful client uses: verify the server's certificate against our CA."""
    return ssl.create_default_context(cafile=ca)


class Control:
    """A blocking control connection: one command, one reply, no pipelining."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 60.0,
        context: ssl.SSLContext | None = None,
        implicit: bool = False,
    ) -> None:
        self.host = host
        self.timeout = timeout
        self.context = context
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if implicit:
            assert context is not None
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.tls = implicit
        self.protect_data = implicit
        self._parser = ReplyParser()

    def read(self) -> Reply:
        """The next complete reply."""
        while not self._parser.replies:
            data = self.sock.recv(65536)
            if not data:
                raise FTPReplyError("control connection closed")
            self._parser.feed(data)
        return self._parser.replies.pop(0)

    def expect(self, *codes: int) -> Reply:
        """The next reply, which must have one of ``codes`` (or their first digit)."""
        reply = self.read()
        if reply[0] not in codes and reply[0] // 100 not in codes:
            raise FTPReplyError(f"expected {codes}, got {reply}")
        return reply

    def send(self, line: str) -> None:
        """Send one command line."""
        self.sock.sendall(line.encode() + b"\r\n")

    def command(self, line: str, *codes: int) -> Reply:
        """Send a command and check its reply."""
        self.send(line)
        return self.expect(*codes)

    def greet_and_login(self, user: str, password: str) -> None:
        """Read the greeting; with an explicit-TLS context, ``AUTH TLS`` first; log in."""
        self.expect(220)
        if self.context is not None and not self.tls:
            self.command("AUTH TLS", 234)
            self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
            self.tls = True
        reply = self.command(f"USER {user}", 230, 331)
        if reply[0] == 331:
            self.command(f"PASS {password}", 230)
        if self.tls:
            self.command("PBSZ 0", 200)
            self.command("PROT P", 200)
            self.protect_data = True

    def open_data(self) -> socket.socket:
        """``PASV`` and connect the data connection, before the transfer command (as most
        clients do)."""
        port = pasv_port(self.command("PASV", 227))
        return socket.create_connection((self.host, port), timeout=self.timeout)

    def transfer(self, line: str, data: socket.socket) -> socket.socket:
        """Send a transfer command and return the data connection, TLS-wrapped if ``PROT
        P``, once the server has answered ``1xx``.

        The data handshake starts right after the command, before reading the ``150``:
        vsftpd accepts the data connection's TLS only once it has the command, and the
        other servers accept it any time.
        """
        self.send(line)
        if self.protect_data:
            assert self.context is not None
            assert isinstance(self.sock, ssl.SSLSocket)
            session = self.sock.session  # resumed as lftp, curl and FileZilla do
            data = self.context.wrap_socket(
                data,
                server_hostname=self.host,
                session=session if session is not None and session.has_ticket else None,
            )
        self.expect(1)
        return data

    def quit(self) -> None:
        """``QUIT``, wait for the server to close, then reset (see :func:`abortive_close`)."""
        try:
            self.command("QUIT", 221)
            while self.sock.recv(4096):
                pass
        except (OSError, FTPReplyError):
            pass
        abortive_close(self.sock)

    def close(self) -> None:
        """Close without ``QUIT``."""
        abortive_close(self.sock)
