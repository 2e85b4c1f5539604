"""SYST, FEAT, OPTS, NOOP, HELP: what the server is and can do (RFC 959, RFC 2389)."""

from __future__ import annotations

import codecs

from ..base import ServerBase
from ..commands import command
from ..connection import Connection
from ..listing import SUPPORTED_FACTS, mlst_feat_line
from .files import chosen_facts

__all__ = ["InfoCommands"]


class InfoCommands(ServerBase):
    """Introspection and keep-alive."""

    @command("SYST", help="SYST: system type", before_login=True)
    async def syst(self, connection: Connection, rest: str) -> bool:
        connection.response("215", self.options.protocol.system_type)
        return True

    @command("NOOP", help="NOOP: do nothing (keep-alive)", immediate=True, before_login=True)
    async def noop(self, connection: Connection, rest: str) -> bool:
        connection.response("200", "ok")
        return True

    def feature_lines(self, connection: Connection) -> list[str]:
        """FEAT lines (RFC 2389 §3.2), built from the command table, sorted."""
        lines = {
            spec.feat
            for verb, spec in self.command_specs.items()
            if spec.feat and verb.lower() in self.commands_mapping
        }
        if not self.options.data_channels.active_mode:
            lines.discard("EPRT")
        if not connection.path_io.capabilities().set_mtime:
            lines.discard("MFMT")  # the backend has no settable times (an object store)
        lines.update(self.session_feature_lines(connection))
        if "mlst" in self.commands_mapping:
            lines.add(mlst_feat_line(chosen_facts(connection)))
        lines.add("TVFS")
        if self.speaks_utf8:
            lines.add("UTF8")  # RFC 2640: only when paths really are UTF-8

        return sorted(lines)

    @property
    def speaks_utf8(self) -> bool:
        """The server's encoding is UTF-8: only then may FEAT announce ``UTF8``."""
        return codecs.lookup(self.options.protocol.encoding).name == "utf-8"

    @command("FEAT", help="FEAT: list extensions", before_login=True)
    async def feat(self, connection: Connection, rest: str) -> bool:
        connection.response("211", ["Features:", *self.feature_lines(connection), "End"])
        return True

    @command(
        "OPTS",
        help="OPTS <command> <options>: set a command's options",
        needs_argument=True,
        before_login=True,
    )
    async def opts(self, connection: Connection, rest: str) -> bool:
        """RFC 2389 §4: ``OPTS <verb> <options>``, dispatched to an ``opts_<verb>`` method."""
        name, _, value = rest.strip().partition(" ")
        handler = getattr(self, f"opts_{name.lower()}", None)
        if handler is None or not name.isalnum():
            connection.response("501", f"no options for {name!r}")
            return True
        await handler(connection, value.strip())
        return True

    async def opts_utf8(self, connection: Connection, value: str) -> None:
        """``OPTS UTF8 ON`` (draft-ietf-ftpext-utf-8-option): accepted only when the
        server's encoding is UTF-8, which is then always on; refused (``504``) otherwise,
        so a client never believes its UTF-8 names are understood when they are not."""
        if not self.speaks_utf8:
            connection.response(
                "504", f"UTF8 not available: this server speaks {self.options.protocol.encoding}"
            )
        elif value.upper() in ("ON", ""):
            connection.response("200", "UTF8 mode is always on")
        else:
            connection.response("504", "UTF8 can't be turned off")

    async def opts_mlst(self, connection: Connection, value: str) -> None:
        """``OPTS MLST fact;fact;``: choose the facts MLST/MLSD show (RFC 3659 §7.9)."""
        wanted = [f.lower() for f in value.split(";") if f]
        selected = tuple(f for f in SUPPORTED_FACTS if f in wanted)
        connection.mlst_facts = selected
        connection.response("200", "MLST OPTS " + "".join(f"{f};" for f in selected))

    @command("ALLO", help="ALLO <bytes>: reserve space (not needed here)")
    async def allo(self, connection: Connection, rest: str) -> bool:
        connection.response("202", "no storage allocation necessary")
        return True

    @command("MODE", help="MODE S: stream transfer mode (the only one)", needs_argument=True)
    async def mode(self, connection: Connection, rest: str) -> bool:
        if rest.strip().upper() == "S":
            connection.response("200", "mode set to S")
        else:
            connection.response("504", f"mode {rest!r} not supported (only S, stream)")
        return True

    @command("STRU", help="STRU F: file structure (the only one)", needs_argument=True)
    async def stru(self, connection: Connection, rest: str) -> bool:
        if rest.strip().upper() == "F":
            connection.response("200", "structure set to F")
        else:
            connection.response("504", f"structure {rest!r} not supported (only F, file)")
        return True

    @command("HELP", help="HELP [<command>]: this text", before_login=True)
    async def help(self, connection: Connection, rest: str) -> bool:
        verb, _, sub = rest.strip().partition(" ")
        verb = verb.upper()
        if verb:
            if verb.lower() not in self.commands_mapping:
                connection.response("502", f"unknown command {verb[:40]!r}")
            elif verb == "SITE" and sub.strip():
                # HELP SITE CHMOD: the SITE subcommand's own line, as SITE HELP CHMOD.
                await self.commands_mapping["site"](connection, f"HELP {sub.strip()}")
            else:
                spec = self.command_specs.get(verb)
                # A verb put straight into commands_mapping has no spec: a generic line.
                text = spec.help if spec is not None and spec.help else f"{verb}: no help text"
                connection.response("214", text)
            return True
        verbs = sorted(v.upper() for v in self.commands_mapping)
        rows = [" ".join(f"{v:<5}" for v in verbs[i : i + 8]) for i in range(0, len(verbs), 8)]
        connection.response("214", ["The following commands are recognized:", *rows, "help ok"])
        return True
