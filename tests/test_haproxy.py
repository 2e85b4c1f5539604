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
import io
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme
from conftest import (
    LOGIN,
    PASSWORD,
    code,
    in_thread,
    random_bytes,
    reply_of,
    run_client,
)
from haproxy_farm import (
    BALANCER,
    INSTANCE,
    curl_and_lftp_through,
    curl_args,
    pasv,
    receive_all,
    retr,
    start_farm,
)
from haproxy_server import (
    Frontend,
    HaproxyConfig,
    Upstream,
    check_config_file,
    haproxy_fixture,  # noqa: F401 (the ``haproxy`` fixture)
)
from processes import free_port_range


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


DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"


def test_example_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify finds nothing to say about examples/deploy/trio-ftp.service
    (Debian package systemd; .ci/run installs it)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd)")
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
            for index, (session, data) in enumerate(zip(sessions, payloads, strict=True)):
                session.login(LOGIN, PASSWORD)
                addresses.append(pasv(session))
                session.trust_server_pasv_ipv4_address = True  # the instance's, not haproxy's
                session.storbinary(f"STOR up{index}.bin", io.BytesIO(data))
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


async def test_direct_data_curl_and_lftp(start_server, haproxy, root, tmp_path):
    """curl and lftp through haproxy, data straight to the instances (PASV: with EPSV a
    client would dial haproxy's address, where no data port is published)."""
    farm = await start_farm(start_server, haproxy, published=False)
    await curl_and_lftp_through(farm, root, tmp_path, epsv=False)
    assert await farm.proxy.sessions("ftp") == 4  # curl 3, lftp 1


# published data: each instance's slice on haproxy's address --------------------------------
async def test_published_data_ftplib_pasv_and_epsv(start_server, haproxy, root):
    """ftplib with its defaults (which ignore the 227 address) and raw EPSV both reach the
    right instance through haproxy's data frontends: the 227 names haproxy, each session's
    ports come from its own instance's slice, every byte arrives, and haproxy counted the
    data connections of each instance on that instance's frontend."""
    farm = await start_farm(start_server, haproxy, published=True)
    data = random_bytes(400_000, 3)
    (root / "down.bin").write_bytes(data)

    def client() -> tuple[list[tuple[str, int]], list[bytes], list[int]]:
        sessions = [farm.ftp(), farm.ftp()]
        try:
            announced, received, epsv_ports = [], [], []
            for index, session in enumerate(sessions):
                session.login(LOGIN, PASSWORD)
                announced.append(pasv(session))
                session.storbinary(f"STOR up{index}.bin", io.BytesIO(data[index:]))
                received.append(retr(session, "down.bin"))
                epsv_ports.append(int(session.sendcmd("EPSV").split("|")[3]))
                with socket.create_connection((BALANCER, epsv_ports[-1]), timeout=10) as conn:
                    session.sendcmd("TYPE I")
                    session.putcmd("RETR down.bin")
                    assert session.getresp().startswith("150")
                    received.append(receive_all(conn))
                assert session.getresp().startswith("226")
                session.quit()
            return announced, received, epsv_ports
        finally:
            for session in sessions:
                session.close()

    announced, received, epsv_ports = await in_thread(client)
    assert [host for host, _ in announced] == [BALANCER, BALANCER]
    instances = [farm.instance_of(port) for _, port in announced]
    assert sorted(instances) == [0, 1]
    assert [farm.instance_of(port) for port in epsv_ports] == instances
    assert received == [data] * 4
    assert [(root / f"up{i}.bin").read_bytes() for i in (0, 1)] == [data, data[1:]]
    # per session: the 227 listener (dialled by nobody), STOR, RETR, EPSV RETR
    assert [await farm.proxy.sessions(f"data_{name}") for name in "ab"] == [3, 3]


async def test_published_data_curl_and_lftp(start_server, haproxy, root, tmp_path):
    """curl and lftp with their defaults (EPSV first) through haproxy, data through the
    published slices."""
    farm = await start_farm(start_server, haproxy, published=True)
    await curl_and_lftp_through(farm, root, tmp_path, epsv=True)
    assert sum([await farm.proxy.sessions(f"data_{name}") for name in "ab"]) == 6


