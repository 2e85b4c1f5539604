"""The public API: aioftp-shaped constructors, validation, decorators, extension points."""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath

import pytest
import trio
from memory_client import start_memory_session

import trio_ftp
from trio_ftp import (
    AvailableConnections,
    Connection,
    ConnectionConditions,
    MemoryPathIO,
    MemoryUserManager,
    PathIsNotAbsolute,
    PathPermissions,
    Permission,
    Server,
    User,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


SPEED_LIMITS = [
    "read_speed_limit",
    "write_speed_limit",
    "read_speed_limit_per_connection",
    "write_speed_limit_per_connection",
]


@pytest.mark.parametrize("name", SPEED_LIMITS)
@pytest.mark.parametrize("bad", [0, -5, "fast", True, float("inf")])
def test_bad_speed_limits_raise(name, bad):
    """Speed limits of 0, negative or non-numbers raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=name):
        Server(**{name: bad})
    with pytest.raises(ValueError, match=name):
        User(**{name: bad})


@pytest.mark.parametrize("name", SPEED_LIMITS)
def test_speed_limits_are_attributes(name):
    """A valid limit is kept as the attribute of the same name, on Server and User."""
    assert getattr(Server(**{name: 1000}), name) == 1000
    assert getattr(User(**{name: 2500.5}), name) == 2500.5


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("maximum_connections_per_ip", 0),
        ("maximum_login_attempts", -1),
        ("login_failure_delay", -1),
    ],
)
def test_bad_limit_arguments(name, bad):
    """Connection and login limits reject nonsense with a ValueError naming them."""
    with pytest.raises(ValueError, match=name):
        Server(**{name: bad})


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"block_size": 0}, "block_size"),
        ({"socket_timeout": -1}, "socket_timeout"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"path_timeout": "x"}, "path_timeout"),
        ({"maximum_connections": 0}, "maximum_connections"),
        ({"data_ports": [0]}, "data_ports"),
    ],
)
def test_bad_server_arguments(kwargs, word):
    """Nonsense arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=word):
        Server(**kwargs)


def test_home_path_must_be_absolute():
    """User(home_path=relative) is a ValueError (aioftp's PathIsNotAbsolute)."""
    with pytest.raises(PathIsNotAbsolute):
        User(home_path="relative/dir")
    with pytest.raises(ValueError, match="absolute"):
        User(home_path="relative/dir")


async def test_nearest_parent_permission():
    """get_permissions returns the permission of the nearest parent path."""
    user = User(
        permissions=[
            Permission("/", writable=False),
            Permission("/pub/incoming", readable=False, writable=True),
        ]
    )
    assert (await user.get_permissions("/pub")).path == PurePosixPath("/")
    deep = await user.get_permissions("/pub/incoming/a/b")
    assert (deep.readable, deep.writable) == (False, True)
    assert (await user.get_permissions("/pub/incomingX")).path == PurePosixPath("/")


def test_default_users_is_one_anonymous_read_write():
    """Server() with no users has one anonymous user with read/write on the current dir."""
    server = Server()
    assert isinstance(server.user_manager, MemoryUserManager)
    (user,) = server.user_manager.users
    assert user.login is None
    assert user.base_path == Path(".")
    assert user.permissions[0].writable


def test_available_connections_bounds():
    """AvailableConnections is a non-blocking counter that refuses to cross its bounds."""
    slots = AvailableConnections(2)
    slots.acquire()
    slots.acquire()
    assert slots.locked()
    with pytest.raises(ValueError, match="acquire"):
        slots.acquire()
    slots.release()
    slots.release()
    with pytest.raises(ValueError, match="release"):
        slots.release()
    unlimited = AvailableConnections()
    for _ in range(100):
        unlimited.acquire()
    assert not unlimited.locked()


