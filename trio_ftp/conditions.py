"""aioftp's handler decorators, with the same names and meaning, evaluated the trio way.

Order of evaluation is the order of the stack, top first, as in aioftp: put
``ConnectionConditions`` above ``PathConditions`` above ``PathPermissions`` above the handler.
A failed check queues its reply and returns ``True`` (the session goes on) without calling the
handler. Unlike aioftp, *every* permission listed in ``PathPermissions`` is checked.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .connection import Connection
from .validation import as_seconds

if TYPE_CHECKING:
    from .base import ServerBase as Server

__all__ = ["ConnectionConditions", "PathConditions", "PathPermissions", "worker"]

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


class ConnectionConditions:
    """Require connection keys to be set (or wait for them, bounded).

    Args:
        *fields: ``(key, reason)`` pairs; use the class attributes below.
        wait: wait up to ``connection.wait_future_timeout`` seconds for the keys.
        fail_code: the reply code when a key is missing.
        fail_info: the reply text; default ``"bad sequence of commands (<reason>)"``.
    """

    user_required = ("user", "no user (use USER firstly)")
    login_required = ("logged", "not logged in")
    data_channel_ready = (
        "data_channel",
        "no data channel set up (use PASV, EPSV, PORT or EPRT first)",
    )
    #: aioftp's name for :attr:`data_channel_ready` (PORT/EPRT count too, not only PASV).
    passive_server_started = data_channel_ready
    data_connection_made = ("data_connection", "no data connection made")
    rename_from_required = ("rename_from", "no filename (use RNFR firstly)")

    def __init__(
        self,
        *fields: tuple[str, str],
        wait: bool = False,
        fail_code: str = "503",
        fail_info: str | None = None,
    ) -> None:
        self.fields = fields
        self.wait = wait
        self.fail_code = fail_code
        self.fail_info = fail_info

    def __call__(self, f: H) -> H:
        @functools.wraps(f)
        async def wrapper(server: Server, connection: Connection, *args: Any, **kw: Any) -> Any:
            names = [name for name, _ in self.fields]
            if self.wait and not all(name in connection for name in names):
                with trio.move_on_after(as_seconds(connection.wait_future_timeout)):
                    await connection.wait_for(*names)
            if not all(name in connection for name in names):
                for name, reason in self.fields:
                    if name not in connection:
                        code = self.fail_code
                        if name == "logged" and code == "503":
                            code = "530"  # RFC 959: not logged in
                        info = self.fail_info or f"bad sequence of commands ({reason})"
                        connection.response(code, info)
                        return True
            return await f(server, connection, *args, **kw)

        return wrapper  # type: ignore[return-value]


class PathConditions:
    """Require the path argument to exist, not exist, be a directory or be a file.

    A failed condition answers ``550`` with the condition's reason.
    """

    path_must_exists = ("exists", False, "path does not exist")
    path_must_not_exists = ("exists", True, "path already exists")
    path_must_be_dir = ("is_dir", False, "path is not a directory")
    path_must_be_file = ("is_file", False, "path is not a file")

    def __init__(self, *conditions: tuple[str, bool, str]) -> None:
        self.conditions = conditions

    def __call__(self, f: H) -> H:
        @functools.wraps(f)
        async def wrapper(
            server: Server, connection: Connection, rest: str | PurePosixPath, *a: Any, **kw: Any
        ) -> Any:
            real_path, _ = await server.get_paths(connection, rest)
            for name, fail, message in self.conditions:
                check = getattr(connection.path_io, name)
                if await check(real_path) == fail:
                    connection.response("550", message)
                    return True
            return await f(server, connection, rest, *a, **kw)

        return wrapper  # type: ignore[return-value]


class PathPermissions:
    """Require the user's permission for the path: ``readable``, ``writable`` or both.

    Every listed permission is checked; a missing one answers ``550 permission denied``
    (``fail_code`` changes the code for commands whose RFC 959 §5.4 replies have no 550,
    e.g. ``553`` for STOR).
    """

    readable = "readable"
    writable = "writable"

    def __init__(self, *permissions: str, fail_code: str = "550") -> None:
        self.fail_code = fail_code
        if not permissions:
            raise ValueError("PathPermissions needs at least one of 'readable', 'writable'")
        for permission in permissions:
            if permission not in (self.readable, self.writable):
                raise ValueError(f"unknown permission {permission!r}")
        self.permissions = permissions

    def __call__(self, f: H) -> H:
        @functools.wraps(f)
        async def wrapper(
            server: Server, connection: Connection, rest: str | PurePosixPath, *a: Any, **kw: Any
        ) -> Any:
            user = connection.user
            if user is None:  # used without the login condition: nobody to ask
                connection.response("530", "not logged in")
                return True
            _, virtual_path = await server.get_paths(connection, rest)
            permission = await user.get_permissions(virtual_path)
            if not all(getattr(permission, name) for name in self.permissions):
                connection.response(self.fail_code, "permission denied")
                server.publish(
                    connection,
                    "permission_denied",
                    path=str(virtual_path),
                    reason=connection.state.command or None,
                )
                return True
            return await f(server, connection, rest, *a, **kw)

        return wrapper  # type: ignore[return-value]


def worker(f: H) -> H:
    """Make a transfer abortable: its cancellation answers ``426``, then ``226`` when the
    client asked for it (``ABOR``, RFC 959 §4.1.3); the server's ``close()`` or the
    session's end gets the ``426`` alone.

    Start the decorated function with ``connection.start_transfer(...)`` so it runs in the
    session's nursery under the session's transfer cancel scope; the session keeps reading
    commands (ABOR, STAT, NOOP, QUIT) while it runs.

    Cancellation: the ``Cancelled`` exception is re-raised after the replies are queued.
    """

    @functools.wraps(f)
    async def wrapper(server: Server, connection: Connection, *args: Any, **kw: Any) -> Any:
        connection.worker_active = True
        try:
            return await f(server, connection, *args, **kw)
        except trio.Cancelled:
            connection.response("426", "transfer aborted")
            if connection.control.transfer_aborted:
                connection.response("226", "abort successful")
            raise
        finally:
            connection.worker_active = False

    return wrapper  # type: ignore[return-value]
