"""trio_ftp: an FTP server library on trio, with aioftp's server API.

Switching from aioftp's server means changing the imports and ``asyncio.run`` to
``trio.run``: ``trio.run(server.run, "127.0.0.1", 2121)``, or inside a nursery
``address = await nursery.start(server.serve, "127.0.0.1", 0)``.

``__all__`` is the documented API. Names kept only so old imports keep working warn with a
:class:`DeprecationWarning` (see :func:`__getattr__`).
"""

import warnings as _warnings

from .commands import CommandSpec, command
from .conditions import ConnectionConditions, PathConditions, PathPermissions, worker
from .connection import Connection
from .errors import (
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
from .options import DIALLED
from .pathio import AbstractPathIO, MemoryPathIO, PathIO
from .server import Server
from .users import (
    AbstractUserManager,
    AvailableConnections,
    GetUserResponse,
    MemoryUserManager,
    Permission,
    User,
)
from .workers import WorkerContext, serve_workers

__version__ = "0.1.0"

__all__ = [
    "DIALLED",
    "AbstractPathIO",
    "AbstractUserManager",
    "AvailableConnections",
    "CommandSpec",
    "Connection",
    "ConnectionConditions",
    "DataConnectionError",
    "EventStream",
    "FTPError",
    "GetUserResponse",
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
    "WorkerContext",
    "command",
    "serve_workers",
    "site_command",
    "worker",
]

#: Old public names: where they live now, and why they are no longer public.
_DEPRECATED = {
    "AuthenticationFailed": (
        "trio_ftp.errors",
        "the library never raises it; raise ReplyError('530', ...) for a refused login",
    ),
    "GuardedPathIO": (
        "trio_ftp.pathio",
        "it is the session's internal wrapper around your backend, not a backend",
    ),
}


def __getattr__(name: str) -> object:
    """Old names still import, with a :class:`DeprecationWarning` saying why."""
    if name in _DEPRECATED:
        module, why = _DEPRECATED[name]
        _warnings.warn(
            f"trio_ftp.{name} is deprecated ({why}); import it from {module} if you must",
            DeprecationWarning,
            stacklevel=2,
        )
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'trio_ftp' has no attribute {name!r}")
