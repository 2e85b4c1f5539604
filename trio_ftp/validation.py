"""Argument checks shared by ``Server`` and ``User``: bad configuration fails at construction."""

from __future__ import annotations

import functools
import ipaddress
import math

__all__ = ["as_seconds", "check_flag", "check_positive_int", "check_timeout"]


def check_positive_int(name: str, value: int | None, *, allow_none: bool = True) -> int | None:
    """``value`` if it is a positive integer (or ``None`` when allowed), else ``ValueError``
    naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_timeout(name: str, value: float | None, *, allow_zero: bool = False) -> float | None:
    """``value`` if it is ``None`` or a positive number of seconds, else ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds or None, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return value


def check_flag(name: str, value: bool) -> bool:
    """``value`` if it is ``True`` or ``False``, else ``ValueError``: a switch given as
    ``"no"`` or ``0`` must not silently mean something."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def as_seconds(timeout: float | None) -> float:
    """A timeout for trio's scopes: ``None`` (no limit) becomes ``math.inf``."""
    return math.inf if timeout is None else timeout


@functools.lru_cache(maxsize=1024)
def address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` names (an IPv4-mapped IPv6 address as its IPv4; a zone
    ``%eth0`` ignored), None if it is not an address. Remembered (a bounded cache of
    immutable answers): every PASV and data connection asks it of the same few hosts."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_ipv4(text: str) -> bool:
    """True when ``text`` is an IPv4 address, written as one."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
