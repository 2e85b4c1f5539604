"""trio_ftp behind a real haproxy (TCP mode, no PROXY headers yet): two instances balanced
round robin, real clients through it, and the two passive layouts of a deployment.

- "direct": data connections go straight to the instance that holds the session (the 227
  reply names the instance's own address and a port of its own ``data_ports`` slice);
- "published": each instance's slice is published on haproxy's address too (a port-range
  frontend forwarding each port to the same port of that instance), and the instance
  announces haproxy's address.

haproxy listens on 127.0.0.10 and the instances on 127.0.0.1, so a client that connects its
data connection to the wrong one of the two fails. Two baselines show what PROXY protocol is
for: behind haproxy an instance sees haproxy's address as every client's, in its per-IP limit
and in its data-peer check.
"""

from __future__ import annotations

import ftplib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from conftest import (
    LOGIN,
    PASSWORD,
    Running,
    client_env,
    code,
    in_thread,
    random_bytes,
    reply_of,
    run_client,
)
from haproxy_server import (
    Frontend,
    Haproxy,
    HaproxyConfig,
    HaproxyStarter,
    Upstream,
    check_config_file,
    free_port_range,
    free_ports,
    haproxy_fixture,  # noqa: F401 (the ``haproxy`` fixture)
)

from trio_ftp import Server

#: haproxy's address; the instances listen on 127.0.0.1.
BALANCER = "127.0.0.10"
INSTANCE = "127.0.0.1"
#: Passive ports per instance.
SLICE = 4
DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"


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
    **server_options: Any,
) -> Farm:
    """Two instances, each with its own passive slice, balanced round robin on BALANCER."""
    hosts = (INSTANCE, BALANCER) if published else (INSTANCE,)
    ports = free_port_range(2 * SLICE, hosts)
    slices = [ports[:SLICE], ports[SLICE:]]
    instances = []
    for ports_of_instance in slices:
        instances.append(
            await start_server(
                data_ports=ports_of_instance,
                passive_address=BALANCER if published else None,
                **server_options,
            )
        )
    names = ["a", "b"]
    (control,) = free_ports(1, BALANCER)
    servers = tuple(
        Upstream(name, INSTANCE, running.port, check=checks)
        for name, running in zip(names, instances)
    )
    frontends = [Frontend("ftp", BALANCER, control, servers)]
    if published:
        frontends += [
            Frontend(f"data_{name}", BALANCER, s.start, (Upstream(name, INSTANCE),), s[-1])
            for name, s in zip(names, slices)
        ]
    return Farm(await haproxy(*frontends), instances, slices, control)


def pasv(client: ftplib.FTP) -> tuple[str, int]:
    """The raw 227 reply's address and port (ftplib's own PASV would ignore the address)."""
    return ftplib.parse227(client.sendcmd("PASV"))


def retr(client: ftplib.FTP, name: str) -> bytes:
    chunks: list[bytes] = []
    client.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks)


# the harness ----------------------------------------------------------------------------------
def test_rendered_configuration_is_valid(tmp_path):
    """The rendered configuration has the lines a PROXY deployment needs (send-proxy-v2 with
    check-send-proxy, a port-range bind forwarding to the dialled port), and haproxy -c
    accepts it without a warning."""
    control = Frontend(
        "ftp",
        BALANCER,
        2121,
        (
            Upstream("a", INSTANCE, 2122, send_proxy="v2", check=True),
            Upstream("b", INSTANCE, 2123, send_proxy="v1"),
        ),
    )
    data = Frontend("data_a", BALANCER, 20000, (Upstream("a", INSTANCE),), 20003)
    text = HaproxyConfig((control, data), stats_port=9999).render()
    assert "server a 127.0.0.1:2122 send-proxy-v2 check inter 500ms" in text
    assert text.count("check-send-proxy") == 1
    assert "server b 127.0.0.1:2123 send-proxy\n" in text
    assert "bind 127.0.0.10:20000-20003\n" in text
    assert "server a 127.0.0.1\n" in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    assert "Configuration file is valid" in check_config_file(path)


def test_invalid_configuration_fails_with_haproxy_message(tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text("defaults\n    mode tcp\n    no-such-keyword 1\n")
    with pytest.raises(pytest.fail.Exception, match="no-such-keyword"):
        check_config_file(path)


def test_free_port_range_is_contiguous_and_bindable():
    ports = free_port_range(8, (INSTANCE, BALANCER))
    assert len(ports) == 8
    assert ports.step == 1


# the deployment examples ------------------------------------------------------------------------
def test_example_haproxy_cfg_is_valid():
    """examples/deploy/haproxy.cfg stays valid for haproxy -c, without a warning."""
    assert "Configuration file is valid" in check_config_file(DEPLOY / "haproxy.cfg")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_example_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify finds nothing to say about examples/deploy/trio-ftp.service."""
    unit = tmp_path / "trio-ftp.service"
    unit.write_text((DEPLOY / "trio-ftp.service").read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# direct data: the instance's own address and slice -------------------------------------------
async def test_direct_data_round_robin_ftplib(start_server, haproxy, root):
    """Two ftplib sessions through haproxy land on the two instances in turn (their 227
    replies name the instance's own address and a port of its own slice); each uploads
    through one instance and downloads byte-exact what the other uploaded (one shared root);
    each instance sees one session, from haproxy's address; the health checks (220, QUIT,
    221) pass against both."""
    farm = await start_farm(start_server, haproxy, published=False, checks=True)
    await farm.proxy.wait_checks_passed()
    payloads = [random_bytes(300_000, seed) for seed in (1, 2)]

    def client() -> tuple[list[tuple[str, int]], list[bytes], list[list[str]]]:
        sessions = [farm.ftp(), farm.ftp()]
        try:
            addresses = []
            for session, data, name in zip(sessions, payloads, ["up0.bin", "up1.bin"]):
                session.login(LOGIN, PASSWORD)
                addresses.append(pasv(session))
                session.trust_server_pasv_ipv4_address = True  # the instance's, not haproxy's
                session.storbinary(f"STOR {name}", _reader(data))
            crossed = [retr(sessions[0], "up1.bin"), retr(sessions[1], "up0.bin")]
            listings = [sorted(session.nlst()) for session in sessions]
            for session in sessions:
                session.quit()
            return addresses, crossed, listings
        finally:
            for session in sessions:
                session.close()

    addresses, crossed, listings = await in_thread(client)
    assert [host for host, _ in addresses] == [INSTANCE, INSTANCE]
    assert sorted(farm.instance_of(port) for _, port in addresses) == [0, 1]
    assert crossed == payloads[::-1]
    assert listings == [["up0.bin", "up1.bin"]] * 2
    assert (root / "up0.bin").read_bytes() == payloads[0]
    assert await farm.proxy.sessions("ftp") >= 2


def _reader(data: bytes) -> Any:
    import io

    return io.BytesIO(data)
