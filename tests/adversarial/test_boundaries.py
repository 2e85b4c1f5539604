"""User code can never crash or hang the server: every call into code the server does not
own (the user manager, ``path_io_factory`` and the backend's methods, custom commands and
``SITE`` handlers, a ``passive_address`` callable, an overridden ``greeting``, event
consumers) is tried once raising and once hanging.

Each socket test runs a real server on loopback: the misbehaving session gets its reply (or
a clean close) while two well-behaved sessions are halfway through a download and an upload,
which then finish byte-exactly; ``serve()`` still accepts afterwards; ``close()`` returns in
bounded time. The tests on memory streams check the bounds with trio's autojump clock and
the default ``SESSION_END_TIMEOUT``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD, Running, default_users, random_bytes
from memory_client import LOCAL, PEER, MemoryClient, start_memory_session
from wire import (
    Wire,
    data_connect,
    logged_in,
    receive_all,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

from trio_ftp import (
    MemoryPathIO,
    MemoryUserManager,
    PathIO,
    Server,
    User,
    boundaries,
    command,
    site_command,
    worker,
)

if sys.version_info < (3, 11):  # trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

MiB = 1024 * 1024
#: Seconds a call into user code may take in these tests (callback_timeout and, patched,
#: SESSION_END_TIMEOUT): short, so the whole file runs in seconds.
SHORT = 0.3
#: What close() may take on top of SESSION_END_TIMEOUT (and grace).
CLOSE_SLACK = 1.0
#: How long a "hang" lasts: longer than every bound in this file (so, for these tests,
#: forever), yet finite, so that a server that waits for it fails a test instead of hanging.
HANG = 30.0
#: The same on trio's autojump clock, where it costs no real time.
VIRTUAL_HANG = 1000.0
#: The client address of the misbehaving session, where the trap is keyed on the address.
EVIL_HOST = "127.0.0.2"
EVIL = "evil"


# traps -----------------------------------------------------------------------------------------
@dataclass
class Trap:
    """Makes one named call misbehave: ``raise`` (RuntimeError), ``raise-group`` (an
    ExceptionGroup of one) or ``hang`` (returns after ``HANG`` seconds: never, as far as
    the test can tell); ``hit`` is set when it springs."""

    where: str
    how: str
    hit: trio.Event = field(default_factory=trio.Event)

    def spring_now(self, where: str) -> None:
        """The synchronous part: set ``hit`` and raise, when ``where`` is the trap."""
        if where != self.where:
            return
        self.hit.set()
        if self.how == "raise":
            raise RuntimeError(f"trap in {where}")
        if self.how == "raise-group":
            raise ExceptionGroup("traps", [RuntimeError(f"trap in {where}")])

    async def spring(self, where: str) -> None:
        self.spring_now(where)
        if where == self.where and self.how == "hang":
            await trio.sleep(HANG)
        await trio.lowlevel.checkpoint()

    async def sprung(self) -> None:
        with trio.fail_after(10):
            await self.hit.wait()


class TrapUsers(MemoryUserManager):
    """The default users plus ``evil``, whose user-manager calls spring the trap."""

    def __init__(self, root: Path, trap: Trap) -> None:
        super().__init__([*default_users(root), User(EVIL, PASSWORD, base_path=root)])
        self.trap = trap

    async def get_user(self, login: str) -> Any:
        if login == EVIL:
            await self.trap.spring("get_user")
        return await super().get_user(login)

    async def authenticate(self, user: User, password: str) -> bool:
        if user.login == EVIL:
            await self.trap.spring("authenticate")
        return await super().authenticate(user, password)

    async def notify_login(self, user: User) -> bool:
        if user.login == EVIL:
            await self.trap.spring("notify_login")
        return await super().notify_login(user)

    async def notify_logout(self, user: User) -> None:
        await super().notify_logout(user)
        if user.login == EVIL:
            await self.trap.spring("notify_logout")


def trap_path_io(trap: Trap) -> type[PathIO]:
    """The local backend, but ``trap.where`` (``_open``, ``read``, ``close``, ``stat``)
    misbehaves on files named ``trap*``, and every call of a session from ``EVIL_HOST``
    springs ``confine`` (so ``where="confine"`` traps that session's backend as a whole)."""

    class TrapPathIO(PathIO):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.trapped: set[int] = set()  # id() of the open trap files

        def _evil(self) -> bool:
            return getattr(self.connection, "client_host", None) == EVIL_HOST

        async def confine(self, base_path: Any, relative: PurePosixPath) -> Any:
            if self._evil():
                await trap.spring("confine")
            return await super().confine(base_path, relative)

        async def stat(self, path: Any) -> Any:
            if path.name.startswith("trap"):
                await trap.spring("stat")
            return await super().stat(path)

        async def _open(self, path: Any, mode: str) -> Any:
            if path.name.startswith("trap"):
                await trap.spring("_open")
            file = await super()._open(path, mode)
            if path.name.startswith("trap"):
                self.trapped.add(id(file))
            return file

        async def read(self, file: Any, block_size: int) -> bytes:
            if id(file) in self.trapped:
                await trap.spring("read")
            return await super().read(file, block_size)

        async def close(self, file: Any) -> None:
            await super().close(file)  # really closed: a hang leaks no descriptor
            if id(file) in self.trapped:
                await trap.spring("close")

    return TrapPathIO


class TrapServer(Server):
    """A server whose own extensions spring the trap: a custom command (``TRAP``), a SITE
    subcommand (``SITE TRAP``) and the greeting (for clients from ``EVIL_HOST``)."""

    trap: Trap

    @command("TRAP", help="TRAP: springs the trap")
    async def trap_command(self, connection: Any, rest: str) -> bool:
        await self.trap.spring("command")
        connection.response("200", "not trapped")
        return True

    @site_command("TRAP", help="SITE TRAP: springs the trap")
    async def site_trap(self, connection: Any, rest: str) -> bool:
        await self.trap.spring("site")
        connection.response("200", "not trapped")
        return True

    async def greeting(self, connection: Any) -> bool:
        welcomed = await super().greeting(connection)  # takes the connection slots
        if connection.client_host == EVIL_HOST:
            await self.trap.spring("greeting")
        return welcomed


def trap_server(root: Path, trap: Trap, **settings: Any) -> TrapServer:
    """A TrapServer on ``root`` with short bounds: every boundary of it is trapped."""

    def choose(connection: Any) -> Any:
        if connection.client_host != EVIL_HOST:
            return None
        if trap.how == "hang":  # an async chooser: awaited within callback_timeout
            return trap.spring("passive_address")
        trap.spring_now("passive_address")
        return None

    backend = trap_path_io(trap)

    def factory(**kwargs: Any) -> PathIO:
        if getattr(kwargs["connection"], "client_host", None) == EVIL_HOST:
            trap.spring_now("path_io_factory")
        return backend(**kwargs)

    options: dict[str, Any] = {
        "callback_timeout": SHORT,
        "login_failure_delay": 0,
        "path_io_factory": factory,
        "passive_address": choose,
        "maximum_connections": 50,
        **settings,
    }
    server = TrapServer(TrapUsers(root, trap), **options)
    server.trap = trap
    return server


# the well-behaved sessions ---------------------------------------------------------------------
@pytest.fixture
def short_session_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boundaries, "SESSION_END_TIMEOUT", SHORT)


