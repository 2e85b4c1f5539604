"""DELE, RNFR, RNTO, SIZE, MDTM, MLST: single files (RFC 959 §4.1.3, RFC 3659)."""

from __future__ import annotations

import os
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, Any

from ..base import ServerBase
from ..commands import command
from ..conditions import ConnectionConditions, PathConditions, PathPermissions
from ..connection import Connection
from ..errors import PathIOError
from ..listing import DEFAULT_FACTS, mlsx_line, mlsx_time, parse_mlsx_time, perm_fact
from ..paths import ROOT

if TYPE_CHECKING:
    from pathlib import PurePosixPath


__all__ = ["FileCommands", "chosen_facts", "facts_line"]

_login = ConnectionConditions(ConnectionConditions.login_required)
_exists = PathConditions.path_must_exists


def chosen_facts(connection: Connection) -> tuple[str, ...]:
    """The MLST/MLSD facts this session shows: ``OPTS MLST``'s choice, else the default."""
    chosen = connection.mlst_facts
    return DEFAULT_FACTS if chosen is None else chosen


async def facts_line(
    server: ServerBase,
    connection: Connection,
    real: Any,
    virtual: PurePosixPath,
    name: str,
    *,
    type: str | None = None,
    stat: os.stat_result | None = None,
) -> str:
    """The RFC 3659 facts line of one path, with this user's ``perm`` fact (``stat``: the
    path's stat result when the caller already has it, as listings do)."""
    if stat is None:
        stat = await connection.path_io.stat(real)
    permission = await connection.logged_in_user.get_permissions(virtual)
    appendable = connection.path_io.capabilities().write_at_offset
    perm = perm_fact(S_ISDIR(stat.st_mode), permission.readable, permission.writable, appendable)
    facts = chosen_facts(connection)
    return mlsx_line(name, stat, perm=perm, facts=facts, type=type)


class FileCommands(ServerBase):
    """Operations on one file."""

    @command("DELE", help="DELE <file>: delete a file", needs_argument=True)
    @_login
    @PathConditions(_exists, PathConditions.path_must_be_file)
    @PathPermissions(PathPermissions.writable)
    async def dele(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        await connection.path_io.unlink(real)
        self.publish(connection, "delete", path=str(virtual))
        connection.response("250", "file deleted")
        return True

    @command("RNFR", help="RNFR <path>: rename from (then RNTO)", needs_argument=True)
    @_login
    @PathConditions(_exists)
    @PathPermissions(PathPermissions.writable)
    async def rnfr(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        if virtual == ROOT:
            connection.response("550", "can't rename the root directory")
            return True
        if not connection.path_io.capabilities().rename_directories and await self._has_children(
            connection, real
        ):
            connection.response(
                "550", "renaming a directory that is not empty is not supported by this storage"
            )
            return True
        connection.rename_from = virtual
        connection.response("350", "ready for RNTO")
        return True

    @staticmethod
    async def _has_children(connection: Connection, real: Any) -> bool:
        """Whether ``real`` is a directory with at least one child."""
        if not await connection.path_io.is_dir(real):
            return False
        async for _ in connection.path_io.list(real):
            return True
        return False

    @command("RNTO", help="RNTO <path>: rename to (after RNFR)", needs_argument=True)
    @_login
    @ConnectionConditions(ConnectionConditions.rename_from_required)
    @PathPermissions(PathPermissions.writable)
    async def rnto(self, connection: Connection, rest: str) -> bool:
        source_virtual = connection.rename_from
        if source_virtual is None:  # the condition above answered 503 already
            return True
        source, _ = await self.get_paths(connection, source_virtual)
        destination, target = await self.get_paths(connection, rest)
        await connection.path_io.rename(source, destination)
        self.publish(connection, "rename", path=str(source_virtual), target=str(target))
        connection.response("250", "renamed")
        return True

    @command("SIZE", help="SIZE <file>: size in bytes", feat="SIZE", needs_argument=True)
    @_login
    @PathConditions(_exists, PathConditions.path_must_be_file)
    @PathPermissions(PathPermissions.readable)
    async def size(self, connection: Connection, rest: str) -> bool:
        if connection.transfer_type == "A":
            # RFC 3659 §4: the size would depend on the line-ending conversion.
            connection.response("550", "SIZE not allowed in ASCII mode (use TYPE I)")
            return True
        real, _ = await self.get_paths(connection, rest)
        stat = await connection.path_io.stat(real)
        if not S_ISREG(stat.st_mode):  # a FIFO or device, whatever the backend's is_file said
            connection.response("550", "path is not a file")
            return True
        connection.response("213", str(stat.st_size))
        return True

    @command("MDTM", help="MDTM <file>: modification time", feat="MDTM", needs_argument=True)
    @_login
    @PathConditions(_exists)
    @PathPermissions(PathPermissions.readable)
    async def mdtm(self, connection: Connection, rest: str) -> bool:
        real, _ = await self.get_paths(connection, rest)
        stat = await connection.path_io.stat(real)
        connection.response("213", mlsx_time(stat.st_mtime))
        return True

    @command(
        "MFMT",
        help="MFMT <YYYYMMDDHHMMSS> <file>: set the modification time",
        feat="MFMT",
        needs_argument=True,
    )
    @_login
    async def mfmt(self, connection: Connection, rest: str) -> bool:
        """draft-somers-ftp-mfxx: ``213 Modify=<time>; <path>`` once the time is set."""
        stamp, _, path = rest.partition(" ")
        try:
            mtime = parse_mlsx_time(stamp)
        except ValueError:
            connection.response("501", "syntax: MFMT YYYYMMDDHHMMSS <path>")
            return True
        if not path:
            connection.response("501", "syntax: MFMT YYYYMMDDHHMMSS <path>")
            return True
        return await self._set_mtime(connection, path, mtime, stamp)

    @PathConditions(_exists)
    @PathPermissions(PathPermissions.writable)
    async def _set_mtime(self, connection: Connection, rest: str, mtime: float, stamp: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        try:
            await connection.path_io.set_mtime(real, mtime)
        except PathIOError as exc:
            if isinstance(exc.reason, NotImplementedError):
                connection.response("502", "MFMT is not supported by this backend")
                return True
            raise
        self.publish(connection, "set_mtime", path=str(virtual), reason=f"Modify={stamp}")
        connection.response("213", f"Modify={stamp}; {rest}")
        return True

    @command("MLST", help="MLST [<path>]: facts about one path")
    @_login
    @PathConditions(_exists)
    @PathPermissions(PathPermissions.readable)
    async def mlst(self, connection: Connection, rest: str) -> bool:
        real, virtual = await self.get_paths(connection, rest)
        line = await facts_line(self, connection, real, virtual, str(virtual))
        # RFC 3659 §7.2: the facts line is indented by one space inside a 250 reply.
        connection.response("250", [f"listing {virtual}", " " + line, "end"])
        return True
