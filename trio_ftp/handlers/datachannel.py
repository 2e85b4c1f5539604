"""PASV, EPSV, PORT, EPRT: setting up data channels (RFC 959 §4.1.2, RFC 2428, RFC 2577).

Passive (PASV/EPSV): the server listens and the client connects. Active (PORT/EPRT): the
client listens and the server connects, when the transfer starts, from the control
connection's local address. Each command replaces whatever channel was set up before; see
:mod:`trio_ftp.datachannel` for the state they share.
"""

from __future__ import annotations

import inspect
import ipaddress
import re
import socket
from typing import TYPE_CHECKING

import trio

from ..base import ServerBase
from ..boundaries import UserCodeFailed, call_user_code
from ..commands import command
from ..conditions import ConnectionConditions
from ..connection import Connection
from ..errors import NoAvailablePort, ProtocolError
from ..options import DialledAddress
from ..validation import address_of, as_seconds, is_ipv4

if TYPE_CHECKING:
    from ..datachannel import PassiveListener

__all__ = [
    "DataChannelCommands",
    "format_pasv_reply",
    "parse_eprt_argument",
    "parse_port_argument",
]

_login = ConnectionConditions(ConnectionConditions.login_required)
_PORT_SYNTAX = "PORT needs h1,h2,h3,h4,p1,p2: six numbers from 0 to 255"
_EPRT_SYNTAX = "EPRT needs <d><proto><d><address><d><port><d>, e.g. |1|192.0.2.1|6000|"


def format_pasv_reply(host: str, port: int) -> str:
    """The ``227`` text: ``Entering Passive Mode (h1,h2,h3,h4,p1,p2).`` on one line."""
    numbers = [*host.split("."), str(port >> 8), str(port & 0xFF)]
    return f"Entering Passive Mode ({','.join(numbers)})."


def parse_port_argument(argument: str) -> tuple[str, int]:
    """``(host, port)`` from PORT's ``h1,h2,h3,h4,p1,p2`` (RFC 959 §4.1.2).

    Raises:
        ProtocolError: ``501`` for anything else (not six decimal numbers 0-255, port 0).
    """
    fields = [field.strip() for field in argument.split(",")]
    if len(fields) != 6 or not all(re.fullmatch("[0-9]{1,3}", field) for field in fields):
        raise ProtocolError("501", _PORT_SYNTAX)
    numbers = [int(field) for field in fields]
    if max(numbers) > 255:
        raise ProtocolError("501", _PORT_SYNTAX)
    port = numbers[4] << 8 | numbers[5]
    if port == 0:
        raise ProtocolError("501", "PORT: port 0 can't be connected to")
    return ".".join(str(number) for number in numbers[:4]), port


