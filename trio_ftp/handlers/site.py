"""SITE: site-specific subcommands (RFC 959 §4.1.3), with SITE HELP and SITE CHMOD built in.

Subcommands are registered like commands: a ``Server`` subclass method decorated with
:func:`site_command` (``async def site_<name>(self, connection, rest) -> bool``; ``rest`` is
what follows the subcommand's name), or at run time, aioftp-style, with
``server.site_commands_mapping["NAME"] = handler`` (``handler(connection, rest)``); that
table is built from the class hierarchy on first use, per server instance.

Every subcommand but ``SITE HELP`` needs a logged-in user unless registered with
``login_required=False``; a handler registered at run time always needs one.
"""

from __future__ import annotations

import functools
import re
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..base import ServerBase
from ..commands import command
from ..conditions import ConnectionConditions, PathConditions, PathPermissions
from ..connection import Connection
from ..errors import PathIOError

__all__ = ["SiteCommandSpec", "SiteCommands", "collect_site_commands", "site_command"]

F = TypeVar("F", bound=Callable[..., Any])
SiteHandler = Callable[[Connection, str], Awaitable[Any]]

_SPEC_ATTRIBUTE = "__trio_ftp_site_commands__"
_OCTAL_MODE = re.compile(r"[0-7]{1,4}")
#: setuid, setgid, sticky: refused unless ``permit_special_mode_bits`` (vsftpd's chmod mask).
SPECIAL_MODE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX

_login = ConnectionConditions(ConnectionConditions.login_required)


@dataclass(frozen=True)
class SiteCommandSpec:
    """What the server knows about one SITE subcommand besides its handler.

    Attributes:
        name: upper-case name, e.g. ``"CHMOD"``.
        help: the SITE HELP line, e.g. ``"SITE CHMOD <mode> <path>: ..."``.
        login_required: refuse it (``530``) before login.
    """

    name: str
    help: str = ""
    login_required: bool = True


def site_command(*names: str, help: str = "", login_required: bool = True) -> Callable[[F], F]:
    """Register the decorated ``Server`` method as the handler of ``SITE <name>``.

    Put it on top of the decorator stack. The method has a command handler's signature,
    ``async def site_x(self, connection, rest) -> bool``, ``rest`` being the subcommand's
    arguments.
    """

    def decorate(method: F) -> F:
        specs = [SiteCommandSpec(name.upper(), help, login_required) for name in names]
        setattr(method, _SPEC_ATTRIBUTE, (*getattr(method, _SPEC_ATTRIBUTE, ()), *specs))
        return method

    return decorate


def collect_site_commands(cls: type) -> dict[str, tuple[str, SiteCommandSpec]]:
    """Map each SITE subcommand to ``(method name, spec)``, subclasses overriding bases."""
    table: dict[str, tuple[str, SiteCommandSpec]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            for spec in getattr(value, _SPEC_ATTRIBUTE, ()):
                table[spec.name] = (name, spec)
    return table


class SiteCommands(ServerBase):
    """``SITE`` and its subcommands."""

    @functools.cached_property
    def site_commands_mapping(self) -> dict[str, SiteHandler]:
        """Subcommand name -> handler (bound method); add or replace entries to change SITE.

        Built on first use from the methods registered with :func:`site_command`.
        """
        table = collect_site_commands(type(self))
        return {name: getattr(self, method) for name, (method, _) in table.items()}

    def site_lookup(self, name: str) -> tuple[SiteHandler, SiteCommandSpec] | None:
        """The handler of ``SITE name`` (case-insensitive) and its spec, or None.

        A handler without :func:`site_command` metadata (registered at run time) gets a
        spec with its docstring's first line as help, requiring login.
        """
        key = name.upper()
        for registered, handler in self.site_commands_mapping.items():
            if registered.upper() == key:
                specs: tuple[SiteCommandSpec, ...] = getattr(handler, _SPEC_ATTRIBUTE, ())
                for spec in specs:
                    if spec.name == key:
                        return handler, spec
                doc = (getattr(handler, "__doc__", None) or "").strip()
                text = specs[0].help if specs else doc.splitlines()[0] if doc else ""
                login_required = specs[0].login_required if specs else True
                return handler, SiteCommandSpec(key, text or f"SITE {key}", login_required)
        return None

    @command(
        "SITE",
        help="SITE <command> [<arguments>]: site-specific commands (SITE HELP lists them)",
        needs_argument=True,
        before_login=True,  # each subcommand decides (site_command's login_required)
    )
    async def site(self, connection: Connection, rest: str) -> bool:
        name, _, arguments = rest.lstrip(" ").partition(" ")
        found = self.site_lookup(name)
        if found is None:
            connection.response("504", f"unknown SITE command {name[:40]!r} (try SITE HELP)")
            return True
        handler, spec = found
        if spec.login_required and not connection.logged:
            connection.response("530", "not logged in")
            return True
        return await handler(connection, arguments.lstrip(" ")) is not False

    @site_command(
        "HELP",
        help="SITE HELP [<command>]: the SITE commands, or one's syntax",
        login_required=False,
    )
    async def site_help(self, connection: Connection, rest: str) -> bool:
        wanted = rest.strip()
        if wanted:
            found = self.site_lookup(wanted)
            if found is None:
                connection.response("504", f"unknown SITE command {wanted[:40]!r}")
            else:
                connection.response("214", found[1].help)
            return True
        names = sorted({name.upper() for name in self.site_commands_mapping})
        lines = [found[1].help for name in names if (found := self.site_lookup(name))]
        connection.response(
            "214", ["The following SITE commands are recognized:", *lines, "help ok"]
        )
        return True

    @site_command("CHMOD", help="SITE CHMOD <mode> <path>: set permission bits (octal, e.g. 0644)")
    @_login
    async def site_chmod(self, connection: Connection, rest: str) -> bool:
        mode, _, path = rest.partition(" ")
        path = path.lstrip(" ")
        if not _OCTAL_MODE.fullmatch(mode) or not path:
            connection.response("501", "syntax: SITE CHMOD <octal mode, 1 to 4 digits> <path>")
            return True
        bits = int(mode, 8)
        if bits & SPECIAL_MODE_BITS and not self.options.files.permit_special_mode_bits:
            connection.response(
                "550", "setuid, setgid and sticky bits are not permitted on this server"
            )
            return True
        return await self._chmod(connection, path, bits)

    @PathConditions(PathConditions.path_must_exists)
    @PathPermissions(PathPermissions.writable)
    async def _chmod(self, connection: Connection, path: str, mode: int) -> bool:
        real, virtual = await self.get_paths(connection, path)
        try:
            await connection.path_io.chmod(real, mode)
        except PathIOError as exc:
            if not isinstance(exc.reason, NotImplementedError):
                raise
            connection.response("502", "SITE CHMOD is not supported by this backend")
            return True
        self.publish(connection, "chmod", path=str(virtual), mode=mode)
        connection.response("200", f"mode set to {mode:04o}")
        return True
