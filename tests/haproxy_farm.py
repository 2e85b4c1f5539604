"""Two trio_ftp instances behind a real haproxy, and the clients that drive them (shared by
the haproxy tests: tests/test_haproxy.py without PROXY headers, tests/test_haproxy_proxy.py
with them)."""

from __future__ import annotations

import ftplib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import LOGIN, PASSWORD, Running, random_bytes, run_client
from haproxy_server import (
    Frontend,
    Haproxy,
    HaproxyStarter,
    SendProxy,
    Upstream,
    free_ports,
)
from processes import free_port_range

#: haproxy's address; the instances listen on 127.0.0.1.
BALANCER = "127.0.0.10"
INSTANCE = "127.0.0.1"
#: Passive ports per instance.
SLICE = 4


@dataclass
class Farm:
    """Two instances behind one haproxy."""

    proxy: Haproxy
    instances: list[Running]
    slices: list[range]
    port: int

    def ftp(self, *, source: str | None = None, cls: type[ftplib.FTP] = ftplib.FTP) -> Any:
        """A connected ftplib client of haproxy's control frontend (not logged in)."""
        client = cls(timeout=10, source_address=None if source is None else (source, 0))
        client.connect(BALANCER, self.port)
        return client

    def instance_of(self, data_port: int) -> int:
        """Which instance a passive port belongs to."""
        (index,) = [i for i, ports in enumerate(self.slices) if data_port in ports]
        return index

    @property
    def url(self) -> str:
        return f"ftp://{LOGIN}:{PASSWORD}@{BALANCER}:{self.port}/"


async def start_farm(
    start_server: Any,
    haproxy: HaproxyStarter,
    *,
    published: bool,
    checks: bool = False,
    send_proxy: SendProxy | None = None,
    data_send_proxy: SendProxy | None = None,
    **server_options: Any,
) -> Farm:
    """Two instances, each with its own passive slice, balanced round robin on BALANCER.

    ``send_proxy``: haproxy starts each control connection with a PROXY header of that
    version (health checks then send one too); ``data_send_proxy``: the same on the
    published data ports (``published`` only)."""
    hosts = (INSTANCE, BALANCER) if published else (INSTANCE,)
    ports = free_port_range(2 * SLICE, hosts)
    slices = [ports[:SLICE], ports[SLICE:]]
    instances = []
    for ports_of_instance in slices:
        instances.append(
            await start_server(
                data_ports=ports_of_instance,
                **{"passive_address": BALANCER if published else None, **server_options},
            )
        )
    names = ["a", "b"]
    (control,) = free_ports(1, BALANCER)
    servers = tuple(
        Upstream(name, INSTANCE, running.port, send_proxy=send_proxy, check=checks)
        for name, running in zip(names, instances, strict=True)
    )
    frontends = [Frontend("ftp", BALANCER, control, servers)]
    if published:
        frontends += [
            Frontend(
                f"data_{name}",
                BALANCER,
                s.start,
                (Upstream(name, INSTANCE, send_proxy=data_send_proxy),),
                s[-1],
            )
            for name, s in zip(names, slices, strict=True)
        ]
    return Farm(await haproxy(*frontends), instances, slices, control)


def pasv(client: ftplib.FTP) -> tuple[str, int]:
    """The raw 227 reply's address and port (ftplib's own PASV would ignore the address)."""
    return ftplib.parse227(client.sendcmd("PASV"))


def retr(client: ftplib.FTP, name: str) -> bytes:
    chunks: list[bytes] = []
    client.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks)


def curl_args(*args: str) -> list[str]:
    return ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", "20", *args]


def lftp_script(farm: Farm, *commands: str) -> list[str]:
    settings = ["set net:max-retries 1", "set net:timeout 10", "set cmd:fail-exit yes"]
    open_ = f"open -u {LOGIN},{PASSWORD} ftp://{BALANCER}:{farm.port}"
    return ["lftp", "-c", "; ".join([*settings, open_, *commands])]


async def curl_and_lftp_through(farm: Farm, root: Path, tmp_path: Path, *, epsv: bool) -> None:
    """curl lists, uploads and downloads, then lftp uploads, downloads and lists, all
    byte-exact; EPSV (both clients' default) only where the data ports are published on
    haproxy's address, PASV otherwise."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    data = random_bytes(500_000, 7)
    (root / "down.bin").write_bytes(data)
    (work / "up.bin").write_bytes(data[::-1])
    # curl (since 7.74) ignores the 227 address unless told otherwise, like ftplib
    passive = [] if epsv else ["--disable-epsv", "--no-ftp-skip-pasv-ip"]
    listing = await run_client(curl_args(*passive, "--list-only", farm.url), work, home)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == [b"down.bin"]
    upload = await run_client(curl_args(*passive, "-T", "up.bin", farm.url), work, home)
    assert upload.returncode == 0, upload.stderr
    assert (root / "up.bin").read_bytes() == data[::-1]
    download = await run_client(
        curl_args(*passive, "-o", "c.bin", farm.url + "down.bin"), work, home
    )
    assert download.returncode == 0, download.stderr
    assert (work / "c.bin").read_bytes() == data
    # lftp's fix-pasv-address replaces a 227 address it finds suspicious with the control's
    epsv_setting = (
        "set ftp:prefer-epsv yes" if epsv else "set ftp:prefer-epsv no; set ftp:fix-pasv-address no"
    )
    lftp = await run_client(
        lftp_script(
            farm, epsv_setting, "put up.bin -o l.bin", "get down.bin -o l-down.bin", "cls -1"
        ),
        work,
        home,
    )
    assert lftp.returncode == 0, lftp.stderr
    assert (root / "l.bin").read_bytes() == data[::-1]
    assert (work / "l-down.bin").read_bytes() == data
    assert lftp.stdout.split() == [b"down.bin", b"l.bin", b"up.bin"]


def receive_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
