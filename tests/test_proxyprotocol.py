"""PROXY protocol headers (haproxy's specification), parsed without I/O."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ftp.proxyprotocol import (
    MAX_V2_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)


def v2(command: int, family: int, body: bytes, *, version: int = 2) -> bytes:
    return (
        V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack("!H", len(body)) + body
    )


INET_BODY = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 40000, 21)
INET6_BODY = (
    bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + struct.pack("!HH", 50000, 2121)
)


@pytest.mark.parametrize(
    ("line", "header"),
    [
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 21\r\n",
            ProxyHeader(1, ("192.0.2.1", 40000), ("198.51.100.7", 21)),
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:db8::2 50000 2121\r\n",
            ProxyHeader(1, ("2001:db8::1", 50000), ("2001:db8::2", 2121)),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, None, None)),
        (
            b"PROXY TCP4 10.0.0.1 10.0.0.2 0 65535\r\n",
            ProxyHeader(1, ("10.0.0.1", 0), ("10.0.0.2", 65535)),
        ),
    ],
)
def test_v1_headers(line: bytes, header: ProxyHeader) -> None:
    assert parse_header(line + b"USER x\r\n") == (header, len(line))


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.1 198.51.100.7 40000\r\n",  # a field missing
        b"PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n",  # no such protocol
        b"PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n",  # IPv6 in TCP4
        b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",  # IPv4 in TCP6
        b"PROXY TCP4 192.0.2.300 198.51.100.7 1 2\r\n",  # not an address
        b"PROXY TCP4 192.0.2.1 198.51.100.7 021 2\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n",  # port too big
        b"PROXY TCP4 192.0.2.1 198.51.100.7 -1 2\r\n",  # not a number
        b"PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n",  # two spaces
        b"PROXY TCP4 192.0.2.1 198.51.100.7 1 \xd9\xa1\r\n",  # a non-ASCII digit
        b"PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n",  # a zone
        b"USER anonymous\r\n",  # no header at all
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_malformed_v1_headers_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_header(line)


def test_a_v1_line_longer_than_107_bytes_is_refused_without_its_end() -> None:
    assert parse_header(b"PROXY TCP4 " + b"1" * 95) is None  # 106 bytes: may still end
    with pytest.raises(ProxyProtocolError, match="107"):
        parse_header(b"PROXY TCP4 " + b"1" * 96)


def test_v2_headers() -> None:
    assert parse_header(v2(1, 0x11, INET_BODY) + b"rest") == (
        ProxyHeader(2, ("192.0.2.1", 40000), ("198.51.100.7", 21)),
        16 + 12,
    )
    assert parse_header(v2(1, 0x21, INET6_BODY)) == (
        ProxyHeader(2, ("2001:db8::1", 50000), ("2001:db8::2", 2121)),
        16 + 36,
    )
    tlvs = b"\x03\x00\x04abcd" + b"\x04\x00\x00"  # CRC32C and NOOP TLVs: skipped
    assert parse_header(v2(1, 0x11, INET_BODY + tlvs))[1] == 16 + 12 + len(tlvs)  # type: ignore[index]


def test_v2_local_and_unspecified_name_no_client() -> None:
    assert parse_header(v2(0, 0x00, b"")) == (ProxyHeader(2, None, None, local=True), 16)
    assert parse_header(v2(0, 0x11, INET_BODY)) == (ProxyHeader(2, None, None, local=True), 28)
    assert parse_header(v2(1, 0x00, b"")) == (ProxyHeader(2, None, None), 16)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (v2(1, 0x11, INET_BODY, version=1), "version"),
        (v2(2, 0x11, INET_BODY), "command"),
        (v2(1, 0x12, INET_BODY), "TCP"),  # DGRAM
        (v2(1, 0x31, b"\x00" * 216), "family"),  # UNIX
        (v2(1, 0x11, INET_BODY[:11]), "short"),
        (v2(1, 0x21, INET_BODY), "short"),  # an IPv4 block under IPv6
        (v2(1, 0x11, b"\x00" * (MAX_V2_LENGTH - 15)), "at most"),
    ],
)
def test_malformed_v2_headers_are_refused(header: bytes, reason: str) -> None:
    with pytest.raises(ProxyProtocolError, match=reason):
        parse_header(header)


def test_an_overlong_v2_header_is_refused_before_it_arrives() -> None:
    """The length field alone is enough: nothing more is buffered."""
    with pytest.raises(ProxyProtocolError, match="at most"):
        parse_header(V2_SIGNATURE + b"\x21\x11\xff\xff")


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 21\r\n",
        b"PROXY UNKNOWN\r\n",
        v2(1, 0x11, INET_BODY),
        v2(1, 0x21, INET6_BODY + b"\x04\x00\x01x"),
        v2(0, 0x00, b""),
    ],
)
def test_every_prefix_of_a_header_asks_for_more(header: bytes) -> None:
    for end in range(len(header)):
        assert parse_header(header[:end]) is None, header[:end]
    result = parse_header(header)
    assert result is not None
    assert result[1] == len(header)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_more_please_or_a_protocol_error(data: bytes) -> None:
    try:
        result = parse_header(data)
    except ProxyProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= len(data)
