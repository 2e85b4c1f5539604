"""The whole scale-out path with the real programs: haproxy (``send-proxy-v2``) in front of
two trio_ftp instances that share their limits through a real ``redis-server``.

Clients dial haproxy on 127.0.0.10 from their own loopback addresses (127.0.0.2, 127.0.0.3);
haproxy reaches the instances on 127.0.0.1, the only sender they trust with a PROXY header.
Three layouts of the data connections:

- ``direct``: straight from the client to the instance holding the session (227 names the
  instance; ``data_peer_check="strict"`` checks the proxied client address);
- ``published``: through a haproxy frontend per instance slice, without headers
  (``data_peer_check="transport"``: the data connection comes from the balancer);
- ``published-proxy``: the same frontends with ``send-proxy-v2`` (``proxy_protocol_data``:
  the strict check sees the real client again).
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from conftest import (
    LOGIN,
    PASSWORD,
    Running,
    in_thread,
    lftp_tls_argv,
    random_bytes,
    reply_of,
    run_client,
)
from haproxy_farm import BALANCER, Farm, curl_and_lftp_through, curl_args, retr, start_farm
from haproxy_server import HaproxyStarter, SendProxy, haproxy_fixture  # noqa: F401 (the fixture)
from redis_server import patient_redis, running_redis

from trio_ftp import DIALLED

pytestmark = pytest.mark.slow

TWO, THREE, FOUR = "127.0.0.2", "127.0.0.3", "127.0.0.4"
#: The instances trust haproxy's connections, which come from 127.0.0.1.
TRUSTED = ["127.0.0.1/32"]
LAYOUTS = {
    "direct": {"published": False},
    "published": {"published": True, "data_peer_check": "transport"},
    "published-proxy": {
        "published": True,
        "data_send_proxy": "v2",
        "proxy_protocol_data": True,
    },
}


@contextlib.asynccontextmanager
async def proxied_farm(
    start_server: Callable[..., Awaitable[Running]],
    haproxy: HaproxyStarter,
    tmp_path: Path,
    *,
    layout: str = "direct",
    send_proxy: SendProxy | None = "v2",
    checks: bool = False,
    **options: Any,
) -> AsyncIterator[Farm]:
    """Two instances (PROXY protocol required from haproxy, limits in one redis-server, one
    RedisStore each, as two machines would have) behind haproxy with ``send-proxy-v2``. At
    the end the instances close, then their stores, then redis-server stops."""
    with running_redis(tmp_path) as redis:
        stores = [patient_redis(redis.url), patient_redis(redis.url)]
        store_of = iter(stores)

        async def start_instance(**kwargs: Any) -> Running:
            return await start_server(state_store=next(store_of), **kwargs)

        layout_options: dict[str, Any] = dict(LAYOUTS[layout])
        options.setdefault("proxy_protocol", "required")
        options.setdefault("proxy_protocol_from", TRUSTED)
        farm = await start_farm(
            start_instance,
            haproxy,
            send_proxy=send_proxy,
            checks=checks,
            **layout_options,
            **options,
        )
        try:
            yield farm
        finally:
            with trio.CancelScope(shield=True), trio.fail_after(15):
                for running in farm.instances:
                    await running.server.close()
                for store in stores:
                    await store.aclose()


def proxied_clients(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The client addresses the instances took from PROXY headers (their log lines)."""
    found = (_PROXIED.search(record.getMessage()) for record in caplog.records)
    return {match.group(1) for match in found if match}


_PROXIED = re.compile(r"PROXY v2 header: client ([0-9.]+):[0-9]+ dialled")