def parse_eprt_argument(argument: str) -> tuple[str, int]:
    """``(host, port)`` from EPRT's ``<d><proto><d><address><d><port><d>`` (RFC 2428 §2).

    The delimiter ``<d>`` is any ASCII character from 33 to 126; protocol 1 is IPv4, 2 IPv6.

    Raises:
        ProtocolError: ``522`` naming ``(1,2)`` for another protocol number, ``501`` for
            anything malformed.
    """
    text = argument.strip()
    delimiter = text[:1]
    if not delimiter or not 33 <= ord(delimiter) <= 126:
        raise ProtocolError("501", _EPRT_SYNTAX)
    fields = text.split(delimiter)
    if len(fields) != 5 or fields[0] or fields[4]:
        raise ProtocolError("501", _EPRT_SYNTAX)
    _, protocol, host, port_text, _ = fields
    if not re.fullmatch("[0-9]+", protocol):
        raise ProtocolError("501", _EPRT_SYNTAX)
    if protocol not in ("1", "2"):
        raise ProtocolError("522", "network protocol not supported, use (1,2)")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = (
            ipaddress.IPv4Address(host) if protocol == "1" else ipaddress.IPv6Address(host)
        )
    except ValueError:
        raise ProtocolError(
            "501", f"EPRT: not an IPv{4 if protocol == '1' else 6} address"
        ) from None
    if not re.fullmatch("[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
        raise ProtocolError("501", "EPRT: the port must be a number from 1 to 65535")
    return str(address), int(port_text)


def _announced(chosen: str | None, local: str) -> str:
    """``chosen`` checked as an IPv4 address; ``local`` for None or ``0.0.0.0``."""
    if chosen is None:
        return local
    address = ipaddress.IPv4Address(chosen)
    return local if address.is_unspecified else str(address)


def _ipv4_of(host: str) -> str | None:
    address = address_of(host)
    if address is None:
        raise ValueError(f"{host!r} is not an IP address")
    return str(address) if isinstance(address, ipaddress.IPv4Address) else None


class DataChannelCommands(ServerBase):
    """Passive and active mode."""

    async def _open_passive(self, connection: Connection) -> PassiveListener | None:
        try:
            listener: PassiveListener = await connection.data.open_passive()
            return listener
        except NoAvailablePort:
            connection.response("425", "no free data port, try again later")
            self.publish(connection, "passive_ports_exhausted")
        except OSError as exc:
            connection.log.warning("can't open passive listener: %r", exc)
            connection.response("425", "can't open passive connection")
        return None

    async def pasv_address(self, connection: Connection, local: str) -> str:
        """The IPv4 address a ``227`` announces, never ``0.0.0.0``: the
        ``passive_address_map`` entry of the client's network (longest prefix), else
        ``passive_address``: a fixed address, a host name resolved now, the address the
        client dialled (:data:`~trio_ftp.DIALLED`), or what the callable returns for
        ``connection``; else ``local``.

        The callable is user code: if it raises, returns something that is not an IPv4
        address, or (async) overruns ``callback_timeout``, the answer is ``451``; so is a
        host name that does not resolve (to IPv4) within ``callback_timeout``.

        Raises:
            UserCodeFailed: ``451``, already logged.
        """
        settings = self.options.data_channels
        mapped = settings.mapped_address(connection.client_host)
        if mapped is not None:
            return _announced(mapped, local)
        chooser = settings.passive_address
        if isinstance(chooser, DialledAddress):
            return _ipv4_of(connection.dialled_host) or local
        if isinstance(chooser, str) and not is_ipv4(chooser):
            return _announced(await self._resolve_passive_host(connection, chooser), local)
        if not callable(chooser):
            return _announced(chooser, local)

        async def choose() -> str:
            chosen = chooser(connection)
            if inspect.isawaitable(chosen):
                chosen = await chosen
            return _announced(chosen, local)

        return await call_user_code(
            choose,
            what="passive_address callable",
            seconds=self.options.timeouts.user_code,
            log=connection.log,
            failed=UserCodeFailed("451", "can't choose the passive address, try EPSV"),
        )

    async def _resolve_passive_host(self, connection: Connection, name: str) -> str:
        """``name``'s IPv4 address, looked up now (DNS changes reach the next ``PASV``).

        Raises:
            UserCodeFailed: ``451`` when it does not resolve within ``callback_timeout``.
        """
        seconds = self.options.timeouts.user_code
        failure = f"did not resolve within {as_seconds(seconds):g} s"
        with trio.move_on_after(as_seconds(seconds)):
            try:
                found = await trio.socket.getaddrinfo(
                    name, None, family=socket.AF_INET, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                failure = f"did not resolve: {exc}"
            else:
                if found:
                    return str(found[0][4][0])
                failure = "has no IPv4 address"
        connection.log.warning("passive_address %s %s", name, failure)
        raise UserCodeFailed("451", "can't resolve the passive address, try EPSV")

    @command("PASV", help="PASV: open a passive data port (IPv4)", feat=None)
    @_login
    async def pasv(self, connection: Connection, rest: str) -> bool:
        if connection.epsv_all:
            connection.response("503", "PASV not allowed after EPSV ALL")
            return True
        local = _ipv4_of(connection.server_host)
        if local is None:
            connection.response("425", "PASV is IPv4 only on this connection; use EPSV")
            return True
        announced = await self.pasv_address(connection, local)
        listener = await self._open_passive(connection)
        if listener is not None:
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

    def _active_refused(self, connection: Connection, verb: str) -> bool:
        """Answer and return True when active mode can't be used now."""
        if not self.options.data_channels.active_mode:
            connection.response("504", f"{verb} refused: active mode disabled (use EPSV or PASV)")
            return True
        if connection.epsv_all:
            connection.response("503", f"{verb} not allowed after EPSV ALL")  # RFC 2428 §4
            return True
        return False

    @command(
        "PORT",
        help="PORT h1,h2,h3,h4,p1,p2: active mode, the server connects to you (IPv4)",
        needs_argument=True,
    )
    @_login
    async def port(self, connection: Connection, rest: str) -> bool:
        if not self._active_refused(connection, "PORT"):
            await connection.data.open_active(*parse_port_argument(rest))
            connection.response("200", "PORT command successful")
        return True

    @command(
        "EPRT",
        help="EPRT |1|address|port| or |2|address|port|: extended active mode",
        feat="EPRT",
        needs_argument=True,
    )
    @_login
    async def eprt(self, connection: Connection, rest: str) -> bool:
        if not self._active_refused(connection, "EPRT"):
            await connection.data.open_active(*parse_eprt_argument(rest))
            connection.response("200", "EPRT command successful")
        return True
