"""AUTH, PBSZ, PROT, CCC: FTP security extensions (RFC 2228, RFC 4217)."""

from __future__ import annotations

from ..base import ServerBase
from ..commands import command
from ..connection import Connection
from ..state import Protection

__all__ = ["TLSCommands", "tls_features"]

_LEVELS: dict[str, Protection] = {"C": "C", "P": "P"}


def tls_features(server: ServerBase) -> list[str]:
    """FEAT lines for TLS (RFC 4217 §6), only when TLS is configured."""
    tls = server.options.tls
    if tls.context is None:
        return []
    return ["PBSZ", "PROT"] if tls.implicit else ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"]


class TLSCommands(ServerBase):
    """Explicit TLS negotiation and the data-channel protection level."""

    def session_feature_lines(self, connection: Connection) -> list[str]:
        return [*super().session_feature_lines(connection), *tls_features(self)]

    @command(
        "AUTH",
        help="AUTH TLS: protect the control connection",
        needs_argument=True,
        before_login=True,
    )
    async def auth(self, connection: Connection, rest: str) -> bool:
        control = connection.control
        if control.tls_context is None:
            connection.response("502", "TLS is not configured on this server")
        elif connection.tls:
            connection.response("503", "the control connection is already protected")
        elif rest.strip().upper() not in ("TLS", "SSL", "TLS-C", "TLS-P"):
            connection.response("504", f"security mechanism {rest!r} not understood")
        else:
            connection.response("234", f"AUTH {rest.strip().upper()} ok, start the TLS handshake")
            await control.flush()
            await control.start_tls()  # RFC 4217 §4: data protection starts over
        return True

    @command(
        "PBSZ",
        help="PBSZ 0: protection buffer size (always 0 for TLS)",
        needs_argument=True,
        before_login=True,
    )
    async def pbsz(self, connection: Connection, rest: str) -> bool:
        if not connection.tls:
            connection.response("503", "bad sequence of commands (use AUTH TLS first)")
            return True
        connection.pbsz = 0
        # RFC 4217 §8: for TLS the only buffer size is 0, whatever the client proposed.
        connection.response("200", "PBSZ=0")
        return True

    @command(
        "PROT",
        help="PROT C|P: clear or private data connections",
        needs_argument=True,
        before_login=True,
    )
    async def prot(self, connection: Connection, rest: str) -> bool:
        level = rest.strip().upper()
        if not connection.tls:
            connection.response("503", "bad sequence of commands (use AUTH TLS first)")
        elif connection.pbsz is None and not self.options.tls.implicit:
            connection.response("503", "bad sequence of commands (use PBSZ 0 first)")
        elif level in ("S", "E"):
            connection.response("536", f"protection level {level} not supported with TLS")
        elif level not in _LEVELS:
            connection.response("504", f"unknown protection level {rest!r}")
        elif level == "C" and self.options.tls.data_required:
            connection.response("534", "clear data connections are refused by policy")
        else:
            connection.prot = _LEVELS[level]
            connection.response("200", f"protection level set to {level}")
        return True

    @command("CCC", help="CCC: clear the control connection (if allowed)", before_login=True)
    async def ccc(self, connection: Connection, rest: str) -> bool:
        if not connection.tls:
            connection.response("533", "the control connection is not protected")
        elif not self.options.tls.allow_ccc or self.options.tls.implicit:
            connection.response("534", "CCC refused by policy: the control connection stays TLS")
        else:
            connection.response("200", "CCC ok, the control connection is clear from now on")
            await connection.control.flush()
            await connection.control.stop_tls()
        return True
