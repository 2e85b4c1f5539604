"""Opening the control listeners from ``start()``'s arguments, aioftp's included.

aioftp's ``start(host, port, **kwargs)`` hands ``kwargs`` to :func:`asyncio.start_server`;
the ones that mean something for a listening socket (``backlog``, ``family``, ``sock``,
``reuse_port``) mean the same here. The others are accepted and have nothing to do in trio
(see :data:`ASYNCIO_ONLY`); ``ssl`` is refused because the server's TLS is configured on
``Server`` (aioftp refuses it too: it passes its own).
"""

from __future__ import annotations

import socket

import trio

from .reuseport import BACKLOG, open_reuse_port_listeners

__all__ = ["ASYNCIO_ONLY", "open_listeners"]

#: :func:`asyncio.start_server` arguments with no counterpart in trio, and why.
ASYNCIO_ONLY: dict[str, str] = {
    "loop": "trio has no loop object",
    "limit": "the control line length is bounded by the server (options.protocol)",
    "flags": "addresses are resolved by trio.open_tcp_listeners",
    "reuse_address": "trio always sets SO_REUSEADDR on listening sockets",
    "start_serving": "start() binds, serve_forever() accepts (asyncio's default order)",
}


async def open_listeners(
    host: str | None,
    port: int,
    *,
    reuse_port: bool = False,
    backlog: int | None = None,
    family: int = socket.AF_UNSPEC,
    sock: socket.socket | None = None,
) -> list[trio.SocketListener]:
    """Listening sockets for ``host:port`` (every address of ``host``; all addresses when
    ``None``) on one port number, of ``family`` only when one is given; or ``sock``, a
    bound socket of the caller's.

    Raises:
        OSError: nothing could be bound, or no address of ``host`` is of ``family``.
        ValueError: ``sock`` with ``host``/``port``, or a socket that is not TCP.
    """
    if sock is not None:
        if host is not None or port:
            raise ValueError("give sock= or host/port, not both")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError("sock= must be a TCP socket")
        sock.listen(BACKLOG if backlog is None else backlog)
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    if reuse_port:
        listeners = await open_reuse_port_listeners(host, port)
    else:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    if family != socket.AF_UNSPEC:
        kept = [listener for listener in listeners if listener.socket.family == family]
        for listener in listeners:
            if listener not in kept:
                await listener.aclose()
        if not kept:
            raise OSError(f"no address of {host!r} is of family {socket.AddressFamily(family)!r}")
        listeners = kept
    if port == 0 and len(listeners) > 1 and not reuse_port:
        # One port for every address family, so `address` tells the whole truth.
        chosen = listeners[0].socket.getsockname()[1]
        families = {listener.socket.family for listener in listeners}
        for listener in listeners:
            await listener.aclose()
        listeners = await trio.open_tcp_listeners(chosen, host=host, backlog=backlog)
        listeners = [listener for listener in listeners if listener.socket.family in families]
    return listeners
