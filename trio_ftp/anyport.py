"""Passive ports chosen by the server when ``data_ports`` is not set, instead of ``bind(0)``.

Why: every download leaves its data connection in TIME_WAIT on the server's side for 60 s,
on the port the kernel chose for the listener. After a mirror of a few thousand small files
there are 10,000-20,000 of them, and the kernel's search for a free port (``bind`` to port
0) walks past each occupied one. Measured on the 2-core VM at 15,000-20,000 TIME_WAIT
sockets: 0.4-3 ms of kernel CPU per ``bind(0)``, more than all the rest of a small
download, against 11 us for a bind to a port chosen here. vsftpd chooses its passive ports
this way too.

How: a few random ports of the kernel's ephemeral range (``ip_local_port_range``, skipping
``ip_local_reserved_ports``), each bound with ``SO_REUSEADDR`` so that a port whose last
data connection is in TIME_WAIT is taken at once; a port bound by anyone else fails the
bind and the next is tried. After :data:`RANDOM_ATTEMPTS` misses, port 0 without
``SO_REUSEADDR``: the kernel's own search, which always finds a port if one is free.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RANDOM_ATTEMPTS", "AnyPort", "parse_reserved"]

#: Random ports tried before falling back to ``bind(0)``.
RANDOM_ATTEMPTS = 8
#: Used where ``ip_local_port_range`` cannot be read (not Linux): IANA's dynamic ports.
FALLBACK_RANGE = (49152, 65535)
_PROC = Path("/proc/sys/net/ipv4")


def parse_reserved(text: str) -> frozenset[int]:
    """The ports of an ``ip_local_reserved_ports`` value (``"8080,9000-9010"``); what does
    not parse is ignored."""
    ports: set[int] = set()
    for item in text.replace("\n", ",").split(","):
        low, _, high = item.strip().partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            first, last = int(low), int(high or low)
            if 0 < first <= last < 65536:
                ports.update(range(first, last + 1))
    return frozenset(ports)


def _read(name: str) -> str | None:
    try:
        return (_PROC / name).read_text()
    except OSError:
        return None


def _ephemeral_range(text: str | None) -> tuple[int, int]:
    words = (text or "").split()
    if len(words) == 2 and all(word.isdigit() for word in words):
        low, high = int(words[0]), int(words[1])
        if 0 < low <= high < 65536:
            return low, high
    return FALLBACK_RANGE


class AnyPort:
    """The candidate ports of one passive bind when ``data_ports`` is unset."""

    def __init__(
        self,
        low: int,
        high: int,
        reserved: frozenset[int] = frozenset(),
        chooser: random.Random | None = None,
    ) -> None:
        self.low, self.high, self.reserved = low, high, reserved
        # Not predictable from one PASV reply to the next (as the kernel's choice is not).
        self._choose = chooser or random.SystemRandom()

    @classmethod
    def from_kernel(cls) -> AnyPort:
        """The kernel's ephemeral range and reserved ports (read once, at server start)."""
        low, high = _ephemeral_range(_read("ip_local_port_range"))
        return cls(low, high, parse_reserved(_read("ip_local_reserved_ports") or ""))

    def candidates(self) -> Iterator[int]:
        """:data:`RANDOM_ATTEMPTS` random ports (reserved ones skipped), then 0."""
        for _ in range(RANDOM_ATTEMPTS):
            port = self._choose.randint(self.low, self.high)
            if port not in self.reserved:
                yield port
        yield 0
