"""The narrow interfaces between a session, its server and its handlers.

A :class:`~trio_ftp.session.Session` knows its server only as a :class:`SessionHost` (what a
session needs: configuration, the command table, limits, the path-IO factory, the events it
reports), and handlers reach their session only through :class:`SessionControl` (the control
connection and the transfer) and the connection's data channels. So ``session.py`` does not
import ``base.py``, and a handler cannot reach into a session's private state.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from .commands import CommandSpec
    from .connection import Connection
    from .datachannel import PortPool
    from .events import EventKind
    from .metrics import Metrics
    from .options import ServerOptions
    from .pathio import AbstractPathIO
    from .throttle import ThrottleRegistry

__all__ = ["Handler", "SessionControl", "SessionHost"]

#: A command handler: ``await handler(connection, argument)``; ``False`` ends the session.
Handler = Callable[["Connection", str], Awaitable[Any]]


class SessionHost(Protocol):
    """What a session needs from its server (``ServerBase`` is the one implementation):
    the configuration (read-only groups), the shared runtime pieces it uses, the command
    table, and the calls it makes at its start, around transfers and at its end."""

    @property
    def options(self) -> ServerOptions: ...
    @property
    def commands_mapping(self) -> Mapping[str, Handler]: ...
    @property
    def command_specs(self) -> Mapping[str, CommandSpec]: ...
    @property
    def throttles(self) -> ThrottleRegistry: ...
    @property
    def data_ports(self) -> PortPool: ...
    @property
    def connections(self) -> dict[int, Connection]: ...
    @property
    def closing(self) -> bool: ...
    @property
    def metrics(self) -> Metrics | None: ...

    def new_path_io(self, connection: Connection) -> AbstractPathIO[Any]: ...
    async def greet(self, connection: Connection) -> bool: ...
    async def session_ended(self, connection: Connection) -> None: ...
    async def release_slots(self, connection: Connection) -> None: ...
    def publish(self, connection: Connection, kind: EventKind, **fields: Any) -> None: ...
    def transfer_began(self) -> None: ...
    def transfer_done(self) -> None: ...
    async def get_paths(
        self, connection: Connection, path: str | PurePosixPath
    ) -> tuple[Any, PurePosixPath]: ...


class SessionControl(Protocol):
    """What a handler may ask of its session: the control connection and the transfer."""

    @property
    def stream(self) -> trio.abc.Stream:
        """The control connection's stream now in use (TLS after ``AUTH TLS``)."""
        ...

    @property
    def tls_context(self) -> _ssl.SSLContext | None:
        """The context that protects (or may protect) this session's connections."""
        ...

    @property
    def transfer_running(self) -> bool: ...

    @property
    def transfer_aborted(self) -> bool:
        """True while the running transfer is being cancelled by the client's ``ABOR``."""
        ...

    def respond(self, code: str, text: str | list[str] = "") -> None:
        """Queue a reply (``connection.response``)."""

    async def flush(self) -> None:
        """Send the queued replies now (before a TLS handshake, for instance)."""

    async def start_tls(self) -> None: ...
    async def stop_tls(self) -> None: ...

    def start_transfer(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as the session's one abortable transfer."""

    def cancel_transfer(self) -> None:
        """Cancel the running transfer, if any, without waiting."""

    async def abort_transfer(self) -> bool:
        """Cancel the running transfer and wait for its end; False if none ran."""
        ...

    def cancel(self) -> None:
        """End the session from any task (its teardown still runs)."""
