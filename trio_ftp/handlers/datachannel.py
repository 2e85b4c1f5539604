"""PASV and EPSV: opening passive data channels (RFC 959 §4.1.2, RFC 2428 §3)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..base import ServerBase
from ..commands import command
from ..conditions import ConnectionConditions
from ..connection import Connection
from ..errors import NoAvailablePort

if TYPE_CHECKING:
    from ..datachannel import PassiveListener

__all__ = ["DataChannelCommands", "format_pasv_reply"]

_login = ConnectionConditions(ConnectionConditions.login_required)


def format_pasv_reply(host: str, port: int) -> str:
    """The ``227`` text: ``Entering Passive Mode (h1,h2,h3,h4,p1,p2).`` on one line."""
    numbers = [*host.split("."), str(port >> 8), str(port & 0xFF)]
    return f"Entering Passive Mode ({','.join(numbers)})."


def _ipv4_of(host: str) -> str | None:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return None if mapped is None else str(mapped)
    return str(address)


class DataChannelCommands(ServerBase):
    """Passive mode."""

    async def _open_passive(self, connection: Connection) -> PassiveListener | None:
        try:
            listener: PassiveListener = await connection.session.data.open_passive()
            return listener
        except NoAvailablePort:
            connection.response("425", "no free data port, try again later")
        except OSError as exc:
            connection.log.warning("can't open passive listener: %r", exc)
            connection.response("425", "can't open passive connection")
        return None

    @command("PASV", help="PASV: open a passive data port (IPv4)", feat=None)
    @_login
    async def pasv(self, connection: Connection, rest: str) -> bool:
        if connection.get("epsv_all"):
            connection.response("503", "PASV not allowed after EPSV ALL")
            return True
        local = _ipv4_of(connection.server_host)
        if local is None:
            connection.response("425", "PASV is IPv4 only on this connection; use EPSV")
            return True
        listener = await self._open_passive(connection)
        if listener is not None:
            announced = self.ipv4_pasv_forced_response_address or local
            connection.response("227", format_pasv_reply(announced, listener.port))
        return True

    @command("EPSV", help="EPSV [1|2|ALL]: open an extended passive data port", feat="EPSV")
    @_login
    async def epsv(self, connection: Connection, rest: str) -> bool:
        argument = rest.strip().upper()
        if argument == "ALL":
            connection.epsv_all = True
            connection.response("200", "EPSV ALL ok: only EPSV from now on")
            return True
        family = "2" if _ipv4_of(connection.server_host) is None else "1"
        if argument not in ("", "1", "2"):
            connection.response("522", f"network protocol not supported, use ({family})")
            return True
        if argument and argument != family:
            connection.response("522", f"network protocol not supported, use ({family})")
            return True
        listener = await self._open_passive(connection)
        if listener is not None:
            connection.response("229", f"Entering Extended Passive Mode (|||{listener.port}|)")
        return True