@pytest.mark.parametrize("layout", list(LAYOUTS))
async def test_clients_from_two_addresses_through_haproxy(
    start_server, haproxy, tmp_path, root, caplog, layout
):
    """ftplib from 127.0.0.2 and 127.0.0.3 through haproxy: a session on each instance,
    each seen as its real address (the PROXY v2 header), uploads and downloads byte-exact
    across the instances, data connections checked against the real client (or, published
    without headers, the balancer); haproxy's health checks (v2 LOCAL) pass."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    payloads = [random_bytes(300_000, seed) for seed in (21, 22)]
    async with proxied_farm(
        start_server, haproxy, tmp_path, layout=layout, wait_future_timeout=5
    ) as farm:

        def client() -> tuple[list[bytes], list[list[str]]]:
            sessions = [farm.ftp(source=TWO), farm.ftp(source=THREE)]
            try:
                for index, (session, data) in enumerate(zip(sessions, payloads, strict=True)):
                    session.login(LOGIN, PASSWORD)
                    session.trust_server_pasv_ipv4_address = layout == "direct"
                    session.storbinary(f"STOR up{index}.bin", io.BytesIO(data))
                crossed = [retr(sessions[0], "up1.bin"), retr(sessions[1], "up0.bin")]
                listings = [sorted(session.nlst()) for session in sessions]
                for session in sessions:
                    session.quit()
                return crossed, listings
            finally:
                for session in sessions:
                    session.close()

        crossed, listings = await in_thread(client)
        stats = await farm.proxy.stats()
    assert crossed == payloads[::-1]
    assert listings == [["up0.bin", "up1.bin"]] * 2
    assert proxied_clients(caplog) == {TWO, THREE}
    assert [int(stats[("ftp", name)]["stot"]) for name in "ab"] == [1, 1]
    if layout != "direct":
        assert [int(stats[(f"data_{name}", "FRONTEND")]["stot"]) for name in "ab"] == [3, 3]
    assert "dropped data connection" not in caplog.text


async def test_health_checks_send_local_headers_and_pass(start_server, haproxy, tmp_path, caplog):
    """haproxy's FTP health checks (220, QUIT, 221) through check-send-proxy arrive as v2
    LOCAL headers, which the instances accept in required mode."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    async with proxied_farm(start_server, haproxy, tmp_path, checks=True) as farm:
        await farm.proxy.wait_checks_passed()
    assert "PROXY v2 LOCAL header" in caplog.text


async def test_curl_and_lftp_through_haproxy_with_proxy_headers_on_data(
    start_server, haproxy, tmp_path, root
):
    """curl and lftp with their defaults (EPSV) through haproxy, PROXY v2 headers on the
    control and the data connections: every transfer byte-exact."""
    async with proxied_farm(start_server, haproxy, tmp_path, layout="published-proxy") as farm:
        await curl_and_lftp_through(farm, root, tmp_path, epsv=True)
        data_connections = [await farm.proxy.sessions(f"data_{name}") for name in "ab"]
    assert sum(data_connections) == 6


