"""``Server``: the server state and lifecycle (:mod:`trio_ftp.base`) plus every built-in command."""

from __future__ import annotations

from .base import ServerBase
from .conditions import ConnectionConditions, PathConditions, PathPermissions, worker
from .connection import Connection
from .handlers import (
    AuthCommands,
    DataChannelCommands,
    FileCommands,
    HashCommands,
    InfoCommands,
    NavigationCommands,
    SiteCommands,
    TLSCommands,
    TransferCommands,
)
from .users import AbstractUserManager, AvailableConnections, MemoryUserManager, Permission, User

#: ``Server`` and, as in ``aioftp.server``, the names a subclass's handlers use
#: (``trio_ftp.server.worker`` is ``aioftp.server.worker``).
__all__ = [
    "AbstractUserManager",
    "AvailableConnections",
    "Connection",
    "ConnectionConditions",
    "MemoryUserManager",
    "PathConditions",
    "PathPermissions",
    "Permission",
    "Server",
    "User",
    "worker",
]


class Server(
    AuthCommands,
    NavigationCommands,
    FileCommands,
    TransferCommands,
    DataChannelCommands,
    TLSCommands,
    SiteCommands,
    HashCommands,
    InfoCommands,
    ServerBase,
):
    """An FTP server with aioftp's constructor (see :class:`trio_ftp.base.ServerBase`).

    Subclass it to add or override commands: a method registered with
    :func:`trio_ftp.command` (or an entry in ``self.commands_mapping``) handles its verb.
    """
