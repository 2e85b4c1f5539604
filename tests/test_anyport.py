"""Passive ports chosen by the server (``trio_ftp.anyport``) and their rare paths: a taken
port, a port in TIME_WAIT, every random try failing, reserved ports, unreadable sysctls."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import trio

from trio_ftp import anyport
from trio_ftp.anyport import RANDOM_ATTEMPTS, AnyPort, parse_reserved
from trio_ftp.datachannel import PassiveListener, PortPool


def test_reserved_ports_parse_like_the_sysctl() -> None:
    assert parse_reserved("8080,9000-9002\n") == {8080, 9000, 9001, 9002}
    assert parse_reserved("") == frozenset()
    assert parse_reserved("x,70000,5-3,-,12") == {12}  # what does not parse is ignored


def test_the_range_is_the_kernels_or_the_iana_one(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ip_local_port_range").write_text("40000\t40009\n")
    (tmp_path / "ip_local_reserved_ports").write_text("40001-40008\n")
    monkeypatch.setattr(anyport, "_PROC", tmp_path)
    chosen = AnyPort.from_kernel()
    assert (chosen.low, chosen.high) == (40000, 40009)
    assert set(chosen.candidates()) <= {40000, 40009, 0}

    (tmp_path / "ip_local_port_range").write_text("nonsense\n")
    (tmp_path / "ip_local_reserved_ports").unlink()
    chosen = AnyPort.from_kernel()
    assert (chosen.low, chosen.high) == anyport.FALLBACK_RANGE
    assert chosen.reserved == frozenset()


def test_this_machines_range_is_read() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    chosen = AnyPort.from_kernel()
    assert (chosen.low, chosen.high) == (low, high)


def test_candidates_are_random_ports_of_the_range_then_zero() -> None:
    candidates = list(AnyPort(30000, 30999, chooser=random.Random(1)).candidates())
    assert len(candidates) == RANDOM_ATTEMPTS + 1
    assert candidates[-1] == 0
    assert all(30000 <= port <= 30999 for port in candidates[:-1])
    assert len(set(candidates[:-1])) > 1
    # Every port reserved: only the kernel's choice is left.
    assert list(AnyPort(30000, 30001, frozenset({30000, 30001})).candidates()) == [0]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _reuse_addr(listener: PassiveListener) -> int:
    return int(listener.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))


async def test_a_chosen_port_is_bound_with_reuse_addr() -> None:
    port = _free_port()
    pool = PortPool(None, AnyPort(port, port))
    listener = PassiveListener.bind("127.0.0.1", pool)
    try:
        assert listener.port == port
        assert _reuse_addr(listener)
        assert pool.in_use == 1
    finally:
        listener.close()
    assert pool.in_use == 0


async def test_a_taken_port_falls_back_to_the_kernels_choice_without_reuse_addr() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        pool = PortPool(None, AnyPort(port, port))  # every random try hits the taken port
        listener = PassiveListener.bind("127.0.0.1", pool)
        try:
            assert listener.port != port
            assert not _reuse_addr(listener)  # SO_REUSEADDR slows the kernel's search
            assert pool.in_use == 1
        finally:
            listener.close()
    assert pool.in_use == 0


async def test_a_port_in_time_wait_is_taken_again_at_once() -> None:
    """The server closes a download's data connection first, so its port sits in
    TIME_WAIT; the next PASV on that port must still bind (SO_REUSEADDR)."""
    port = _free_port()
    pool = PortPool(None, AnyPort(port, port))
    listener = PassiveListener.bind("127.0.0.1", pool)
    client = trio.socket.socket()
    with client:
        await client.connect(("127.0.0.1", port))
        accepted, _ = await listener.socket.accept()
        listener.close()
        accepted.close()  # the server's side closes first: TIME_WAIT here
        assert await client.recv(1) == b""
    again = PassiveListener.bind("127.0.0.1", pool)
    try:
        assert again.port == port
    finally:
        again.close()


async def test_a_limited_pool_never_uses_random_ports() -> None:
    port = _free_port()
    pool = PortPool([port], AnyPort(1, 1))  # would fail: port 1 is privileged
    listener = PassiveListener.bind("127.0.0.1", pool)
    try:
        assert listener.port == port
    finally:
        listener.close()


async def test_ipv6_binds_a_chosen_port() -> None:
    port = _free_port("::1")
    listener = PassiveListener.bind("::1", PortPool(None, AnyPort(port, port)))
    try:
        assert listener.socket.family == socket.AF_INET6
        assert listener.port == port
    finally:
        listener.close()
