"""trio_ftp: an FTP server library on trio, with aioftp's server API.

Switching from aioftp's server means changing the imports and ``asyncio.run`` to
``trio.run``: ``trio.run(server.run, "127.0.0.1", 2121)``, or inside a nursery
``address = await nursery.start(server.serve, "127.0.0.1", 0)``.
"""

from .commands import CommandSpec, command
from .conditions import ConnectionConditions, PathConditions, PathPermissions, worker
from .connection import Connection
from .errors import (
    AuthenticationFailed,
    DataConnectionError,
    FTPError,
    NoAvailablePort,
    PathIOError,
    PathIsNotAbsolute,
    PermissionDenied,
    ProtocolError,
    ReplyError,
    TransferAborted,
)
from .events import EventStream, ServerEvent
from .handlers.site import site_command
from .pathio import AbstractPathIO, GuardedPathIO, MemoryPathIO, PathIO
from .server import Server
from .users import (
    AbstractUserManager,
    AvailableConnections,
    GetUserResponse,
    MemoryUserManager,
    Permission,
    User,
)

__version__ = "0.1.0"

__all__ = [
    "AbstractPathIO",
    "AbstractUserManager",
    "AuthenticationFailed",
    "AvailableConnections",
    "CommandSpec",
    "Connection",
    "ConnectionConditions",
    "DataConnectionError",
    "EventStream",
    "FTPError",
    "GetUserResponse",
    "GuardedPathIO",
    "MemoryPathIO",
    "MemoryUserManager",
    "NoAvailablePort",
    "PathConditions",
    "PathIO",
    "PathIOError",
    "PathIsNotAbsolute",
    "PathPermissions",
    "Permission",
    "PermissionDenied",
    "ProtocolError",
    "ReplyError",
    "Server",
    "ServerEvent",
    "TransferAborted",
    "User",
    "command",
    "site_command",
    "worker",
]
