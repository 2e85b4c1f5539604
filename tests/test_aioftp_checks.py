"""aioftp code that would misbehave fails at class creation; aioftp's other spellings work.

Covers :mod:`trio_ftp.aioftp_checks` (unused hooks, ``get_paths`` without ``await``,
handlers found by name), :mod:`trio_ftp.aioftp_stream` (the data connection's aioftp
methods, ``connection.loop.create_task``) and ``start()``'s asyncio arguments.
"""

from __future__ import annotations

import ftplib
import functools
import socket
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trio
import trio.testing
from conftest import in_thread

import trio_ftp
from trio_ftp.aioftp_checks import UNUSED_AIOFTP_HOOKS
from trio_ftp.aioftp_stream import AioftpDataStream

# Class creation -------------------------------------------------------------------------


@pytest.mark.parametrize("hook", sorted(UNUSED_AIOFTP_HOOKS))
def test_overriding_an_unused_aioftp_hook_raises(hook: str) -> None:
    async def override(self: Any, *args: Any) -> None:
        pass

    with pytest.raises(TypeError, match=f"{hook} overrides an aioftp hook .* never calls"):
        type("MyServer", (trio_ftp.Server,), {hook: override})


def test_get_paths_unpacked_without_await_raises_at_class_creation() -> None:
    with pytest.raises(TypeError) as raised:

        class ForgotAwait(trio_ftp.Server):
            async def size(self, connection: Any, rest: str) -> bool:
                real_path, virtual_path = self.get_paths(connection, rest)  # noqa: RUF059
                connection.response("213", str(virtual_path))
                return True

    message = str(raised.value)
    assert "ForgotAwait.size" in message
    assert f"{Path(__file__).name}:" in message  # file and line of the call
    assert "await self.get_paths(connection, path)" in message