# explicit FTPS: TLS end to end, haproxy in TCP mode -------------------------------------------
@pytest.fixture
def balancer_tls(tls_ca: trustme.CA, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    """A server context whose certificate names haproxy's address (the one clients dial and
    check), and a client context and CA file trusting it."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(BALANCER).configure_cert(server_context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    return server_context, client_context, ca_file


@pytest.mark.parametrize("published", [False, True], ids=["direct", "published"])
async def test_explicit_ftps_through_haproxy(start_server, haproxy, root, balancer_tls, published):
    """AUTH TLS and PROT P through haproxy: both instances' certificates verify against the
    name the client dialled, and protected transfers are byte-exact both ways."""
    server_context, client_context, _ = balancer_tls
    farm = await start_farm(start_server, haproxy, published=published, tls_context=server_context)
    data = random_bytes(300_000, 11)
    (root / "down.bin").write_bytes(data)

    def client() -> tuple[list[bytes], list[str]]:
        received, versions = [], []
        for index in range(2):  # one session on each instance
            session = farm.ftp(cls=ftplib.FTP_TLS)
            session.context = client_context
            session.trust_server_pasv_ipv4_address = not published
            try:
                session.login(LOGIN, PASSWORD)
                session.prot_p()
                versions.append(session.sock.version())
                session.storbinary(f"STOR s{index}.bin", io.BytesIO(data[index:]))
                received.append(retr(session, "down.bin"))
                session.quit()
            finally:
                session.close()
        return received, versions

    received, versions = await in_thread(client)
    assert received == [data, data]
    assert all(version and version.startswith("TLSv1.") for version in versions)
    assert [(root / f"s{i}.bin").read_bytes() for i in (0, 1)] == [data, data[1:]]


async def test_explicit_ftps_curl_through_haproxy(
    start_server, haproxy, root, tmp_path, balancer_tls
):
    """curl --ssl-reqd (EPSV, published data ports) downloads and uploads byte-exact."""
    server_context, _, ca_file = balancer_tls
    farm = await start_farm(start_server, haproxy, published=True, tls_context=server_context)
    data = random_bytes(300_000, 13)
    (root / "down.bin").write_bytes(data)
    (tmp_path / "up.bin").write_bytes(data[::-1])
    tls_args = ["--ssl-reqd", "--cacert", str(ca_file)]
    home = tmp_path / "home"
    download = await run_client(
        curl_args(*tls_args, "-o", "c.bin", farm.url + "down.bin"), tmp_path, home
    )
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "c.bin").read_bytes() == data
    upload = await run_client(curl_args(*tls_args, "-T", "up.bin", farm.url), tmp_path, home)
    assert upload.returncode == 0, upload.stderr
    assert (root / "up.bin").read_bytes() == data[::-1]


# baselines: what an instance sees behind haproxy without PROXY protocol -----------------------
async def test_per_ip_limit_counts_haproxy_address(start_server, haproxy):
    """Baseline (what PROXY protocol fixes): with maximum_connections_per_ip=1, clients from
    127.0.0.2 and 127.0.0.3 take one session on each instance, and a third client from
    127.0.0.4, an address no session has, is refused 421: each instance counted haproxy's
    address for all of them. The same instance, dialled directly from 127.0.0.4, admits it."""
    farm = await start_farm(start_server, haproxy, published=False, maximum_connections_per_ip=1)

    def client() -> tuple[list[str], str, str]:
        held = [farm.ftp(source="127.0.0.2"), farm.ftp(source="127.0.0.3")]
        try:
            welcomes = [session.welcome for session in held]
            refused = ftplib.FTP(timeout=10, source_address=("127.0.0.4", 0))
            try:
                third = reply_of(lambda: refused.connect(BALANCER, farm.port))
            finally:
                refused.close()
            direct = ftplib.FTP(timeout=10, source_address=("127.0.0.4", 0))
            try:
                direct_welcome = direct.connect(INSTANCE, farm.instances[0].port)
                direct.quit()
            finally:
                direct.close()
            return welcomes, third, direct_welcome
        finally:
            for session in held:
                session.close()

    welcomes, third, direct_welcome = await in_thread(client)
    assert [code(welcome) for welcome in welcomes] == ["220", "220"]
    assert code(third) == "421"
    assert code(direct_welcome) == "220"


async def test_direct_data_from_client_address_is_dropped(start_server, haproxy):
    """Baseline (what PROXY protocol and data_peer_check fix): a client on 127.0.0.2 whose
    control connection came through haproxy (so the instance's control peer is haproxy's
    127.0.0.1) opens its data connection straight to the instance from 127.0.0.2; the
    instance drops it as not the control peer, and the transfer fails 425."""
    farm = await start_farm(start_server, haproxy, published=False, wait_future_timeout=0.2)

    def client() -> str:
        session = farm.ftp(source="127.0.0.2")
        try:
            session.login(LOGIN, PASSWORD)
            session.trust_server_pasv_ipv4_address = True
            reply = reply_of(lambda: session.nlst())
            session.quit()
            return reply
        finally:
            session.close()

    assert code(await in_thread(client)) == "425"