@pytest.fixture
def serve(start_server, short_session_end):
    """Serve a given server on 127.0.0.1:0 (start_server closes it at teardown and checks
    that no descriptor leaked)."""

    async def start(server: Server) -> Running:
        return await start_server(server=server)

    return start


async def in_flight(wire: Wire, line: str) -> bytes:
    """``STAT`` says ``wire``'s transfer (``line``) is still running."""
    status = await wire.command("STAT")
    assert f"transfer in progress: {line}".encode() in status, status
    return status


@asynccontextmanager
async def bystanders(running: Running) -> AsyncIterator[None]:
    """Two well-behaved sessions halfway through a 16 MiB download and a 2 MiB upload
    while the body runs (more than the socket buffers hold: the server is mid-transfer);
    afterwards both finish, and must be byte-exact and answered ``226``."""
    download = random_bytes(16 * MiB, seed=1301)
    upload = random_bytes(2 * MiB, seed=1302)
    (running.root / "big.bin").write_bytes(download)

    reader = await logged_in(running.host, running.port, kind="I")
    incoming = await data_connect(await reader.pasv())
    assert (await reader.command("RETR big.bin")).startswith(b"150")
    received = bytearray()
    with trio.fail_after(10):
        while len(received) < MiB:
            received += await incoming.receive_some(65536)

    writer = await logged_in(running.host, running.port, kind="I")
    outgoing = await data_connect(await writer.pasv())
    assert (await writer.command("STOR up.bin")).startswith(b"150")
    await outgoing.send_all(upload[: len(upload) // 2])

    await in_flight(reader, "RETR /big.bin")
    await in_flight(writer, "STOR /up.bin")
    yield
    await in_flight(reader, "RETR /big.bin")
    await in_flight(writer, "STOR /up.bin")

    received += await receive_all(incoming)
    await incoming.aclose()
    assert (await reader.reply()).startswith(b"226")
    assert bytes(received) == download
    await outgoing.send_all(upload[len(upload) // 2 :])
    await outgoing.aclose()
    assert (await writer.reply()).startswith(b"226")
    assert (running.root / "up.bin").read_bytes() == upload
    for wire in (reader, writer):
        assert (await wire.command("QUIT")).startswith(b"221")
        await wire.aclose()


async def still_serving(running: Running) -> None:
    """``serve()`` still accepts: a new session logs in and is answered."""
    wire = await logged_in(running.host, running.port)
    assert (await wire.command("NOOP")).startswith(b"200")
    assert (await wire.command("QUIT")).startswith(b"221")
    await wire.aclose()


async def closes_in_bounded_time(running: Running, grace: float | None = None) -> None:
    """``close(grace)`` returns within grace + SESSION_END_TIMEOUT + CLOSE_SLACK."""
    bound = (grace or 0) + boundaries.SESSION_END_TIMEOUT + CLOSE_SLACK
    start = trio.current_time()
    with trio.fail_after(bound):
        await running.server.close(grace)
    assert trio.current_time() - start < bound
    assert running.server.connections == {}
    assert running.server.runtime.connections_per_ip == {}
    assert running.server.available_connections.value == 50  # every slot given back


async def serving_then_closed(
    running: Running, evil: Wire, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The end of a raise-or-hang test: the server still serves and closes in bounded
    time; a hung session is told 421 without a traceback, a raise was logged once."""
    await still_serving(running)
    await closes_in_bounded_time(running)
    if how == "hang":
        assert (await replies_until_closed(evil))[-1].startswith(b"421")
        assert tracebacks(caplog) == []
    else:
        assert_logged_once(caplog, how)


async def replies_until_closed(wire: Wire) -> list[bytes]:
    """Every reply left, until the server closes the connection."""
    replies = []
    while reply := await wire.reply():
        replies.append(reply)
    return replies


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


def timeouts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "did not return within" in record.getMessage()
    ]


def assert_logged_once(caplog: pytest.LogCaptureFixture, how: str) -> None:
    """One traceback for a raise, none and one WARNING for a timeout."""
    if how == "hang":
        assert tracebacks(caplog) == []
        assert len(timeouts(caplog)) == 1, [r.getMessage() for r in caplog.records]
    else:
        assert len(tracebacks(caplog)) == 1, [r.getMessage() for r in tracebacks(caplog)]
        assert timeouts(caplog) == []


RAISE_OR_HANG = pytest.mark.parametrize("how", ["raise", "hang"])


async def evil_session(running: Running) -> Wire:
    """A session from EVIL_HOST, greeted."""
    wire = await Wire.connect(running.host, running.port, source=EVIL_HOST)
    assert (await wire.greeting()).startswith(b"220")
    return wire


# the user manager ------------------------------------------------------------------------------
@RAISE_OR_HANG
@pytest.mark.parametrize("where", ["get_user", "authenticate", "notify_login"])
async def test_user_manager_login_calls(serve, root, caplog, where, how):
    """get_user/authenticate/notify_login raising: 451, the session goes on, not logged in.
    Never returning (user-manager timeout None): cut at callback_timeout, 421, closed."""
    trap = Trap(where, how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await evil_session(running)
        reply = await evil.command(f"USER {EVIL}")
        if where != "get_user":
            assert reply.startswith(b"331"), reply
            reply = await evil.command(f"PASS {PASSWORD}")
        assert trap.hit.is_set()
        if how == "raise":
            assert reply.startswith(b"451"), reply
            assert (await evil.command("PWD")).startswith(b"530")  # not logged in
            assert (await evil.command("NOOP")).startswith(b"200")
        else:
            assert reply.startswith(b"421"), reply
            assert await evil.closed(5)
    await still_serving(running)
    assert_logged_once(caplog, how)
    await closes_in_bounded_time(running)


@RAISE_OR_HANG
async def test_notify_logout(serve, root, caplog, how):
    """Regression: a raising notify_logout ended serve() with an ExceptionGroup, and one that
    never returned (user-manager timeout None) made close() wait forever. Now the session
    ends normally, the raise is logged, the hang is cut at SESSION_END_TIMEOUT."""
    trap = Trap("notify_logout", how)
    running = await serve(trap_server(root, trap, callback_timeout=None))
    assert running.server.user_manager.timeout is None
    async with bystanders(running):
        evil = await evil_session(running)
        assert (await evil.login(EVIL, PASSWORD)).startswith(b"230")
        assert (await evil.command("QUIT")).startswith(b"221")
        await trap.sprung()
        assert await evil.closed(5)
    await still_serving(running)
    await closes_in_bounded_time(running)
    assert_logged_once(caplog, how)


async def test_notify_logout_on_a_new_user(serve, root, caplog):
    """notify_logout raising when USER replaces a logged-in user: logged, USER goes on."""
    trap = Trap("notify_logout", "raise")
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await evil_session(running)
        assert (await evil.login(EVIL, PASSWORD)).startswith(b"230")
        assert (await evil.login(LOGIN, PASSWORD)).startswith(b"230")
        assert (await evil.command("PWD")).startswith(b"257")
    await still_serving(running)
    assert_logged_once(caplog, "raise")
    await closes_in_bounded_time(running)


# path IO ---------------------------------------------------------------------------------------
async def test_path_io_factory_raising(serve, root, caplog):
    """Regression: a raising path_io_factory ended serve() with an ExceptionGroup. Now that
    session alone is answered 421 and closed."""
    trap = Trap("path_io_factory", "raise")
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await Wire.connect(running.host, running.port, source=EVIL_HOST)
        assert (await evil.reply()).startswith(b"421")
        assert await evil.closed(5)
    await still_serving(running)
    assert_logged_once(caplog, "raise")
    await closes_in_bounded_time(running)


async def test_path_io_backend_that_never_returns(serve, root, caplog):
    """A backend (from path_io_factory) whose calls never return, path_timeout None: that
    session waits, the others do not; close() ends it with 421."""
    trap = Trap("confine", "hang")
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await evil_session(running)
        assert (await evil.login(EVIL, PASSWORD)).startswith(b"230")
        await evil.send("SIZE big.bin\r\n")
        await trap.sprung()
    await still_serving(running)
    await closes_in_bounded_time(running)
    assert (await replies_until_closed(evil))[-1].startswith(b"421")
    assert tracebacks(caplog) == []


@RAISE_OR_HANG
@pytest.mark.parametrize("where", ["_open", "read", "close"])
async def test_path_io_in_a_transfer(serve, root, caplog, where, how):
    """A backend's open/read/close raising in a download: 451, the session goes on. Never
    returning (path_timeout None): that session waits; close() ends it (a close that never
    returns is cut SESSION_END_TIMEOUT after the cancellation)."""
    (root / "trap.bin").write_bytes(random_bytes(4096, seed=1303))
    trap = Trap(where, how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await logged_in(running.host, running.port, kind="I")
        incoming = await data_connect(await evil.pasv())
        assert (await evil.command("RETR trap.bin")).startswith(b"150")
        await trap.sprung()
        if how == "raise":
            await receive_all(incoming)
            assert (await evil.reply()).startswith(b"451")
            assert (await evil.command("NOOP")).startswith(b"200")
    await still_serving(running)
    await closes_in_bounded_time(running, grace=SHORT if how == "hang" else None)
    if how == "hang":
        replies = await replies_until_closed(evil)
        assert replies[0].startswith(b"426"), replies  # the transfer, cancelled
        assert replies[-1].startswith(b"421"), replies
        cut = timeouts(caplog)
        assert len(cut) == (1 if where == "close" else 0)
        assert tracebacks(caplog) == []
    else:
        assert_logged_once(caplog, how)
    await incoming.aclose()


@RAISE_OR_HANG
async def test_path_io_in_a_command(serve, root, caplog, how):
    """A backend's stat raising under SIZE: 451, the session goes on; never returning: that
    session waits, close() ends it with 421."""
    (root / "trap.bin").write_bytes(b"x")
    trap = Trap("stat", how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await logged_in(running.host, running.port, kind="I")
        await evil.send("SIZE trap.bin\r\n")
        await trap.sprung()
        if how == "raise":
            assert (await evil.reply()).startswith(b"451")
            assert (await evil.command("NOOP")).startswith(b"200")
    await serving_then_closed(running, evil, caplog, how)


# the server's own extensions -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["raise", "raise-group", "hang"])
@pytest.mark.parametrize("line", ["TRAP", "SITE TRAP"], ids=["custom-command", "site-command"])
async def test_command_handlers(serve, root, caplog, line, how):
    """A custom command or SITE handler raising (an ExceptionGroup too): 451, the session
    goes on. Never returning: that session waits; close() ends it with 421."""
    trap = Trap("site" if line.startswith("SITE") else "command", how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await logged_in(running.host, running.port)
        await evil.send(f"{line}\r\n")
        await trap.sprung()
        if how != "hang":
            assert (await evil.reply()).startswith(b"451")
            assert (await evil.command("NOOP")).startswith(b"200")
    await serving_then_closed(running, evil, caplog, how)


@RAISE_OR_HANG
async def test_passive_address_callable(serve, root, caplog, how):
    """A passive_address callable raising, or (async) never returning: 451 to PASV after at
    most callback_timeout; the session goes on (EPSV does not call it)."""
    trap = Trap("passive_address", how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await evil_session(running)
        assert (await evil.login(EVIL, PASSWORD)).startswith(b"230")
        assert (await evil.command("PASV")).startswith(b"451")
        assert trap.hit.is_set()
        assert (await evil.command("EPSV")).startswith(b"229")
    await still_serving(running)
    assert_logged_once(caplog, how)
    await closes_in_bounded_time(running)


@RAISE_OR_HANG
async def test_greeting(serve, root, caplog, how):
    """An overridden greeting raising, or never returning: 421 (after at most
    callback_timeout) and that session closes; the slots it took are given back."""
    trap = Trap("greeting", how)
    running = await serve(trap_server(root, trap))
    async with bystanders(running):
        evil = await Wire.connect(running.host, running.port, source=EVIL_HOST)
        # The 220 the greeting queued before it failed may come first.
        replies = await replies_until_closed(evil)
        assert replies[-1].startswith(b"421"), replies
        with trio.fail_after(5):
            while EVIL_HOST in running.server.runtime.connections_per_ip:  # noqa: ASYNC110
                await trio.sleep(0.01)
    await still_serving(running)
    assert_logged_once(caplog, how)
    await closes_in_bounded_time(running)


async def test_event_consumers(serve, root, caplog):
    """A subscriber that never reads, and one whose consuming task raises and leaves, do
    not disturb sessions transferring meanwhile: publishing never waits."""
    running = await serve(trap_server(root, Trap("nothing", "raise")))
    never_read = running.server.events(buffer=1)
    crashed = trio.Event()

    async def crashing_consumer(task_status: trio.TaskStatus[None]) -> None:
        with running.server.events() as events:
            task_status.started()
            try:
                async for _ in events:
                    raise RuntimeError("consumer bug")
            except RuntimeError:
                crashed.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(crashing_consumer)
        async with bystanders(running):
            with trio.fail_after(5):
                await crashed.wait()
    assert never_read.dropped > 0
    await still_serving(running)
    await closes_in_bounded_time(running)
    assert tracebacks(caplog) == []


# cancellation and KeyboardInterrupt go through ---------------------------------------------------
class Interrupting(MemoryUserManager):
    async def get_user(self, login: str) -> Any:
        raise KeyboardInterrupt


class GroupRaising(Server):
    @command("BOOM")
    async def boom(self, connection: Any, rest: str) -> bool:
        raise BaseExceptionGroup("user code", [ValueError("x"), KeyboardInterrupt()])


def holds(exc: BaseException, kind: type[BaseException]) -> bool:
    """``exc`` is ``kind`` or a group holding one (at any depth)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(holds(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


@pytest.mark.parametrize("kind", ["user-manager", "group-from-command"])
async def test_keyboard_interrupt_is_never_swallowed(kind):
    """KeyboardInterrupt from user code (alone, or in a BaseExceptionGroup) leaves
    serve_connection and is not turned into a reply."""
    if kind == "user-manager":
        server = Server(Interrupting([User(LOGIN, PASSWORD)]), path_io_factory=MemoryPathIO)
        line = f"USER {LOGIN}"
    else:
        server = GroupRaising([User(LOGIN, PASSWORD)], path_io_factory=MemoryPathIO)
        line = "BOOM"
    clients: list[MemoryClient] = []

    async def session() -> None:
        async with trio.open_nursery() as nursery:
            client = await start_memory_session(nursery, server)
            clients.append(client)
            assert (await client.reply())[0] == "220"
            if kind != "user-manager":
                assert await client.code(f"USER {LOGIN}") == "331"
                assert await client.code(f"PASS {PASSWORD}") == "230"
            await client.send(line)
            await trio.sleep_forever()  # until the interrupt ends the nursery

    with pytest.raises(BaseException) as raised:  # noqa: PT011 (checked below)
        await session()
    assert holds(raised.value, KeyboardInterrupt), raised.value
    assert await clients[0].stream.receive_some(65536) == b""  # closed, no reply


# the bounds, on trio's clock -------------------------------------------------------------------
class SlowLogout(MemoryUserManager):
    async def notify_logout(self, user: User) -> None:
        await trio.sleep(VIRTUAL_HANG)


class HangingClose(MemoryPathIO):
    async def close(self, file: Any) -> None:
        await super().close(file)
        await trio.sleep(VIRTUAL_HANG)


class Holding(Server):
    @command("HOLD")
    async def hold(self, connection: Any, rest: str) -> bool:
        """A transfer holding an open file until cancelled (its close never returns)."""

        @worker
        async def job(server: Server, connection: Any) -> None:
            async with connection.path_io.open(PurePosixPath("/held"), mode="wb"):
                await trio.sleep_forever()

        connection.response("150", "holding")
        connection.start_transfer(job, self, connection)
        return True


async def test_session_end_is_bounded_with_every_timeout_none(nursery, autojump_clock, caplog):
    """notify_logout never returns, user-manager timeout and callback_timeout None: the
    session still ends SESSION_END_TIMEOUT (5 s) after QUIT, its slots given back."""
    server = Server(
        SlowLogout([User(LOGIN, PASSWORD)]),
        path_io_factory=MemoryPathIO,
        callback_timeout=None,
        maximum_connections=1,
    )
    client = await start_memory_session(nursery, server)
    assert (await client.reply())[0] == "220"
    assert await client.code(f"USER {LOGIN}") == "331"
    assert await client.code(f"PASS {PASSWORD}") == "230"
    start = trio.current_time()
    assert await client.code("QUIT") == "221"
    with trio.fail_after(60):  # virtual seconds: fails, rather than hangs, if unbounded
        while server.connections:  # noqa: ASYNC110 (virtual time)
            await trio.sleep(0.1)
    assert boundaries.SESSION_END_TIMEOUT == 5.0
    assert 5.0 <= trio.current_time() - start <= 5.0 + CLOSE_SLACK
    assert server.available_connections.value == 1
    assert len(timeouts(caplog)) == 1


async def test_cancelled_session_ends_in_bounded_time(nursery, autojump_clock, caplog):
    """A transfer whose file close never returns, in a session whose notify_logout never
    returns, every timeout None: once cancelled (what close() does to a session), the
    session ends within SESSION_END_TIMEOUT for each (the file's close, then notify_logout)
    + CLOSE_SLACK, its slots given back."""
    server = Holding(
        SlowLogout([User(LOGIN, PASSWORD)]),
        path_io_factory=HangingClose,
        callback_timeout=None,
        maximum_connections=1,
    )
    client_stream, server_stream = trio.testing.memory_stream_pair()
    ended = trio.Event()

    async def session(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await server.serve_connection(server_stream, peer=PEER, local=LOCAL)
        ended.set()

    scope = await nursery.start(session)
    client = MemoryClient(client_stream)
    assert (await client.reply())[0] == "220"
    assert await client.code(f"USER {LOGIN}") == "331"
    assert await client.code(f"PASS {PASSWORD}") == "230"
    assert await client.code("HOLD") == "150"
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    scope.cancel()
    with trio.fail_after(60):  # virtual seconds: fails, rather than hangs, if unbounded
        await ended.wait()
    took = trio.current_time() - start
    end = boundaries.SESSION_END_TIMEOUT
    assert 2 * end <= took <= 2 * end + CLOSE_SLACK
    assert server.connections == {}
    assert server.available_connections.value == 1
    assert len(timeouts(caplog)) == 2  # the file's close, then notify_logout
    assert tracebacks(caplog) == []


class HangingUsers(MemoryUserManager):
    async def get_user(self, login: str) -> Any:
        await trio.sleep(VIRTUAL_HANG)


@pytest.mark.parametrize(
    ("own", "callback", "expected"),
    [(2.0, 100.0, 2.0), (None, 3.0, 3.0)],
    ids=["own-timeout-wins", "callback-timeout-when-none"],
)
async def test_user_manager_deadline(nursery, autojump_clock, own, callback, expected):
    """A user-manager call is bounded by the manager's own timeout, else callback_timeout."""
    server = Server(
        HangingUsers([User(LOGIN, PASSWORD)], timeout=own),
        path_io_factory=MemoryPathIO,
        callback_timeout=callback,
    )
    client = await start_memory_session(nursery, server)
    assert (await client.reply())[0] == "220"
    start = trio.current_time()
    assert await client.code(f"USER {LOGIN}") == "421"
    assert trio.current_time() - start == pytest.approx(expected)
    assert await client.closed()


class EndingHook(Server):
    """A subclass whose session_ended hook (user code run while a session ends) raises or
    never returns before it calls the base class."""

    how = "hang"

    async def session_ended(self, connection: Any) -> None:
        if self.how == "hang":
            await trio.sleep(VIRTUAL_HANG)
        raise RuntimeError("bug in session_ended")


@RAISE_OR_HANG
async def test_session_ended_hook(nursery, autojump_clock, caplog, how):
    """An overridden session_ended raising or never returning: the session still ends
    (within SESSION_END_TIMEOUT + 1 s + CLOSE_SLACK) and its connection slot is given back, so
    the next client is greeted."""
    server = EndingHook(
        [User(LOGIN, PASSWORD)], path_io_factory=MemoryPathIO, maximum_connections=1
    )
    server.how = how
    client = await start_memory_session(nursery, server)
    assert (await client.reply())[0] == "220"
    start = trio.current_time()
    assert await client.code("QUIT") == "221"
    with trio.fail_after(60):  # virtual seconds
        while server.connections:  # noqa: ASYNC110 (virtual time)
            await trio.sleep(0.1)
    # The hook as a whole has a second more than each call in it (those are cut first).
    assert trio.current_time() - start <= boundaries.SESSION_END_TIMEOUT + 1 + CLOSE_SLACK
    assert server.available_connections.value == 1
    assert server.runtime.connections_per_ip == {}
    assert_logged_once(caplog, how)
    following = await start_memory_session(nursery, server)
    assert (await following.reply())[0] == "220"


async def test_cancellation_goes_through_a_bounded_call(nursery, autojump_clock):
    """Cancelling a session (what close() does) while it waits on a bounded user-code call
    (get_user within callback_timeout) ends it at once: the cancellation is not turned into
    a timeout or a reply."""
    server = Server(
        HangingUsers([User(LOGIN, PASSWORD)]), path_io_factory=MemoryPathIO, callback_timeout=100
    )
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.CancelScope() as scope:
        nursery.start_soon(_cancel_after, scope, 1.0)
        client = MemoryClient(client_stream)
        nursery.start_soon(_expect_user_then_eof, client)
        await server.serve_connection(server_stream, peer=PEER, local=LOCAL)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(1.0)


async def _cancel_after(scope: trio.CancelScope, seconds: float) -> None:
    await trio.sleep(seconds)
    scope.cancel()


async def _expect_user_then_eof(client: MemoryClient) -> None:
    assert (await client.reply())[0] == "220"
    await client.send(f"USER {LOGIN}")
    assert await client.stream.receive_some(65536) == b""  # closed without a reply


def test_only_the_builtin_memory_manager_runs_without_a_deadline(tmp_path: Path) -> None:
    """The built-in MemoryUserManager answers from memory: its calls need no deadline (no
    cancel scope per call). A subclass, or a method replaced on the instance, is user code
    and keeps ``callback_timeout``."""
    users = default_users(tmp_path)
    assert Server(users, callback_timeout=7).user_manager_timeout is None

    class Subclass(MemoryUserManager):
        pass

    assert Server(Subclass(users), callback_timeout=7).user_manager_timeout == 7
    patched = MemoryUserManager(users)

    async def hang(user: User) -> bool:
        await trio.sleep_forever()
        return True

    patched.notify_login = hang  # type: ignore[method-assign]
    assert Server(patched, callback_timeout=7).user_manager_timeout == 7
    assert Server(Subclass(users, timeout=2)).user_manager_timeout == 2
