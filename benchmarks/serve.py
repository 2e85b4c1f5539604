"""Run one server in this process (the harness starts it as a child): trio_ftp, pyftpdlib,
aioftp, the bare ``os.sendfile`` sender that gives the loopback limit, or the bare trio
program that gives the trio floor.

Each binds 127.0.0.1 on a free port, prints the port on stdout once it accepts
connections, and serves until it is killed. All use their defaults except where equal
settings need a change: no connection cap, the same listen backlog, logging at WARNING.

    python3 -m benchmarks.serve trio_ftp --root DIR --user bench --password pw [--tls]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]

HOST = "127.0.0.1"
BACKLOG = 4096  # what trio asks for by default (capped by net.core.somaxconn)


def _announce(port: int) -> None:
    print(port, flush=True)


def _server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def serve_trio_ftp(args: argparse.Namespace) -> None:
    """Explicit FTPS (``AUTH TLS``) when ``--tls``; default protections, no speed limits."""
    import trio

    import trio_ftp

    context = _server_context(args.cert, args.key) if args.tls else None
    user = trio_ftp.User(args.user, args.password, base_path=Path(args.root), home_path="/")
    server = trio_ftp.Server([user], tls_context=context)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(server.serve, HOST, 0)
            _announce(port)

    trio.run(run)


def _trio_ftp_worker(root: str, login: str, password: str, context: Any) -> Any:
    """One worker's server for :func:`serve_trio_ftp_workers` (module level: picklable)."""
    import trio_ftp

    user = trio_ftp.User(login, password, base_path=Path(root), home_path="/")
    return trio_ftp.Server([user], data_ports=context.data_ports)


def serve_trio_ftp_workers(args: argparse.Namespace) -> None:
    """``trio_ftp.serve_workers`` with 2 workers sharing the port (``SO_REUSEPORT``)."""
    import trio_ftp

    factory = functools.partial(_trio_ftp_worker, args.root, args.user, args.password)
    trio_ftp.serve_workers(
        factory, HOST, 0, workers=2, grace=0, on_ready=lambda address: _announce(address[1])
    )


def serve_pyftpdlib(args: argparse.Namespace, processes: int = 1) -> None:
    """``FTPServer`` (single-process async) with ``FTPHandler``, or ``TLS_FTPHandler`` for
    explicit FTPS; sendfile on (its default). ``processes`` > 1: its prefork mode."""
    from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
    from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
    from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler: type[FTPHandler]
    if args.tls:
        from pyftpdlib.handlers import TLS_FTPHandler

        handler = type("BenchTLSHandler", (TLS_FTPHandler,), {})
        handler.certfile = args.cert
        handler.keyfile = args.key
    else:
        handler = type("BenchHandler", (FTPHandler,), {})
    handler.authorizer = authorizer
    server = FTPServer((HOST, 0), handler, backlog=BACKLOG)
    server.max_cons = 0  # unlimited, as the others (its default is 512)
    _announce(server.address[1])
    server.serve_forever(handle_exit=False, worker_processes=processes)


def serve_aioftp(args: argparse.Namespace) -> None:
    """aioftp's only TLS is implicit (``ssl=``): with ``--tls`` every connection is TLS."""
    import asyncio

    import aioftp

    context = _server_context(args.cert, args.key) if args.tls else None
    user = aioftp.User(args.user, args.password, base_path=Path(args.root), home_path="/")
    server = aioftp.Server([user], ssl=context)

    async def run() -> None:
        await server.start(HOST, 0, backlog=BACKLOG)
        _announce(server.address[1])
        await server.serve_forever()

    asyncio.run(run())


def serve_sendfile_limit(args: argparse.Namespace) -> None:
    """Not FTP: each connection gets ``--file`` through ``os.sendfile`` and is closed. What
    the fast client reads from it is the most loopback TCP can carry here."""
    path = args.file
    with socket.create_server((HOST, 0), backlog=BACKLOG) as listener:
        _announce(listener.getsockname()[1])
        while True:
            connection, _ = listener.accept()
            with connection, open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = 0
                try:
                    while offset < size:
                        offset += os.sendfile(
                            connection.fileno(), f.fileno(), offset, size - offset
                        )
                except OSError:  # the client left early: serve the next one
                    pass


