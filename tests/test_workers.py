"""Workers without worker processes: the passive-port split, SO_REUSEPORT binding, and the
command line's start-up errors (refused before any process starts)."""

from __future__ import annotations

import socket

import pytest
import trio

from trio_ftp import Server
from trio_ftp.__main__ import main
from trio_ftp.reuseport import (
    ReusePortUnavailable,
    bind_reuse_port,
    open_reuse_port_listeners,
    reserve_port,
)
from trio_ftp.workers import serve_workers, split_ports


@pytest.mark.parametrize(
    ("count", "total"), [(1, 1), (2, 2), (2, 10), (3, 10), (4, 7), (8, 100), (5, 5)]
)
def test_split_ports_is_contiguous_near_equal_and_complete(count, total):
    ports = range(50000, 50000 + total)
    slices = split_ports(ports, count)
    assert len(slices) == count
    assert [port for part in slices for port in part] == list(ports)  # each once, in order
    sizes = [len(part) for part in slices]
    assert max(sizes) - min(sizes) <= 1
    assert min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra ports go to the first slices
    for part in slices:
        assert list(part) == list(range(part[0], part[0] + len(part)))


def test_split_ports_refuses_fewer_ports_than_workers():
    with pytest.raises(ValueError, match=r"2 data port\(s\) for 3 workers"):
        split_ports([50000, 50001], 3)


def test_too_few_data_ports_for_the_workers_is_exit_status_2(tmp_path, capsys):
    argv = [str(tmp_path), "--port", "0", "--workers", "3", "--data-ports", "50000-50001"]
    assert main(argv) == 2
    assert "2 data port(s) for 3 workers" in capsys.readouterr().err


def test_serve_workers_refuses_bad_arguments_before_starting_anything():
    with pytest.raises(ValueError, match="at least one worker"):
        serve_workers(Server, "127.0.0.1", 0, workers=0)
    with pytest.raises(ValueError, match="1 data port"):
        serve_workers(Server, "127.0.0.1", 0, workers=2, data_ports=[50000])


def test_without_so_reuseport_binding_says_so(monkeypatch):
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(ReusePortUnavailable, match="SO_REUSEPORT"):
        bind_reuse_port(socket.AF_INET, ("127.0.0.1", 0))


def test_a_refused_so_reuseport_says_so(monkeypatch):
    """The kernel refusing the option (here: an option number it does not know) counts as
    unavailable too."""
    monkeypatch.setattr(socket, "SO_REUSEPORT", 0x7FFF, raising=False)
    with pytest.raises(ReusePortUnavailable, match="setsockopt"):
        bind_reuse_port(socket.AF_INET, ("127.0.0.1", 0))


def test_workers_without_so_reuseport_is_exit_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    assert main([str(tmp_path), "--port", "0", "--workers", "2"]) == 2
    assert "--workers 2 needs SO_REUSEPORT" in capsys.readouterr().err


def test_workers_auto_is_the_cpu_count(tmp_path, monkeypatch):
    from trio_ftp.__main__ import parse_args

    monkeypatch.setattr("os.cpu_count", lambda: 7)
    assert parse_args([str(tmp_path), "--workers", "auto"]).workers == 7
    assert parse_args([str(tmp_path)]).workers == 1


def test_workers_with_self_signed_tls_is_refused(tmp_path, capsys):
    argv = [str(tmp_path), "--port", "0", "--workers", "2", "--tls-self-signed"]
    assert main(argv) == 2
    assert "one certificate per worker" in capsys.readouterr().err


async def test_a_reserved_port_takes_no_connections():
    """The supervisor's socket (bound, not listening) shares the port but every connection
    goes to the listening socket, and none is accepted once that one is gone."""
    (reserved,) = reserve_port("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        (listener,) = await open_reuse_port_listeners("127.0.0.1", port)
        for _ in range(50):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(5):
                accepted = await listener.accept()
            await accepted.aclose()
            await client.aclose()
        await listener.aclose()
        with socket.socket() as late, pytest.raises(ConnectionRefusedError):
            late.connect(("127.0.0.1", port))
    finally:
        reserved.close()


async def test_start_with_reuse_port_shares_the_port_between_servers():
    first, second, third = Server(), Server(), Server()
    await first.start("127.0.0.1", 0, reuse_port=True)
    port = first.address[1]
    await second.start("127.0.0.1", port, reuse_port=True)
    assert second.address == first.address
    with pytest.raises(OSError, match="in use"):  # without the option the port is taken
        await third.start("127.0.0.1", port)
    for server in (first, second, third):
        await server.close()


def test_a_port_held_without_so_reuseport_cannot_be_reserved():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError, match="in use") as caught:
            reserve_port("127.0.0.1", other.getsockname()[1])
        assert not isinstance(caught.value, ReusePortUnavailable)


def _both_loopbacks(port: int) -> list[tuple[object, ...]]:
    """What getaddrinfo gives for a host with an IPv4 and an IPv6 address (both loopback)."""
    return [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),  # once is enough
    ]


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def test_every_address_of_the_host_shares_one_port(monkeypatch):
    """A host with several addresses (here 127.0.0.1 and ::1): port 0 becomes the first
    address's port for all of them, the IPv6 socket is IPv6-only, duplicates count once;
    the same for the reserved (non-listening) sockets and for the listeners."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: _both_loopbacks(port))

    async def both(host, port, **kw):
        return _both_loopbacks(port)

    monkeypatch.setattr(trio.socket, "getaddrinfo", both)
    reserved = reserve_port("both-loopbacks", 0)
    try:
        assert [sock.family for sock in reserved] == [socket.AF_INET, socket.AF_INET6]
        port = reserved[0].getsockname()[1]
        assert reserved[1].getsockname()[1] == port
        assert reserved[1].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        listeners = await open_reuse_port_listeners("both-loopbacks", port)
        try:
            assert [listener.socket.getsockname()[1] for listener in listeners] == [port, port]
        finally:
            for listener in listeners:
                await listener.aclose()
    finally:
        for sock in reserved:
            sock.close()


async def test_a_failure_on_a_later_address_closes_the_earlier_sockets(monkeypatch):
    """::1's port is held by a program without SO_REUSEPORT: the 127.0.0.1 socket already
    bound (reserved, or listening) is closed again before the error goes up."""
    for _ in range(20):  # a port free on 127.0.0.1 (other tests run in parallel)
        holder = socket.socket(socket.AF_INET6)
        holder.bind(("::1", 0))
        port = holder.getsockname()[1]
        if _bindable(socket.AF_INET, "127.0.0.1", port):
            break
        holder.close()
    else:
        pytest.fail("no port free on both loopback addresses in 20 tries")
    with holder:
        holder.listen()
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: _both_loopbacks(port))

        async def both(host, port, **kw):
            return _both_loopbacks(port)

        monkeypatch.setattr(trio.socket, "getaddrinfo", both)
        with pytest.raises(OSError, match="in use"):
            reserve_port("both-loopbacks", port)
        assert _bindable(socket.AF_INET, "127.0.0.1", port)
        with pytest.raises(OSError, match="in use"):
            await open_reuse_port_listeners("both-loopbacks", port)
        assert _bindable(socket.AF_INET, "127.0.0.1", port)
