"""``Server``: the server state and lifecycle (:mod:`trio_ftp.base`) plus every built-in command."""

from __future__ import annotations

from .base import ServerBase
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

__all__ = ["Server"]


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