def _split_command(buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """``(VERB, argument, rest of buffer)`` of the first line of ``buffer`` (which holds a
    CR LF): the floors' whole command parser."""
    line, rest = buffer.split(b"\r\n", 1)
    verb, _, argument = line.partition(b" ")
    return verb.upper(), argument, rest


#: The floors' canned replies (anything else but PASV, RETR, STOR, AUTH, QUIT: ``200``).
_CANNED = {b"USER": b"331 password", b"PASS": b"230 logged in"}


@functools.cache
def _floor_ports() -> Any:
    """The floors' passive port chooser: trio_ftp's (the kernel's range, read once)."""
    from trio_ftp.anyport import AnyPort

    return AnyPort.from_kernel()


def _passive_socket() -> tuple[socket.socket, bytes]:
    """A floor's passive listening socket and its ``227`` reply, bound as trio_ftp's
    ``PASV`` binds (``trio_ftp.anyport``): ``bind(0)`` alone walks every TIME_WAIT socket,
    thousands after a sessions row, and the floors must not pay what trio_ftp does not."""
    from trio_ftp.datachannel import _listening_socket

    error: OSError | None = None
    for port in _floor_ports().candidates():
        try:
            plain = _listening_socket(socket.AF_INET, HOST, port)
        except OSError as exc:
            error = exc
            continue
        port = plain.getsockname()[1]
        return plain, b"227 Entering Passive Mode (127,0,0,1,%d,%d)" % divmod(port, 256)
    assert error is not None
    raise error


def _floor_tls(context: ssl.SSLContext, transport: Any, *, tickets: bool) -> Any:
    """A floor's ``trio.SSLStream`` over ``transport``: data connections (``tickets`` false)
    resume the control connection's session without issuing tickets of their own and
    acknowledge at once, as trio_ftp's do."""
    import trio

    from trio_ftp.tlstransport import tls_data_transport

    if not tickets:
        transport = tls_data_transport(transport)
    saved = context.num_tickets
    if not tickets:
        context.num_tickets = 0  # read when the connection object is made
    try:
        return trio.SSLStream(transport, context, server_side=True)
    finally:
        context.num_tickets = saved


def serve_trio_floor(args: argparse.Namespace) -> None:
    """Not FTP: the thinnest trio program that speaks the benchmark's session dialogue
    (greeting, USER, PASS, TYPE, PASV, RETR, STOR, QUIT; with ``--tls`` also AUTH TLS,
    PBSZ, PROT and TLS data connections) with canned replies. It checks nothing: no login,
    no path confinement, no threads, no timeouts; RETR reads ``--root``/name with a
    blocking ``open().read()``, STOR writes it with blocking ``write`` calls. Its
    sessions/s, files/s in the mirror rows (and FTPS CPU per session) are the best any
    trio server can do here on CPython. TLS is ``trio.SSLStream``, data connections
    resuming the control connection's session without issuing tickets of their own, as
    trio_ftp does."""
    import trio

    root = Path(args.root)
    context = _server_context(args.cert, args.key) if args.tls else None

    def protect(transport: trio.SocketStream, tickets: bool) -> trio.SSLStream[trio.abc.Stream]:
        assert context is not None
        return _floor_tls(context, transport, tickets=tickets)

    async def session(control: trio.SocketStream) -> None:
        stream: trio.abc.Stream = control
        passive: trio.SocketListener | None = None
        buffer = b""
        try:
            await stream.send_all(b"220 ready\r\n")
            while True:
                while b"\r\n" not in buffer:
                    chunk = await stream.receive_some()
                    if not chunk:
                        return  # the client left mid-dialogue
                    buffer += chunk
                verb, argument, buffer = _split_command(buffer)
                reply = _CANNED.get(verb, b"200 ok")
                if verb == b"AUTH" and context is not None:
                    await stream.send_all(b"234 go ahead\r\n")
                    stream = protect(control, tickets=True)
                    await stream.do_handshake()
                    continue
                if verb == b"PASV":
                    if passive is not None:
                        await passive.aclose()
                    plain, reply = _passive_socket()
                    passive = trio.SocketListener(trio.socket.from_stdlib_socket(plain))
                elif verb == b"RETR" and passive is not None:
                    await stream.send_all(b"150 ok\r\n")
                    async with passive:
                        data: trio.abc.Stream = await passive.accept()
                    passive = None
                    if context is not None:  # PROT P (the benchmark always asks for it)
                        data = protect(data, tickets=False)
                    path = root / argument.decode().lstrip("/")
                    with open(path, "rb") as f:  # noqa: ASYNC230 (a floor: no thread)
                        content = f.read()
                    async with data:
                        await data.send_all(content)
                    reply = b"226 done"
                elif verb == b"STOR" and passive is not None:
                    await stream.send_all(b"150 ok\r\n")
                    async with passive:
                        data = await passive.accept()
                    passive = None
                    if context is not None:
                        data = protect(data, tickets=False)
                    path = root / argument.decode().lstrip("/")
                    with open(path, "wb") as f:  # noqa: ASYNC230 (a floor: no thread)
                        async with data:
                            while chunk := await data.receive_some():
                                f.write(chunk)
                    reply = b"226 done"
                elif verb == b"QUIT":
                    await stream.send_all(b"221 bye\r\n")
                    return
                await stream.send_all(reply + b"\r\n")
        except (trio.BrokenResourceError, OSError):  # a client gone, a missing file
            pass
        finally:
            if passive is not None:
                await passive.aclose()
            await trio.aclose_forcefully(stream)

    async def run() -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=BACKLOG)
        _announce(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(session, listeners)

    trio.run(run)


def serve_trio_floor_tasks(args: argparse.Namespace, processes: int = 1) -> None:
    """The trio floor built the way this project says a server is built: one
    nursery per control session, an idle deadline around every command read, every data
    channel (the accept after PASV) and every transfer a child task with its own cancel
    scope, the transfer's ``226`` sent by the transfer task while the control task reads
    on. Replies are still canned and nothing is checked: the gap between this and the bare
    floor is what the structure costs, the gap to trio_ftp what its features cost.
    ``processes`` > 1: that many processes accept from one socket, as pyftpdlib's prefork
    mode does."""
    import trio

    root = Path(args.root)
    idle_timeout = 300.0
    context = _server_context(args.cert, args.key) if args.tls else None

    class Channel:
        """A passive data channel: its listener, the accepted stream once there."""

        def __init__(self, listener: trio.SocketListener) -> None:
            self.listener = listener
            self.stream: trio.abc.Stream | None = None
            self.ready = trio.Event()
            self.scope = trio.CancelScope()

        async def accept(self) -> None:
            with self.scope:
                async with self.listener:
                    self.stream = await self.listener.accept()
            self.ready.set()

    class Control:
        """The control connection: two tasks reply on it, one at a time."""

        def __init__(self, stream: trio.abc.Stream) -> None:
            self.stream = stream
            self.lock = trio.Lock()

        async def reply(self, line: bytes) -> None:
            async with self.lock:
                await self.stream.send_all(line + b"\r\n")

    async def transfer(control: Control, channel: Channel, verb: bytes, name: bytes) -> None:
        """``RETR`` or ``STOR`` of ``name`` once the data connection is there, then ``226``."""
        with trio.CancelScope(), contextlib.suppress(trio.BrokenResourceError, OSError):
            await channel.ready.wait()
            data = channel.stream
            if data is None:
                return
            if context is not None:  # PROT P (the benchmark always asks for it)
                data = _floor_tls(context, data, tickets=False)
            path = root / name.decode().lstrip("/")
            async with data:
                if verb == b"RETR":
                    with open(path, "rb") as f:  # noqa: ASYNC230 (a floor)
                        content = f.read()
                    await data.send_all(content)
                else:
                    with open(path, "wb") as f:  # noqa: ASYNC230 (a floor)
                        while chunk := await data.receive_some():
                            f.write(chunk)
            await control.reply(b"226 done")

    async def dialogue(stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        control = Control(stream)
        channel: Channel | None = None
        buffer = b""
        await control.reply(b"220 ready")
        with trio.CancelScope() as idle:
            while True:
                idle.deadline = trio.current_time() + idle_timeout
                while b"\r\n" not in buffer:
                    chunk = await control.stream.receive_some()
                    if not chunk:
                        return
                    buffer += chunk
                idle.deadline = math.inf
                verb, argument, buffer = _split_command(buffer)
                reply = _CANNED.get(verb, b"200 ok")
                if verb == b"AUTH" and context is not None:
                    await control.reply(b"234 go ahead")
                    control.stream = _floor_tls(context, stream, tickets=True)
                    with trio.fail_after(idle_timeout):
                        await control.stream.do_handshake()
                    continue
                if verb == b"PASV":
                    if channel is not None:
                        channel.scope.cancel()
                    plain, reply = _passive_socket()
                    channel = Channel(trio.SocketListener(trio.socket.from_stdlib_socket(plain)))
                    nursery.start_soon(channel.accept)
                elif verb in (b"RETR", b"STOR") and channel is not None:
                    await control.reply(b"150 ok")
                    nursery.start_soon(transfer, control, channel, verb, argument)
                    channel = None
                    continue
                elif verb == b"QUIT":
                    await control.reply(b"221 bye")
                    return
                await control.reply(reply)

    async def session(control: trio.SocketStream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await dialogue(control, nursery)
                except (trio.BrokenResourceError, OSError):  # the client gone
                    pass
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(control)

    async def run(shared: socket.socket | None) -> None:
        if shared is None:
            listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=BACKLOG)
            _announce(listeners[0].socket.getsockname()[1])
        else:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(shared))]
        await trio.serve_listeners(session, listeners)

    if processes == 1:
        trio.run(run, None)
        return
    # As pyftpdlib's prefork mode: the processes accept from one listening socket.
    shared = socket.socket()
    shared.bind((HOST, 0))
    shared.listen(BACKLOG)
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            try:
                trio.run(run, shared)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)  # benchmarks.children stops the whole group anyway
    _announce(shared.getsockname()[1])
    for pid in children:
        os.waitpid(pid, 0)


SERVERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "trio_ftp": serve_trio_ftp,
    "trio_ftp-2w": serve_trio_ftp_workers,
    "pyftpdlib": serve_pyftpdlib,
    "pyftpdlib-2p": functools.partial(serve_pyftpdlib, processes=2),
    "aioftp": serve_aioftp,
    "sendfile": serve_sendfile_limit,
    "trio-floor": serve_trio_floor,
    "trio-floor-tasks": serve_trio_floor_tasks,
    "trio-floor-tasks-2p": functools.partial(serve_trio_floor_tasks, processes=2),
}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--root", default=".")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="pw")
    parser.add_argument("--tls", action="store_true", help="serve FTPS")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--file", help="what the sendfile sender sends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Enough descriptors for the idle-connections row (each session may hold several).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    SERVERS[args.server](args)


if __name__ == "__main__":
    main()
