"""PROXY protocol headers (haproxy's v1 text and v2 binary forms), parsed without I/O.

A load balancer that speaks the PROXY protocol sends one header before the client's first
byte, saying who the client is and which address it dialled. :func:`parse_header` takes the
bytes received so far and answers: not enough yet (``None``), a malformed header
(:class:`ProxyProtocolError`, the connection must be closed), or the header and its length
(the bytes after it belong to the client). Both forms are bounded: a v1 line is at most 107
bytes, a v2 header at most :data:`MAX_V2_LENGTH`, so a reader never buffers more than that.

Only what a TCP server needs is accepted: v1 ``TCP4``/``TCP6``/``UNKNOWN``; v2 ``PROXY`` over
IPv4/IPv6 stream, v2 ``PROXY`` with an unspecified family, and v2 ``LOCAL`` (the balancer's own
health checks). For ``UNKNOWN``, ``LOCAL`` and the unspecified family the header carries no
client (``source`` is None): the connection's own addresses stand. TLVs after the v2 address
block are skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "MAX_V1_LENGTH",
    "MAX_V2_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "parse_header",
]

#: The longest v1 header, CR LF included (haproxy's specification, section 2.1).
MAX_V1_LENGTH = 107
#: The v2 header's first twelve bytes.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest v2 header accepted: the 16 fixed bytes, the largest address block (two
#: 108-byte UNIX paths) and room for TLVs; a sender announcing more is refused.
MAX_V2_LENGTH = 16 + 216 + 1024

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16
#: v2 family nibble -> (bytes per address, address block length): IPv4, IPv6.
_V2_FAMILIES = {0x1: (4, 12), 0x2: (16, 36)}


class ProxyProtocolError(ValueError):
    """A header that does not follow the specification: close the connection."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a PROXY header says.

    Attributes:
        version: 1 or 2.
        source: the client's ``(host, port)``; None when the header names no client
            (v1 ``UNKNOWN``, v2 ``LOCAL``, v2 unspecified family).
        destination: the ``(host, port)`` the client dialled, None with ``source``.
        local: True for a v2 ``LOCAL`` header (the balancer itself, e.g. a health check).
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    local: bool = False


def parse_header(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` and its length, or None if more bytes are
    needed to tell.

    Raises:
        ProxyProtocolError: ``data`` does not start with a valid header (neither
            signature, a malformed line or block, an unsupported command or protocol, a
            header longer than the bounds).
    """
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return None if len(data) < _V2_FIXED else _parse_v2(data)
    if data[: len(_V1_PREFIX)] == _V1_PREFIX[: len(data)]:
        return None if len(data) < len(_V1_PREFIX) else _parse_v1(data)
    raise ProxyProtocolError("no PROXY protocol header")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolError("v1 header longer than 107 bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1 header is not ASCII") from None
    fields = line.split(" ")
    if fields[1:2] == ["UNKNOWN"]:  # anything may follow; the connection's addresses stand
        return ProxyHeader(1, None, None), end + 2
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("v1 header must be 'PROXY TCP4|TCP6 src dst sport dport'")
    version = 4 if fields[1] == "TCP4" else 6
    source = (_v1_address(fields[2], version), _v1_port(fields[4]))
    destination = (_v1_address(fields[3], version), _v1_port(fields[5]))
    return ProxyHeader(1, source, destination), end + 2


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"v1 header: {text!r} is not an address") from None
    if address.version != version or "%" in text:
        raise ProxyProtocolError(f"v1 header: {text!r} is not a TCP{version} address")
    return str(address)


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"v1 header: {text!r} is not a port")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"v1 header: {text!r} is not a port")
    return port


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    version_command, family_protocol = data[12], data[13]
    length = _V2_FIXED + int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2:
        raise ProxyProtocolError("v2 header with a version other than 2")
    command = version_command & 0x0F
    if command not in (0x0, 0x1):
        raise ProxyProtocolError("v2 header with a command other than LOCAL or PROXY")
    if length > MAX_V2_LENGTH:
        raise ProxyProtocolError(f"v2 header of {length} bytes (at most {MAX_V2_LENGTH})")
    if len(data) < length:
        return None
    if command == 0x0:  # LOCAL: the balancer's own connection, whatever the block says
        return ProxyHeader(2, None, None, local=True), length
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if family == 0x0:  # PROXY with an unspecified family: no client to report
        return ProxyHeader(2, None, None), length
    if protocol != 0x1:
        raise ProxyProtocolError("v2 header for a protocol other than TCP (STREAM)")
    if family not in _V2_FAMILIES:
        raise ProxyProtocolError("v2 header for an address family other than IPv4 or IPv6")
    size, block = _V2_FAMILIES[family]
    if length - _V2_FIXED < block:
        raise ProxyProtocolError("v2 header too short for its addresses")
    body = data[_V2_FIXED:length]
    source = ipaddress.ip_address(body[:size])
    destination = ipaddress.ip_address(body[size : 2 * size])
    ports = body[2 * size : 2 * size + 4]
    return (
        ProxyHeader(
            2,
            (str(source), int.from_bytes(ports[:2], "big")),
            (str(destination), int.from_bytes(ports[2:], "big")),
        ),
        length,
    )