@pytest.mark.parametrize(
    "body",
    [
        "real = self.get_paths(connection, rest)[0]",
        "self.get_paths(connection, rest)",
        "for p in self.get_paths(connection, rest): pass",
    ],
)
def test_other_unawaited_uses_of_get_paths_raise(body: str, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    source = f"async def mdtm(self, connection, rest):\n    {body}\n    return True\n"
    path = tmp_path / "handler.py"  # getsource needs a file
    code = compile(source, str(path), "exec")
    exec(code, namespace)
    function = namespace["mdtm"]
    path.write_text(source)
    with pytest.raises(TypeError, match="without await"):
        type("S", (trio_ftp.Server,), {"mdtm": function})


def test_awaited_or_passed_on_get_paths_is_fine() -> None:
    class Fine(trio_ftp.Server):
        async def size(self, connection: Any, rest: str) -> bool:
            _, virtual_path = await self.get_paths(connection, rest)
            connection.response("213", str(virtual_path))
            return True

        def paths_of(self, connection: Any, rest: str) -> Any:
            return self.get_paths(connection, rest)  # the caller awaits

    assert Fine().commands_mapping["size"].__func__ is Fine.size  # type: ignore[attr-defined]


def test_handlers_are_found_by_name_as_in_aioftps_tutorial() -> None:
    class Tutorial(trio_ftp.Server):
        async def coll(self, connection: Any, rest: str) -> bool:
            return True

        async def pass_(self, connection: Any, rest: str) -> bool:  # overrides PASS
            return True

        async def helper(self, connection: Any, rest: str) -> bool:  # not verb-shaped
            return True

        async def send(self, connection: Any, data: bytes) -> None:  # not a handler
            pass

        def sync(self, connection: Any, rest: str) -> None:  # not a coroutine
            pass

    server = Tutorial()
    assert server.commands_mapping["coll"].__func__ is Tutorial.coll  # type: ignore[attr-defined]
    assert server.commands_mapping["pass"].__func__ is Tutorial.pass_  # type: ignore[attr-defined]
    assert not {"help", "helper", "send", "sync"} & set(server.commands_mapping) - {"help"}
    assert "COLL" in server.command_specs
    assert not server.command_specs["COLL"].before_login  # 530 until logged in


async def test_a_command_found_by_name_answers(nursery: trio.Nursery, tmp_path: Path) -> None:
    class Tutorial(trio_ftp.Server):
        async def noop(self, connection: Any, rest: str) -> bool:
            connection.response("200", "boring")
            return True

        async def ping(self, connection: Any, rest: str) -> bool:
            connection.response("200", f"pong {rest}")
            return True

    server = Tutorial([trio_ftp.User("u", "p", base_path=tmp_path)], login_failure_delay=0)
    host, port = await nursery.start(server.serve, "127.0.0.1", 0)

    def client() -> list[str]:
        with ftplib.FTP() as ftp:
            ftp.connect(host, port, timeout=10)
            try:
                ftp.sendcmd("PING early")
                refused = "no"
            except ftplib.error_perm as exc:
                refused = str(exc)[:3]
            ftp.login("u", "p")
            return [refused, ftp.sendcmd("NOOP"), ftp.sendcmd("PING x")]

    assert await in_thread(client) == ["530", "200 boring", "200 pong x"]


# The data connection and the worker --------------------------------------------------------


async def test_data_connection_has_aioftps_stream_methods() -> None:
    left, right = trio.testing.memory_stream_pair()
    connection = trio_ftp.Connection()
    connection.data_connection = left
    stream = connection.data_connection
    assert isinstance(stream, AioftpDataStream)
    assert connection.state.data_connection is left  # the raw stream stays in the state
    await right.send_all(b"one\ntwo\nlast")
    await right.send_eof()
    assert await stream.readline() == b"one\n"
    assert await stream.readexactly(4) == b"two\n"
    assert await stream.readline() == b"last"
    assert await stream.read() == b""
    with pytest.raises(EOFError):
        await stream.readexactly(1)
    await stream.write(b"reply")
    assert await right.receive_some() == b"reply"
    del connection.data_connection
    assert "data_connection" not in connection
    connection.data_connection = stream  # storing the wrapper stores the raw stream
    assert connection.state.data_connection is left
    async with stream:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await left.send_all(b"x")


async def test_readline_is_bounded() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = AioftpDataStream(left, trio_ftp.Connection())
    await right.send_all(b"x" * (70 * 1024))
    with pytest.raises(ValueError, match="line longer"):
        await stream.readline()


async def test_iterators_and_close() -> None:
    left, right = trio.testing.memory_stream_pair()
    stream = AioftpDataStream(left, trio_ftp.Connection())
    await right.send_all(b"a\nb\n")
    await right.aclose()
    assert [line async for line in stream.iter_by_line()] == [b"a\n", b"b\n"]
    stream.close()  # a memory stream has no socket: nothing to do, no error

    a, b = trio.socket.socketpair()
    socket_stream = AioftpDataStream(trio.SocketStream(a), trio_ftp.Connection())
    await b.send(b"1234")
    b.shutdown(socket.SHUT_WR)
    assert [block async for block in socket_stream.iter_by_block(3)] == [b"123", b"4"]
    socket_stream.close()
    assert a.fileno() == -1
    b.close()


async def test_writes_are_paced_by_the_speed_limit(autojump_clock: Any) -> None:
    server = trio_ftp.Server(write_speed_limit=100_000)
    left, right = trio.testing.memory_stream_pair()
    connection = trio_ftp.Connection()
    connection.limit_by(server.throttles, None)
    stream = AioftpDataStream(left, connection)

    async def drain() -> None:
        while await right.receive_some():
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        began = trio.current_time()
        for _ in range(5):
            await stream.write(b"x" * 100_000)
        elapsed = trio.current_time() - began
        await left.aclose()
    assert elapsed >= 4  # 500 kB at 100 kB/s, less the first burst (64 KiB)


async def test_create_task_runs_one_worker_and_its_handle_cancels_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    seen: list[object] = []

    class Workers(trio_ftp.Server):
        async def work(self, connection: Any, rest: str) -> bool:
            first = connection.loop.create_task(trio.sleep_forever())  # noqa: ASYNC105
            connection.extra_workers.add(first)
            try:
                connection.loop.create_task(trio.sleep_forever())  # noqa: ASYNC105
            except trio_ftp.ReplyError as exc:  # one transfer at a time
                seen.append(exc.code)
            seen.append(len(connection.extra_workers))
            assert first.cancel()
            with trio.fail_after(5):
                await first.wait()
            seen.extend([first.done(), first.cancel(), len(connection.extra_workers)])
            connection.response("200", "ok")
            return True

    server = Workers([trio_ftp.User("u", "p", base_path=tmp_path)], login_failure_delay=0)
    host, port = await nursery.start(server.serve, "127.0.0.1", 0)

    def client() -> str:
        with ftplib.FTP() as ftp:
            ftp.connect(host, port, timeout=10)
            ftp.login("u", "p")
            return ftp.sendcmd("WORK")

    assert await in_thread(client) == "200 ok"
    assert seen == ["503", 1, True, False, 0]


# start() takes aioftp's (asyncio.start_server's) arguments ---------------------------------


async def test_start_takes_asyncio_start_server_arguments() -> None:
    server = trio_ftp.Server()
    await server.start(
        "127.0.0.1",
        0,
        backlog=5,
        family=socket.AF_INET,
        reuse_address=True,
        start_serving=True,
        limit=2**16,
        flags=0,
        loop=None,
        ssl_handshake_timeout=3.5,
    )
    try:
        assert server.address[0] == "127.0.0.1"
        assert server.options.tls.handshake_timeout == 3.5
    finally:
        await server.close()


async def test_start_on_a_socket_of_yours() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = trio_ftp.Server()
    await server.start(sock=sock)
    try:
        assert server.address == ("127.0.0.1", port)
    finally:
        await server.close()


async def test_start_refuses_what_it_cannot_honour() -> None:
    server = trio_ftp.Server()
    with pytest.raises(TypeError, match=r"Server\(ssl=\.\.\.\)"):
        await server.start("127.0.0.1", 0, ssl=None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        await server.start("127.0.0.1", 0, colour="blue")
    with pytest.raises(OSError, match="family"):
        await server.start("127.0.0.1", 0, family=socket.AF_INET6)
    sock = socket.socket()
    try:
        with pytest.raises(ValueError, match="not both"):
            await server.start("127.0.0.1", 0, sock=sock)
    finally:
        sock.close()


async def test_serve_and_run_pass_the_arguments_on(nursery: trio.Nursery) -> None:
    server = trio_ftp.Server()
    serve = functools.partial(server.serve, family=socket.AF_INET, backlog=3)
    host, _ = await nursery.start(serve, "127.0.0.1", 0)
    assert host == "127.0.0.1"
    await server.close()

    runner = trio_ftp.Server()
    with pytest.raises(TypeError, match="no ssl"):
        await runner.run("127.0.0.1", 0, ssl=True)


async def test_connection_future_as_in_aioftp() -> None:
    connection = trio_ftp.Connection()
    future = connection.future.rename_from
    assert not future.done()
    with pytest.raises(LookupError):
        future.result()
    got: list[object] = []

    async def waiter() -> None:
        got.append(await connection.future.rename_from)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        connection.rename_from = PurePosixPath("/a")
    assert [str(path) for path in got] == ["/a"]
    assert connection.future.rename_from.done()
    assert str(connection.future.rename_from.result()) == "/a"


async def test_start_on_localhost_binds_one_port_per_family_or_the_family_asked() -> None:
    both = trio_ftp.Server()
    await both.start("localhost", 0)
    try:
        ports = {listener.socket.getsockname()[1] for listener in both.runtime.listeners}
        families = {listener.socket.family for listener in both.runtime.listeners}
        assert len(ports) == 1  # one port number for 127.0.0.1 and ::1 alike
    finally:
        await both.close()
    only = trio_ftp.Server()
    await only.start("localhost", 0, family=socket.AF_INET)
    try:
        assert [listener.socket.family for listener in only.runtime.listeners] == [socket.AF_INET]
    finally:
        await only.close()
    assert socket.AF_INET in families


async def test_start_refuses_a_socket_that_is_not_tcp() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="TCP"):
            await trio_ftp.Server().start(sock=udp)
    finally:
        udp.close()


async def test_a_name_with_two_families_gets_one_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name that resolves to IPv4 and IPv6 with port 0: trio picks a free port per
    address; start() binds them again on one port so ``address`` tells the whole truth.
    (This machine's ``localhost`` is IPv4 only, so the name is played by a stand-in that
    opens real listeners on 127.0.0.1 and ::1.)"""
    real = trio.open_tcp_listeners
    calls: list[int] = []

    async def dual(port: int, *, host: str | None = None, backlog: int | None = None) -> Any:
        calls.append(port)
        return [*await real(port, host="127.0.0.1"), *await real(port, host="::1")]

    monkeypatch.setattr(trio, "open_tcp_listeners", dual)
    server = trio_ftp.Server()
    await server.start("dual.example", 0)
    try:
        names = [listener.socket.getsockname()[:2] for listener in server.runtime.listeners]
        assert {host for host, _ in names} == {"127.0.0.1", "::1"}
        assert len({port for _, port in names}) == 1
        assert calls[0] == 0
        assert calls[1] == names[0][1]
    finally:
        await server.close()


def test_every_aioftp_argument_is_accepted() -> None:
    """Every parameter of aioftp's ``Server``, ``User``, ``Permission``, and every
    ``asyncio.start_server`` keyword aioftp's ``start``/``run`` pass on, is a parameter
    here too (``start``'s asyncio-only ones through ``**asyncio_only``)."""
    import inspect

    import aioftp
    from aioftp.server import AsyncIOStartServerKwargs

    from trio_ftp.listen import ASYNCIO_ONLY

    for theirs, ours in (
        (aioftp.Server, trio_ftp.Server),
        (aioftp.User, trio_ftp.User),
        (aioftp.Permission, trio_ftp.Permission),
        (aioftp.Server.start, trio_ftp.Server.start),
        (aioftp.Server.run, trio_ftp.Server.run),
    ):
        names = set(inspect.signature(theirs).parameters) - {"kwargs"}
        assert names <= set(inspect.signature(ours).parameters), (theirs, names)
    start = set(inspect.signature(trio_ftp.Server.start).parameters)
    for name in AsyncIOStartServerKwargs.__annotations__:
        assert name in start or name in ASYNCIO_ONLY or name == "ssl", name
