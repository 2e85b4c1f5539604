"""PWD, CWD, CDUP, MKD, RMD: the directory tree (RFC 959 §4.1.1, §4.1.3)."""

from __future__ import annotations

from ..base import ServerBase
from ..codec import quote_path
from ..commands import command
from ..conditions import ConnectionConditions, PathConditions, PathPermissions
from ..connection import Connection
from ..paths import ROOT

__all__ = ["NavigationCommands"]

_login = ConnectionConditions(ConnectionConditions.login_required)


class NavigationCommands(ServerBase):
    """Moving around and shaping the directory tree."""

    @command("PWD", "XPWD", help="PWD: print the working directory")
    @_login
    async def pwd(self, connection: Connection, rest: str) -> bool:
        path = str(connection.current_directory)
        connection.response("257", f"{quote_path(path)} is the current directory")
        return True

    @command("CWD", "XCWD", help="CWD <dir>: change the working directory", needs_argument=True)
    @_login
    @PathConditions(PathConditions.path_must_exists, PathConditions.path_must_be_dir)
    @PathPermissions(PathPermissions.readable)
    async def cwd(self, connection: Connection, rest: str) -> bool:
        _, virtual = await self.get_paths(connection, rest)
        connection.current_directory = virtual
        connection.response("250", f"working directory is now {quote_path(str(virtual))}")
        return True

    @command("CDUP", "XCUP", help="CDUP: go to the parent directory")
    async def cdup(self, connection: Connection, rest: str) -> bool:
        return await self.cwd(connection, "..")

    @command("MKD", "XMKD", help="MKD <dir>: make a directory", needs_argument=True)
    @_login
    @PathConditions(PathConditions.path_must_not_exists)
    @PathPermissions(PathPermissions.writable)
    async def mkd(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        await connection.path_io.mkdir(real)
        self.publish(connection, "mkdir", path=str(virtual))
        connection.response("257", f"{quote_path(str(virtual))} created")
        return True

    @command("RMD", "XRMD", help="RMD <dir>: remove an empty directory", needs_argument=True)
    @_login
    @PathConditions(PathConditions.path_must_exists, PathConditions.path_must_be_dir)
    @PathPermissions(PathPermissions.writable)
    async def rmd(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        if virtual == ROOT:
            connection.response("550", "can't remove the root directory")
            return True
        await connection.path_io.rmdir(real)
        self.publish(connection, "rmdir", path=str(virtual))
        connection.response("250", "directory removed")
        return True
