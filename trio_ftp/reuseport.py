"""Sockets sharing one port through the kernel's ``SO_REUSEPORT`` (several worker processes).

Each worker binds and listens on the same address with ``SO_REUSEPORT``; the kernel spreads
incoming connections over the listening sockets. A socket that is bound but not listening
takes no connections, which is how the supervisor holds a port (chosen by the kernel for
port 0) for its workers without serving it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import trio

__all__ = ["ReusePortUnavailable", "bind_reuse_port", "open_reuse_port_listeners", "reserve_port"]

#: Listen backlog, as trio's ``open_tcp_listeners`` asks (the kernel caps it at somaxconn).
BACKLOG = 0xFFFF


class ReusePortUnavailable(OSError):
    """This system has no ``SO_REUSEPORT`` (or refuses it): no workers sharing a port."""


_AddrInfo = tuple[int, tuple[str, int]]


def _distinct(infos: Sequence[tuple[Any, ...]]) -> list[_AddrInfo]:
    """``(family, (address, port))`` once each, from ``getaddrinfo`` results."""
    seen: list[tuple[int, tuple[str, int]]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (int(family), (str(sockaddr[0]), int(sockaddr[1])))
        if entry not in seen:
            seen.append(entry)
    return seen


def bind_reuse_port(family: int, address: tuple[str, int]) -> socket.socket:
    """A TCP socket of ``family`` with ``SO_REUSEPORT`` on, bound to ``address``, not listening.

    Raises :class:`ReusePortUnavailable` when the option is missing or refused, ``OSError``
    when the bind fails (a program without ``SO_REUSEPORT`` holds the port...).
    """
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise ReusePortUnavailable("socket.SO_REUSEPORT is not defined on this system")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError as exc:
            raise ReusePortUnavailable(f"setsockopt(SO_REUSEPORT) failed: {exc}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str | None, port: int) -> list[socket.socket]:
    """Bind (without listening) every address of ``host`` on ``port`` with ``SO_REUSEPORT``.

    Port 0 takes the port the kernel gives the first address, for every address. The caller
    keeps the sockets open for as long as its workers run (so the port stays theirs) and
    closes them at the end; the kernel never routes a connection to them.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, (address, _) in _distinct(infos):
            chosen = sockets[0].getsockname()[1] if sockets else port
            sockets.append(bind_reuse_port(family, (address, chosen)))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def open_reuse_port_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Listeners on every address of ``host``, sharing ``port`` with other processes."""
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, (address, _) in _distinct(infos):
            chosen = listeners[0].socket.getsockname()[1] if listeners else port
            sock = bind_reuse_port(family, (address, chosen))
            try:
                sock.listen(BACKLOG)
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            except BaseException:
                sock.close()
                raise
            listeners.append(listener)
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners
