"""The server's configuration: a few frozen, typed, validated groups.

``Server(users, idle_timeout=..., tls_context=..., ...)`` keeps aioftp's flat keywords;
:meth:`ServerOptions.from_keywords` sorts them into the groups below, and the server reads
``server.options.timeouts.idle``, ``server.options.tls.data_required`` and so on. Each group
checks its values when it is built (``__post_init__``), so a bad value fails at construction
with a ``ValueError`` naming the aioftp keyword, and ``dataclasses.replace`` re-checks.

Speed limits are not here: they stay attributes of the server and of each user
(:class:`trio_ftp.throttle.SpeedLimited`) because changing them applies to running transfers.
The user manager and the path-IO factory are collaborators, not options.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NoReturn,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
)

from .validation import address_of, check_flag, check_positive_int, check_timeout, is_ipv4

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "DIALLED",
    "DataChannelOptions",
    "DataPeerCheck",
    "DialledAddress",
    "FileOptions",
    "FlatOptionAttributes",
    "Limits",
    "LoginPolicy",
    "PassiveAddressChooser",
    "ProtocolOptions",
    "ProxyMode",
    "ProxyOptions",
    "ServerOptions",
    "TLSOptions",
    "Timeouts",
]

#: ``passive_address`` as a callable: the address to announce for a connection, or None.
PassiveAddressChooser: TypeAlias = "Callable[[Connection], str | Awaitable[str | None] | None]"

#: ``proxy_protocol``: PROXY protocol headers on the control listener never ("off"), from
#: trusted senders when they send one ("optional"), or always ("required").
ProxyMode = Literal["off", "optional", "required"]
#: ``data_peer_check``: who may connect to a passive data port (see DataChannelOptions).
DataPeerCheck = Literal["strict", "transport", "off"]
#: A network as ``proxy_protocol_from`` and ``passive_address_map`` take it.
Network: TypeAlias = "str | ipaddress.IPv4Network | ipaddress.IPv6Network"
IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"


class DialledAddress(enum.Enum):
    """``passive_address=trio_ftp.DIALLED``: announce the address the client dialled."""

    DIALLED = "dialled"


#: Announce in ``227`` the address the client dialled: the destination of the PROXY
#: header when the balancer sent one, else the control connection's local address.
DIALLED = DialledAddress.DIALLED

# RFC 1123 host names; the last label is not all digits (so "10.0.0.256" is no host name).
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_host_name(text: str) -> bool:
    """True if ``text`` is a syntactically valid DNS host name (not an IP address)."""
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    return (
        0 < len(text) <= 253
        and text.isascii()
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _networks(name: str, values: object) -> tuple[IPNetwork, ...]:
    """``values`` (CIDR strings or ``ip_network`` objects) as a tuple of networks."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of networks (CIDR), got {values!r}")
    networks: list[IPNetwork] = []
    for value in values:
        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(value)
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name}: {value!r} is not a network (CIDR)")
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(f"{name}: {value!r} is not a network (CIDR): {exc}") from None
    return tuple(networks)


def in_networks(host: str, networks: Iterable[IPNetwork]) -> bool:
    """True if the address ``host`` is in one of ``networks`` (IPv4-mapped counts as IPv4)."""
    address = address_of(host)
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyOptions:
    """PROXY protocol (haproxy's v1/v2 headers): the client's address from a load balancer.

    Attributes:
        mode: ``"off"`` (``proxy_protocol``; the default): no header is read. ``"optional"``:
            a trusted sender may send one (within ``header_timeout``; a connection that
            sends nothing in that time is served as a direct client); from anyone else a
            header closes the connection. ``"required"``: only trusted senders may connect,
            and each must send a header; anything else is closed.
        trusted: the networks whose connections may carry a header (``proxy_protocol_from``;
            CIDR strings or ``ipaddress`` networks): the balancers. Required unless off.
        header_timeout: seconds a trusted sender has to send its header
            (``proxy_protocol_timeout``).
        data: passive data connections take a header too (``proxy_protocol_data``): one from
            a trusted sender must start with one; from anyone else, in ``required`` mode it
            is dropped, in ``optional`` mode it is taken as a direct connection.
    """

    mode: ProxyMode = "off"
    trusted: tuple[IPNetwork, ...] = ()
    header_timeout: float = 3.0
    data: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("off", "optional", "required"):
            raise ValueError(
                f"proxy_protocol must be 'off', 'optional' or 'required', got {self.mode!r}"
            )
        object.__setattr__(self, "trusted", _networks("proxy_protocol_from", self.trusted))
        if self.mode != "off" and not self.trusted:
            raise ValueError(
                f"proxy_protocol={self.mode!r} needs proxy_protocol_from (the balancers' "
                "networks): nobody else may send a header"
            )
        check_timeout("proxy_protocol_timeout", self.header_timeout)
        if self.header_timeout is None:
            raise ValueError("proxy_protocol_timeout must be a number of seconds, not None")
        check_flag("proxy_protocol_data", self.data)
        if self.data and self.mode == "off":
            raise ValueError("proxy_protocol_data needs proxy_protocol 'optional' or 'required'")

    @property
    def enabled(self) -> bool:
        """True unless the mode is ``"off"``."""
        return self.mode != "off"

    def trusts(self, host: str) -> bool:
        """True if a connection from ``host`` may carry a PROXY header."""
        return in_networks(host, self.trusted)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSOptions:
    """FTPS: which kind, and what it insists on.

    Attributes:
        context: the server's TLS context; ``None``: no FTPS.
        implicit: implicit FTPS (aioftp's ``ssl=``): every control connection is TLS from
            its first byte, and data connections are TLS too. Otherwise the context serves
            explicit FTPS (``tls_context=``): the plain port offers ``AUTH TLS`` (RFC 4217).
        control_required: refuse ``USER``/``PASS`` (``530``) on a control connection that
            is not TLS (``tls_control_required``).
        data_required: refuse transfers (``521``) unless ``PROT P`` is in force
            (``tls_data_required``).
        session_reuse_required: a data connection's TLS session must resume the control
            connection's (``tls_require_session_reuse``).
        strict_eof: an upload ended by a TCP FIN without ``close_notify`` fails
            (``tls_strict_eof``).
        allow_ccc: honour ``CCC`` (``tls_allow_ccc``).
        handshake_timeout: seconds a TLS handshake (control or data) may take
            (``tls_handshake_timeout``; ``None``: no limit).
    """

    context: _ssl.SSLContext | None = None
    implicit: bool = False
    control_required: bool = False
    data_required: bool = False
    session_reuse_required: bool = False
    strict_eof: bool = False
    allow_ccc: bool = False
    handshake_timeout: float | None = 10.0

    def __post_init__(self) -> None:
        check_flag("implicit", self.implicit)
        if self.context is not None or self.implicit:
            name = "ssl" if self.implicit else "tls_context"
            if not isinstance(self.context, _ssl.SSLContext):
                raise ValueError(f"{name} must be an ssl.SSLContext, got {self.context!r}")
        check_flag("tls_control_required", self.control_required)
        check_flag("tls_data_required", self.data_required)
        check_flag("tls_require_session_reuse", self.session_reuse_required)
        check_flag("tls_strict_eof", self.strict_eof)
        check_flag("tls_allow_ccc", self.allow_ccc)
        check_timeout("tls_handshake_timeout", self.handshake_timeout)

    @property
    def implicit_context(self) -> _ssl.SSLContext | None:
        """The context of implicit FTPS (aioftp's ``server.ssl``), else ``None``."""
        return self.context if self.implicit else None

    @property
    def explicit_context(self) -> _ssl.SSLContext | None:
        """The context ``AUTH TLS`` uses (``server.tls_context``), else ``None``."""
        return None if self.implicit else self.context


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds things may take; ``None`` means no limit.

    Attributes:
        socket: each socket read or write, control and data (``socket_timeout``).
        idle: a control connection without a complete command, transfers not counted
            (``idle_timeout``); then ``421`` and close.
        data_connection_wait: a transfer waiting for its data connection, then ``425``
            (aioftp's ``wait_future_timeout``; ``0`` allowed: it must be there already).
        path_io: each path-IO operation, then ``451`` (``path_timeout``).
        user_code: a call into user code that has no timeout of its own
            (``callback_timeout``).
    """

    socket: float | None = 300.0
    idle: float | None = 300.0
    data_connection_wait: float | None = 1
    path_io: float | None = None
    user_code: float | None = 30.0

    def __post_init__(self) -> None:
        check_timeout("socket_timeout", self.socket)
        check_timeout("idle_timeout", self.idle)
        check_timeout("wait_future_timeout", self.data_connection_wait, allow_zero=True)
        check_timeout("path_timeout", self.path_io)
        check_timeout("callback_timeout", self.user_code)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on what the server holds at once.

    Attributes:
        block_size: bytes per file read or write when a transfer does not go through the
            kernel (``block_size``).
        connections: control connections served at once (``maximum_connections``;
            ``None``: no limit); the next gets ``421``.
        connections_per_ip: the same per client address (``maximum_connections_per_ip``).
    """

    block_size: int = 1024 * 1024
    connections: int | None = None
    connections_per_ip: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("block_size", self.block_size, allow_none=False)
        check_positive_int("maximum_connections", self.connections)
        check_positive_int("maximum_connections_per_ip", self.connections_per_ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginPolicy:
    """The brakes on password guessing.

    Attributes:
        failure_delay: seconds before a failed ``PASS`` is answered (``login_failure_delay``;
            ``0`` or ``None``: at once).
        failures_per_session: failed logins after which the session is closed with ``421``
            (``maximum_login_attempts``; ``None``: no limit).
        failures_per_ip: failed logins from one address, across its sessions, after which
            that address is refused (``maximum_login_failures_per_ip``; ``None``: no limit)...
        failure_window: ...until a failure is this many seconds old
            (``login_failure_window``; ``None``: forever).
    """

    failure_delay: float | None = 1.0
    failures_per_session: int | None = 3
    failures_per_ip: int | None = 20
    failure_window: float | None = 600.0

    def __post_init__(self) -> None:
        check_timeout("login_failure_delay", self.failure_delay, allow_zero=True)
        check_positive_int("maximum_login_attempts", self.failures_per_session)
        check_positive_int("maximum_login_failures_per_ip", self.failures_per_ip)
        check_timeout("login_failure_window", self.failure_window)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataChannelOptions:
    """Where data connections may go.

    Attributes:
        ports: the ports passive listeners may use (``data_ports``); ``None`` lets the
            kernel choose.
        passive_address: what ``227`` announces (for NAT and load balancers): an IPv4
            address; a host name, resolved again for each ``PASV`` (within
            ``callback_timeout``; failure: ``451``); :data:`DIALLED`, the address the client
            dialled (the PROXY header's destination, else the local address); or a callable
            ``(connection) -> str | None`` (possibly async) choosing per connection. ``None``
            and ``0.0.0.0``: the control connection's local address.
        passive_address_map: client networks -> the IPv4 address to announce to clients
            in them (``passive_address_map``, SFTPGo's ``passive_ip_overrides``): the
            longest matching prefix wins; a client in none gets ``passive_address``.
        peer_check: who may connect to a passive data port (``data_peer_check``):
            ``"strict"``, the session's client address (the proxied one when data
            connections take PROXY headers); ``"transport"``, the control connection's
            transport peer (the balancer); ``"off"``, anyone (whoever connects first gets
            the transfer: data-port theft becomes possible).
        active_mode: honour ``PORT``/``EPRT``; otherwise ``504``.
        permit_foreign_addresses: let ``PORT``/``EPRT`` name an address other than the
            client's (the FTP bounce attack, RFC 2577 §3; ``501`` otherwise).
        permit_privileged_ports: let ``PORT``/``EPRT`` name a port below 1024.
    """

    ports: tuple[int, ...] | None = None
    passive_address: str | DialledAddress | PassiveAddressChooser | None = None
    passive_address_map: tuple[tuple[IPNetwork, str], ...] = ()
    peer_check: DataPeerCheck = "strict"
    active_mode: bool = True
    permit_foreign_addresses: bool = False
    permit_privileged_ports: bool = False

    def __post_init__(self) -> None:
        if self.ports is not None:
            if not isinstance(self.ports, tuple):
                raise ValueError(f"data_ports must be a tuple of port numbers, got {self.ports!r}")
            for port in self.ports:
                if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                    raise ValueError(f"data_ports: {port!r} is not a TCP port number")
        address = self.passive_address
        if isinstance(address, str):
            if address == DIALLED.value:
                raise ValueError(
                    "passive_address='dialled' would be a host name: "
                    "give trio_ftp.DIALLED for the address the client dialled"
                )
            if not (is_ipv4(address) or is_host_name(address)):
                raise ValueError(
                    f"passive_address must be an IPv4 address or a host name, got {address!r}"
                )
        elif (
            address is not None
            and not isinstance(address, DialledAddress)
            and not callable(address)
        ):
            raise ValueError(
                f"passive_address must be a str, trio_ftp.DIALLED or a callable, got {address!r}"
            )
        object.__setattr__(self, "passive_address_map", _address_map(self.passive_address_map))
        if self.peer_check not in ("strict", "transport", "off"):
            raise ValueError(
                f"data_peer_check must be 'strict', 'transport' or 'off', got {self.peer_check!r}"
            )
        check_flag("active_mode", self.active_mode)
        check_flag("permit_foreign_addresses", self.permit_foreign_addresses)
        check_flag("permit_privileged_ports", self.permit_privileged_ports)

    def mapped_address(self, client_host: str) -> str | None:
        """The ``passive_address_map`` address for ``client_host`` (longest prefix), or None."""
        client = address_of(client_host)
        best: tuple[int, str] | None = None
        if client is None:
            return None
        for network, address in self.passive_address_map:
            if client in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, address)
        return None if best is None else best[1]


def _address_map(value: object) -> tuple[tuple[IPNetwork, str], ...]:
    """``passive_address_map`` (a mapping or pairs: network -> IPv4 address) as sorted pairs."""
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"passive_address_map must map networks to addresses, got {value!r}")
    pairs: dict[IPNetwork, str] = {}
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValueError(f"passive_address_map: {item!r} is not a (network, address) pair")
        (network,) = _networks("passive_address_map", [item[0]])
        address = item[1]
        if not isinstance(address, str) or not is_ipv4(address):
            raise ValueError(f"passive_address_map: {address!r} is not an IPv4 address")
        if network in pairs:
            raise ValueError(f"passive_address_map: {network} is given twice")
        pairs[network] = str(ipaddress.IPv4Address(address))
    return tuple(sorted(pairs.items(), key=lambda pair: (pair[0].version, str(pair[0]))))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolOptions:
    """What the server says and in which encoding.

    Attributes:
        encoding: of commands, replies and listings (``encoding``).
        welcome_message: the ``220`` greeting text (``welcome_message``).
        system_type: the ``215`` SYST reply text (``system_type``).
    """

    encoding: str = "utf-8"
    welcome_message: str = "trio_ftp ready"
    system_type: str = "UNIX Type: L8"

    def __post_init__(self) -> None:
        "".encode(self.encoding)  # LookupError now rather than at the first reply
        for name, text in (
            ("welcome_message", self.welcome_message),
            ("system_type", self.system_type),
        ):
            if not isinstance(text, str):
                raise ValueError(f"{name} must be a str, got {text!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOptions:
    """How uploads and mode changes treat files.

    Attributes:
        atomic_uploads: ``STOR``/``STOU`` write a hidden temporary file renamed over the
            target only when the upload succeeds (``atomic_uploads``).
        permit_special_mode_bits: allow setuid, setgid and sticky bits (``0o7000``) in
            ``SITE CHMOD`` and atomic replacements (``permit_special_mode_bits``).
    """

    atomic_uploads: bool = False
    permit_special_mode_bits: bool = False

    def __post_init__(self) -> None:
        check_flag("atomic_uploads", self.atomic_uploads)
        check_flag("permit_special_mode_bits", self.permit_special_mode_bits)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """Every option of a server, by group: ``options.timeouts.idle``, ``options.tls.context``.

    Build it directly (``ServerOptions(timeouts=Timeouts(idle=60))``), or from aioftp's flat
    keywords with :meth:`from_keywords`; change a copy with ``dataclasses.replace``. A server
    built from it: ``Server.from_options(options, users)``.
    """

    tls: TLSOptions = TLSOptions()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    login: LoginPolicy = LoginPolicy()
    data_channels: DataChannelOptions = DataChannelOptions()
    protocol: ProtocolOptions = ProtocolOptions()
    files: FileOptions = FileOptions()
    proxy: ProxyOptions = ProxyOptions()

    def __post_init__(self) -> None:
        groups: tuple[tuple[str, object, type], ...] = (
            ("tls", self.tls, TLSOptions),
            ("timeouts", self.timeouts, Timeouts),
            ("limits", self.limits, Limits),
            ("login", self.login, LoginPolicy),
            ("data_channels", self.data_channels, DataChannelOptions),
            ("protocol", self.protocol, ProtocolOptions),
            ("files", self.files, FileOptions),
            ("proxy", self.proxy, ProxyOptions),
        )
        for name, group, kind in groups:
            if not isinstance(group, kind):
                raise ValueError(f"{name} must be a {kind.__name__}, got {group!r}")

    @classmethod
    def from_keywords(
        cls,
        *,
        block_size: int = 1024 * 1024,
        socket_timeout: float | None = 300.0,
        idle_timeout: float | None = 300.0,
        wait_future_timeout: float | None = 1,
        path_timeout: float | None = None,
        callback_timeout: float | None = 30.0,
        maximum_connections: int | None = None,
        ipv4_pasv_forced_response_address: str | None = None,
        data_ports: Iterable[int] | None = None,
        passive_address: str | DialledAddress | PassiveAddressChooser | None = None,
        passive_address_map: Mapping[Network, str] | Iterable[tuple[Network, str]] = (),
        data_peer_check: DataPeerCheck = "strict",
        active_mode: bool = True,
        permit_foreign_addresses: bool = False,
        permit_privileged_ports: bool = False,
        encoding: str = "utf-8",
        ssl: _ssl.SSLContext | None = None,
        welcome_message: str = "trio_ftp ready",
        system_type: str = "UNIX Type: L8",
        tls_context: _ssl.SSLContext | None = None,
        tls_control_required: bool = False,
        tls_data_required: bool = False,
        tls_require_session_reuse: bool = False,
        tls_strict_eof: bool = False,
        tls_allow_ccc: bool = False,
        tls_handshake_timeout: float | None = 10.0,
        maximum_connections_per_ip: int | None = None,
        login_failure_delay: float | None = 1.0,
        maximum_login_attempts: int | None = 3,
        maximum_login_failures_per_ip: int | None = 20,
        login_failure_window: float | None = 600.0,
        atomic_uploads: bool = False,
        permit_special_mode_bits: bool = False,
        proxy_protocol: ProxyMode = "off",
        proxy_protocol_from: Iterable[Network] = (),
        proxy_protocol_timeout: float = 3.0,
        proxy_protocol_data: bool = False,
    ) -> ServerOptions:
        """The options aioftp's flat keywords describe (``Server``'s, without the users,
        the path-IO factory and the speed limits); the defaults are ``Server``'s."""
        if passive_address is None:
            passive_address = ipv4_pasv_forced_response_address
        elif ipv4_pasv_forced_response_address is not None:
            raise ValueError(
                "give passive_address= or its alias ipv4_pasv_forced_response_address=, not both"
            )
        if ssl is not None and tls_context is not None:
            raise ValueError("give ssl= (implicit FTPS) or tls_context= (explicit), not both")
        return cls(
            tls=TLSOptions(
                context=ssl if ssl is not None else tls_context,
                implicit=ssl is not None,
                control_required=tls_control_required,
                data_required=tls_data_required,
                session_reuse_required=tls_require_session_reuse,
                strict_eof=tls_strict_eof,
                allow_ccc=tls_allow_ccc,
                handshake_timeout=tls_handshake_timeout,
            ),
            timeouts=Timeouts(
                socket=socket_timeout,
                idle=idle_timeout,
                data_connection_wait=wait_future_timeout,
                path_io=path_timeout,
                user_code=callback_timeout,
            ),
            limits=Limits(
                block_size=block_size,
                connections=maximum_connections,
                connections_per_ip=maximum_connections_per_ip,
            ),
            login=LoginPolicy(
                failure_delay=login_failure_delay,
                failures_per_session=maximum_login_attempts,
                failures_per_ip=maximum_login_failures_per_ip,
                failure_window=login_failure_window,
            ),
            data_channels=DataChannelOptions(
                # int(): aioftp took any iterable of port-like values; duplicates count once
                ports=None if data_ports is None else tuple(dict.fromkeys(map(int, data_ports))),
                passive_address=passive_address,
                passive_address_map=passive_address_map,  # type: ignore[arg-type]  # checked
                peer_check=data_peer_check,
                active_mode=active_mode,
                permit_foreign_addresses=permit_foreign_addresses,
                permit_privileged_ports=permit_privileged_ports,
            ),
            protocol=ProtocolOptions(
                encoding=encoding, welcome_message=welcome_message, system_type=system_type
            ),
            files=FileOptions(
                atomic_uploads=atomic_uploads, permit_special_mode_bits=permit_special_mode_bits
            ),
            proxy=ProxyOptions(
                mode=proxy_protocol,
                trusted=proxy_protocol_from,  # type: ignore[arg-type]  # checked, made a tuple
                header_timeout=proxy_protocol_timeout,
                data=proxy_protocol_data,
            ),
        )

    def keywords(self) -> dict[str, Any]:
        """The flat keywords :meth:`from_keywords` turns back into these options."""
        tls, timeouts, limits, login = self.tls, self.timeouts, self.limits, self.login
        data, protocol, files = self.data_channels, self.protocol, self.files
        proxy = self.proxy
        return {
            "block_size": limits.block_size,
            "socket_timeout": timeouts.socket,
            "idle_timeout": timeouts.idle,
            "wait_future_timeout": timeouts.data_connection_wait,
            "path_timeout": timeouts.path_io,
            "callback_timeout": timeouts.user_code,
            "maximum_connections": limits.connections,
            "data_ports": data.ports,
            "passive_address": data.passive_address,
            "passive_address_map": data.passive_address_map,
            "data_peer_check": data.peer_check,
            "active_mode": data.active_mode,
            "permit_foreign_addresses": data.permit_foreign_addresses,
            "permit_privileged_ports": data.permit_privileged_ports,
            "encoding": protocol.encoding,
            "ssl": tls.implicit_context,
            "welcome_message": protocol.welcome_message,
            "system_type": protocol.system_type,
            "tls_context": tls.explicit_context,
            "tls_control_required": tls.control_required,
            "tls_data_required": tls.data_required,
            "tls_require_session_reuse": tls.session_reuse_required,
            "tls_strict_eof": tls.strict_eof,
            "tls_allow_ccc": tls.allow_ccc,
            "tls_handshake_timeout": tls.handshake_timeout,
            "maximum_connections_per_ip": limits.connections_per_ip,
            "login_failure_delay": login.failure_delay,
            "maximum_login_attempts": login.failures_per_session,
            "maximum_login_failures_per_ip": login.failures_per_ip,
            "login_failure_window": login.failure_window,
            "atomic_uploads": files.atomic_uploads,
            "permit_special_mode_bits": files.permit_special_mode_bits,
            "proxy_protocol": proxy.mode,
            "proxy_protocol_from": proxy.trusted,
            "proxy_protocol_timeout": proxy.header_timeout,
            "proxy_protocol_data": proxy.data,
        }


_T = TypeVar("_T")


class _HasOptions(Protocol):
    @property
    def options(self) -> ServerOptions: ...


class _FlatOption(Generic[_T]):
    """A read-only attribute under aioftp's flat name that reads the grouped options."""

    __slots__ = ("_name", "_read")

    def __init__(self, read: Callable[[ServerOptions], _T]) -> None:
        self._read = read
        self._name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _FlatOption[_T]: ...
    @overload
    def __get__(self, instance: _HasOptions, owner: type) -> _T: ...
    def __get__(self, instance: _HasOptions | None, owner: type) -> _T | _FlatOption[_T]:
        if instance is None:
            return self
        return self._read(instance.options)

    def __set__(self, instance: _HasOptions, value: object) -> NoReturn:
        raise AttributeError(
            f"{self._name} is read-only: it is part of server.options (frozen); "
            "build the server with the new value (Server.from_options(dataclasses.replace(...)))"
        )


class FlatOptionAttributes:
    """aioftp's flat attributes (``server.idle_timeout``...), read-only, read from
    ``self.options``. Kept for user code written against aioftp; new code reads the groups.

    Every option keyword has one, but ``data_ports``: ``server.data_ports`` is the pool of
    free ports (runtime state); the configured ports are ``options.data_channels.ports``.
    """

    __slots__ = ()

    block_size = _FlatOption(lambda o: o.limits.block_size)
    socket_timeout = _FlatOption(lambda o: o.timeouts.socket)
    idle_timeout = _FlatOption(lambda o: o.timeouts.idle)
    wait_future_timeout = _FlatOption(lambda o: o.timeouts.data_connection_wait)
    path_timeout = _FlatOption(lambda o: o.timeouts.path_io)
    callback_timeout = _FlatOption(lambda o: o.timeouts.user_code)
    maximum_connections = _FlatOption(lambda o: o.limits.connections)
    maximum_connections_per_ip = _FlatOption(lambda o: o.limits.connections_per_ip)
    passive_address = _FlatOption(lambda o: o.data_channels.passive_address)
    ipv4_pasv_forced_response_address = _FlatOption(
        lambda o: _string_or_none(o.data_channels.passive_address)
    )
    active_mode = _FlatOption(lambda o: o.data_channels.active_mode)
    permit_foreign_addresses = _FlatOption(lambda o: o.data_channels.permit_foreign_addresses)
    permit_privileged_ports = _FlatOption(lambda o: o.data_channels.permit_privileged_ports)
    encoding = _FlatOption(lambda o: o.protocol.encoding)
    welcome_message = _FlatOption(lambda o: o.protocol.welcome_message)
    system_type = _FlatOption(lambda o: o.protocol.system_type)
    ssl = _FlatOption(lambda o: o.tls.implicit_context)
    tls_context = _FlatOption(lambda o: o.tls.explicit_context)
    tls_control_required = _FlatOption(lambda o: o.tls.control_required)
    tls_data_required = _FlatOption(lambda o: o.tls.data_required)
    tls_require_session_reuse = _FlatOption(lambda o: o.tls.session_reuse_required)
    tls_strict_eof = _FlatOption(lambda o: o.tls.strict_eof)
    tls_allow_ccc = _FlatOption(lambda o: o.tls.allow_ccc)
    tls_handshake_timeout = _FlatOption(lambda o: o.tls.handshake_timeout)
    login_failure_delay = _FlatOption(lambda o: o.login.failure_delay)
    maximum_login_attempts = _FlatOption(lambda o: o.login.failures_per_session)
    maximum_login_failures_per_ip = _FlatOption(lambda o: o.login.failures_per_ip)
    login_failure_window = _FlatOption(lambda o: o.login.failure_window)
    atomic_uploads = _FlatOption(lambda o: o.files.atomic_uploads)
    permit_special_mode_bits = _FlatOption(lambda o: o.files.permit_special_mode_bits)
    passive_address_map = _FlatOption(lambda o: o.data_channels.passive_address_map)
    data_peer_check = _FlatOption(lambda o: o.data_channels.peer_check)
    proxy_protocol = _FlatOption(lambda o: o.proxy.mode)
    proxy_protocol_from = _FlatOption(lambda o: o.proxy.trusted)
    proxy_protocol_timeout = _FlatOption(lambda o: o.proxy.header_timeout)
    proxy_protocol_data = _FlatOption(lambda o: o.proxy.data)


def _string_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
