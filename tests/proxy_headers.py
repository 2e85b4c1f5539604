"""PROXY protocol headers as a load balancer sends them (haproxy's v1 and v2), for tests."""

from __future__ import annotations

import ipaddress

from trio_ftp.proxyprotocol import V2_SIGNATURE


def v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport`` CR LF."""
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def v2(source: tuple[str, int], destination: tuple[str, int], tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header over TCP (IPv4 or IPv6), with optional raw TLV bytes."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    family = 0x11 if src.version == 4 else 0x21
    block = (
        src.packed
        + dst.packed
        + source[1].to_bytes(2, "big")
        + destination[1].to_bytes(2, "big")
        + tlvs
    )
    return V2_SIGNATURE + bytes([0x21, family]) + len(block).to_bytes(2, "big") + block


def v2_local() -> bytes:
    """A v2 LOCAL header (the balancer's own health check)."""
    return V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])