async def test_connection_container(autojump_clock):
    """Connection: attribute and item access, del, and waiting for a key."""
    connection = Connection(a=1)
    assert connection.a == connection["a"] == 1
    connection.b = 2
    assert "b" in connection
    del connection.b
    assert "b" not in connection
    with pytest.raises(AttributeError):
        _ = connection.b

    async def later():
        await trio.sleep(5)
        connection.late = "here"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        with trio.fail_after(10):
            await connection.wait_for("late")
    assert connection.late == "here"
    with trio.move_on_after(1) as scope:
        await connection.wait_for("never")
    assert scope.cancelled_caught


async def test_connection_conditions_wait(autojump_clock):
    """ConnectionConditions(wait=True) waits up to wait_future_timeout, then fails its code."""
    replies = []

    @ConnectionConditions(("thing", "no thing"), wait=True, fail_code="425")
    async def handler(server, connection, rest):
        replies.append(("ok", connection.thing))
        return True

    connection = Connection(wait_future_timeout=3, response=lambda *a: replies.append(a))
    start = trio.current_time()
    await handler(None, connection, "")
    assert replies == [("425", "bad sequence of commands (no thing)")]
    assert trio.current_time() - start == pytest.approx(3)

    async def provide():
        await trio.sleep(1)
        connection.thing = 7

    replies.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(provide)
        await handler(None, connection, "")
    assert replies == [("ok", 7)]


async def test_path_permissions_checks_every_permission():
    """PathPermissions(readable, writable) refuses a user lacking either one."""
    calls = []

    class FakeServer:
        async def get_paths(self, connection, rest):
            return Path("/x"), PurePosixPath("/x")

        def publish(self, connection, kind, **fields):  # the refusal's audit record
            calls.append((kind, fields["path"]))

    @PathPermissions(PathPermissions.readable, PathPermissions.writable)
    async def handler(server, connection, rest):
        calls.append("handler")

    for readable, writable, allowed in [
        (True, True, True),
        (True, False, False),
        (False, True, False),
    ]:
        calls.clear()
        user = User(permissions=[Permission("/", readable=readable, writable=writable)])
        connection = Connection(user=user, response=lambda *a: calls.append(a))
        await handler(FakeServer(), connection, "x")
        refused = [("550", "permission denied"), ("permission_denied", "/x")]
        assert calls == (["handler"] if allowed else refused)


def test_path_permissions_needs_a_permission():
    """PathPermissions() with nothing to check is a programming error."""
    with pytest.raises(ValueError, match="at least one"):
        PathPermissions()


async def test_subclass_overrides_builtin_and_adds_command(nursery):
    """A subclass overrides SYST by method name and adds SITE with @command; a verb added
    either way, or straight into commands_mapping, needs a login (530 before it) unless
    registered with before_login=True."""

    class Custom(Server):
        async def syst(self, connection, rest):
            connection.response("215", "custom system")
            return True

        @trio_ftp.command("SITE", help="SITE: custom")
        async def site(self, connection, rest):
            connection.response("200", f"site {rest}")
            return True

    server = Custom([User("u", "p")], path_io_factory=MemoryPathIO)

    async def motd(connection, rest):
        connection.response("200", "message of the day")
        return True

    server.commands_mapping["motd"] = motd  # aioftp's way still works
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.command("SYST") == ("215", ["custom system"])
    assert await client.code("SITE hello") == "530"
    assert await client.code("MOTD") == "530"
    assert await client.code("USER u") == "331"
    assert await client.code("PASS p") == "230"
    assert await client.command("SITE hello") == ("200", ["site hello"])
    assert await client.command("MOTD") == ("200", ["message of the day"])


async def test_custom_site_example(nursery):
    """examples/custom_site_command.py answers SITE WHOAMI after login."""
    spec = importlib.util.spec_from_file_location(
        "custom_site", EXAMPLES / "custom_site_command.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.SiteServer([User("alice", "pw")], path_io_factory=MemoryPathIO)
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.code("SITE WHOAMI") == "530"
    await client.command("USER alice")
    await client.command("PASS pw")
    assert await client.command("SITE WHOAMI") == ("200", ["alice"])
    assert await client.code("SITE NOPE") == "501"