@pytest.fixture
def balancer_tls(tls_ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for the name clients dial (haproxy's address), and a client trusting it."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(BALANCER).configure_cert(server_context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.parametrize("layout", ["direct", "published-proxy"])
async def test_explicit_ftps_through_haproxy_with_proxy_headers(
    start_server, haproxy, tmp_path, root, caplog, balancer_tls, layout
):
    """AUTH TLS and PROT P from 127.0.0.3 through haproxy: the PROXY header comes before
    anything TLS, on the control connection (and on the data connections where haproxy
    sends one too, before the data TLS handshake); transfers byte-exact both ways."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    server_context, client_context = balancer_tls
    data = random_bytes(200_000, 23)
    (root / "down.bin").write_bytes(data)
    async with proxied_farm(
        start_server, haproxy, tmp_path, layout=layout, tls_context=server_context
    ) as farm:

        def client() -> list[bytes]:
            received = []
            for index in range(2):  # one session on each instance
                session = farm.ftp(source=THREE, cls=ftplib.FTP_TLS)
                session.context = client_context
                session.trust_server_pasv_ipv4_address = layout == "direct"
                try:
                    session.login(LOGIN, PASSWORD)
                    session.prot_p()
                    session.storbinary(f"STOR s{index}.bin", io.BytesIO(data[index:]))
                    received.append(retr(session, "down.bin"))
                    session.quit()
                finally:
                    session.close()
            return received

        received = await in_thread(client)
    assert received == [data, data]
    assert [(root / f"s{i}.bin").read_bytes() for i in (0, 1)] == [data, data[1:]]
    assert proxied_clients(caplog) == {THREE}


async def test_explicit_ftps_curl_and_lftp_through_haproxy_with_proxy_headers(
    start_server, haproxy, tmp_path, root, tls_ca
):
    """curl --ssl-reqd and lftp with ftp:ssl-force (both EPSV) through haproxy with PROXY
    v2 headers on the control and the data connections: every TLS transfer byte-exact."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(BALANCER).configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    data = random_bytes(300_000, 24)
    (root / "down.bin").write_bytes(data)
    (work / "up.bin").write_bytes(data[::-1])
    async with proxied_farm(
        start_server, haproxy, tmp_path, layout="published-proxy", tls_context=server_context
    ) as farm:
        tls_args = ["--ssl-reqd", "--cacert", str(ca_file)]
        curl_down = await run_client(
            curl_args(*tls_args, "-o", "c.bin", farm.url + "down.bin"), work, home
        )
        curl_up = await run_client(curl_args(*tls_args, "-T", "up.bin", farm.url), work, home)
        argv = lftp_tls_argv(
            ca_file,
            BALANCER,
            farm.port,
            "put up.bin -o l.bin",
            "get down.bin -o l-down.bin",
            "cls -1",
        )
        lftp = await run_client(argv, work, home)
    assert curl_down.returncode == 0, curl_down.stderr
    assert (work / "c.bin").read_bytes() == data
    assert curl_up.returncode == 0, curl_up.stderr
    assert (root / "up.bin").read_bytes() == data[::-1]
    assert lftp.returncode == 0, lftp.stderr
    assert (root / "l.bin").read_bytes() == data[::-1]
    assert (work / "l-down.bin").read_bytes() == data
    assert lftp.stdout.split() == [b"down.bin", b"l.bin", b"up.bin"]


async def test_per_ip_limit_counts_real_addresses_across_both_instances(
    start_server, haproxy, tmp_path
):
    """maximum_connections_per_ip=1 behind haproxy: 127.0.0.2's session on one instance
    makes the other instance refuse 127.0.0.2 too (the count is in Redis, by the address
    the PROXY header names); 127.0.0.3 and 127.0.0.4 are still welcome. Without PROXY
    protocol all of them would be haproxy's one address (see test_haproxy.py's baseline)."""
    async with proxied_farm(start_server, haproxy, tmp_path, maximum_connections_per_ip=1) as farm:

        def client() -> tuple[str, list[str], list[str]]:
            first = farm.ftp(source=TWO)  # instance a (round robin, one haproxy thread)
            try:
                refused = []
                for _ in range(2):  # instance b, then a
                    extra = ftplib.FTP(timeout=10, source_address=(TWO, 0))
                    try:
                        refused.append(reply_of(lambda c=extra: c.connect(BALANCER, farm.port)))
                    finally:
                        extra.close()
                others = []
                for source in (THREE, FOUR):
                    other = farm.ftp(source=source)
                    others.append(other.getwelcome())
                    other.quit()
                welcome = first.getwelcome()
                first.quit()
                return welcome, refused, others
            finally:
                first.close()

        welcome, refused, others = await in_thread(client)
        stats = await farm.proxy.stats()
    assert welcome.startswith("220")
    assert [reply[:3] for reply in refused] == ["421", "421"]
    assert all("your address" in reply for reply in refused)
    assert [reply[:3] for reply in others] == ["220", "220"]
    # both instances took part: the refusal on instance b came from the count in Redis
    assert [int(stats[("ftp", name)]["stot"]) for name in "ab"] == [3, 2]


async def test_login_failure_ban_follows_the_real_address_across_instances(
    start_server, haproxy, tmp_path
):
    """maximum_login_failures_per_ip=2: one failed login from 127.0.0.3 on each instance
    bans 127.0.0.3 on both (421 at the greeting), while 127.0.0.2 logs in."""
    async with proxied_farm(
        start_server, haproxy, tmp_path, maximum_login_failures_per_ip=2
    ) as farm:

        def client() -> tuple[list[str], str, str]:
            failures = []
            for _ in range(2):  # instance a, then b
                session = farm.ftp(source=THREE)
                try:
                    failures.append(reply_of(lambda s=session: s.login(LOGIN, "wrong")))
                finally:
                    session.close()
            banned = ftplib.FTP(timeout=10, source_address=(THREE, 0))
            try:
                ban = reply_of(lambda: banned.connect(BALANCER, farm.port))
            finally:
                banned.close()
            other = farm.ftp(source=TWO)
            try:
                login = reply_of(lambda: other.login(LOGIN, PASSWORD))
                other.quit()
            finally:
                other.close()
            return failures, ban, login

        failures, ban, login = await in_thread(client)
        stats = await farm.proxy.stats()
    assert [reply[:3] for reply in failures] == ["530", "530"]
    assert ban.startswith("421")
    assert "failed logins" in ban
    assert login.startswith("230")
    assert [int(stats[("ftp", name)]["stot"]) for name in "ab"] == [2, 2]


def greeting_outcome(farm: Farm) -> str:
    """Connect from 127.0.0.2 through haproxy: "greeted", or how the connection ended."""
    session = ftplib.FTP(timeout=10, source_address=(TWO, 0))
    try:
        session.connect(BALANCER, farm.port)
    except (EOFError, OSError) as exc:
        return type(exc).__name__
    finally:
        session.close()
    return "greeted"


async def test_untrusted_header_is_refused(start_server, haproxy, tmp_path, caplog):
    """Instances that trust another balancer (127.0.0.99) close haproxy's connections,
    header and all, without a greeting, and say why in the log."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    async with proxied_farm(
        start_server, haproxy, tmp_path, proxy_protocol_from=["127.0.0.99/32"]
    ) as farm:
        outcome = await in_thread(lambda: greeting_outcome(farm))
    assert outcome in ("EOFError", "ConnectionResetError")
    assert "127.0.0.1 is not in proxy_protocol_from" in caplog.text


async def test_missing_header_in_required_mode_is_refused(start_server, haproxy, tmp_path, caplog):
    """haproxy without send-proxy in front of instances that require a header: each
    connection is closed once the header's time is up, without a greeting."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    async with proxied_farm(
        start_server, haproxy, tmp_path, send_proxy=None, proxy_protocol_timeout=0.3
    ) as farm:
        outcome = await in_thread(lambda: greeting_outcome(farm))
    assert outcome in ("EOFError", "ConnectionResetError")
    assert "no whole PROXY header within 0.3 s" in caplog.text


async def test_227_announces_the_address_the_client_dialled(start_server, haproxy, tmp_path):
    """passive_address=DIALLED behind haproxy: the 227 names haproxy's address, the PROXY
    header's destination, and the published data port leads to the session's instance."""
    async with proxied_farm(
        start_server, haproxy, tmp_path, layout="published-proxy", passive_address=DIALLED
    ) as farm:

        def client() -> tuple[tuple[str, int], bytes]:
            session = farm.ftp(source=TWO)
            try:
                session.login(LOGIN, PASSWORD)
                announced = ftplib.parse227(session.sendcmd("PASV"))
                session.storbinary("STOR d.bin", io.BytesIO(b"dialled"))
                back = retr(session, "d.bin")
                session.quit()
            finally:
                session.close()
            return announced, back

        (host, _), back = await in_thread(client)
    assert host == BALANCER
    assert back == b"dialled"
