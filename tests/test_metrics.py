"""Prometheus metrics, health and readiness, and the live sessions: counted from real
sessions, scraped over HTTP with curl and parsed with prometheus_client's own parser."""

from __future__ import annotations

import ftplib
import io
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running, in_thread, run_client
from processes import free_port_range
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_cli import serving

from trio_ftp.opsendpoint import OpsEndpoint, probe_ftp


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_metrics_move_with_real_sessions(start_server) -> None:
    registry = CollectorRegistry()
    running: Running = await start_server(login_failure_delay=0)
    metrics = running.server.enable_metrics(registry)
    assert running.server.enable_metrics(registry) is metrics  # once per server
    (running.root / "f.bin").write_bytes(b"x" * 5000)

    def run() -> None:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            with pytest.raises(ftplib.error_perm):
                ftp.login(LOGIN, "wrong")
            ftp.login(LOGIN, PASSWORD)
            ftp.retrbinary("RETR f.bin", lambda _: None)
            ftp.storbinary("STOR g.bin", io.BytesIO(b"y" * 300))
            with pytest.raises(ftplib.error_perm):
                ftp.sendcmd("XYZZY")

    await in_thread(run)
    with trio.fail_after(5):
        while value(registry, "trio_ftp_sessions_active") != 0:  # noqa: ASYNC110
            await trio.sleep(0.01)  # the session's end is not an event
    assert value(registry, "trio_ftp_sessions_total") == 1
    assert value(registry, "trio_ftp_logins_total", outcome="success") == 1
    assert value(registry, "trio_ftp_logins_total", outcome="failure") == 1
    assert value(registry, "trio_ftp_commands_total", verb="RETR") == 1
    assert value(registry, "trio_ftp_commands_total", verb="other") == 1  # XYZZY
    assert value(registry, "trio_ftp_replies_total", **{"class": "5xx"}) == 2
    assert (
        value(registry, "trio_ftp_transfers_total", direction="download", outcome="complete") == 1
    )
    assert value(registry, "trio_ftp_transfer_bytes_total", direction="download") == 5000
    assert value(registry, "trio_ftp_transfer_bytes_total", direction="upload") == 300
    assert value(registry, "trio_ftp_transfer_duration_seconds_count", direction="upload") == 1
    assert value(registry, "trio_ftp_data_ports_in_use") == 0


async def test_ports_refusals_and_tls_are_counted(start_server, tls) -> None:
    registry = CollectorRegistry()
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = await start_server(
        data_ports=range(port, port + 1),
        maximum_connections_per_ip=2,
        tls_context=tls.server_context,
    )
    running.server.enable_metrics(registry)

    def run() -> None:
        first = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
        second = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
        with first, second:
            first.connect(running.host, running.port)
            first.auth()
            first.login(LOGIN, PASSWORD)
            first.sendcmd("PASV")  # the only data port
            assert value(registry, "trio_ftp_data_ports_in_use") == 1
            second.connect(running.host, running.port)
            second.auth()
            second.login(LOGIN, PASSWORD)
            with pytest.raises(ftplib.error_temp):
                second.sendcmd("PASV")
            third = ftplib.FTP(timeout=10)
            with pytest.raises(ftplib.error_temp):
                third.connect(running.host, running.port)
            third.close()

    await in_thread(run)
    assert value(registry, "trio_ftp_data_ports_exhausted_total") == 1
    assert value(registry, "trio_ftp_refusals_total", reason="limit") == 1
    assert value(registry, "trio_ftp_tls_handshakes_total", channel="control", result="ok") == 2


async def test_health_ready_and_sessions_over_http(start_server) -> None:
    running = await start_server()
    endpoint = OpsEndpoint(running.server, "127.0.0.1", 0)
    endpoint.start()
    base = f"http://127.0.0.1:{endpoint.address[1]}"

    def get(path: str, method: str = "GET") -> tuple[int, str]:
        request = urllib.request.Request(base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        ftp = await in_thread(running.ftp)
        try:
            await in_thread(ftp.sendcmd, "NOOP")
            assert await in_thread(get, "/health") == (200, "ok\n")
            assert await in_thread(get, "/ready") == (200, "ready\n")
            status, body = await in_thread(get, "/sessions")
            assert status == 200
            [session] = [s for s in json.loads(body) if s["user"] == LOGIN]
            assert session["command"] == "NOOP"
            assert session["client"].startswith("127.0.0.1:")
            assert await in_thread(get, "/sessions/999999/end", "POST") == (
                404,
                "no such session\n",
            )
            assert await in_thread(get, f"/sessions/{session['id']}/end", "POST") == (
                200,
                "ended\n",
            )
            with pytest.raises((EOFError, ConnectionError, ftplib.error_temp)):
                await in_thread(ftp.sendcmd, "NOOP")
            assert await in_thread(get, "/nothing") == (404, "not found\n")
        finally:
            ftp.close()
        await running.server.close()
        assert (await in_thread(get, "/ready"))[0] == 503
        assert (await in_thread(get, "/health"))[0] == 503
    finally:
        endpoint.stop()


def test_the_ftp_probe_says_what_is_wrong(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert "ConnectionRefusedError" in (probe_ftp("127.0.0.1", port, timeout=2) or "")


@pytest.mark.slow
async def test_the_command_line_serves_metrics_scraped_by_curl(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(10_000))
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    args = ["--root", str(root), "--user", f"{LOGIN}:{PASSWORD}"]
    args += ["--metrics-address", f"127.0.0.1:{metrics_port}"]
    async with serving(*args) as (port, _):

        async def scrape() -> dict[str, float]:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            result = await run_client(
                ["curl", "-sS", "--noproxy", "*", url], tmp_path, tmp_path / "h"
            )
            assert result.returncode == 0, result.stderr
            samples = {}
            for family in text_string_to_metric_families(result.stdout.decode()):
                for sample in family.samples:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    samples[f"{sample.name}{{{labels}}}"] = sample.value
            return samples

        before = await scrape()

        def download() -> None:
            with ftplib.FTP(timeout=10) as ftp:
                ftp.connect("127.0.0.1", port)
                ftp.login(LOGIN, PASSWORD)
                ftp.retrbinary("RETR f.bin", lambda _: None)

        await in_thread(download)
        await in_thread(download)
        after = await scrape()
        health = await run_client(
            ["curl", "-sS", "--noproxy", "*", f"http://127.0.0.1:{metrics_port}/health"],
            tmp_path,
            tmp_path / "h",
        )
    key = "trio_ftp_transfers_total{direction=download,outcome=complete}"
    assert after[key] - before.get(key, 0) == 2
    assert after["trio_ftp_transfer_bytes_total{direction=download}"] >= 20_000
    assert after["trio_ftp_sessions_total{}"] - before["trio_ftp_sessions_total{}"] >= 2
    assert health.stdout == b"ok\n"


@pytest.mark.slow
async def test_every_worker_serves_its_own_endpoint(tmp_path: Path) -> None:
    """With ``--workers 2`` worker N serves metrics and health on PORT+N."""
    # Two ports below the ephemeral range: PORT+1 from bind(0) could be a client's port.
    metrics_port = free_port_range(2).start
    args = ["--root", str(tmp_path), "--workers", "2"]
    args += ["--metrics-address", f"127.0.0.1:{metrics_port}"]
    async with serving(*args):

        def health(port: int) -> tuple[int, str]:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.status, reply.read().decode()

        for port in (metrics_port, metrics_port + 1):
            assert await in_thread(health, port) == (200, "ok\n")


def test_refusals_tell_a_ban_from_a_limit() -> None:
    from trio_ftp.events import ServerEvent
    from trio_ftp.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(
        ["RETR"],
        registry=registry,
        active_sessions=lambda: 0,
        ports_in_use=lambda: 0,
        throttle_wait=lambda: 0.0,
    )
    for reason in (
        "too many failed logins from your address, try later",  # the greeting's
        "address banned",  # PASS's
        "too many connections, try again later",
    ):
        metrics.event(ServerEvent("connection_refused", 1, "192.0.2.1:5", reason=reason))
    assert value(registry, "trio_ftp_refusals_total", reason="ban") == 2
    assert value(registry, "trio_ftp_refusals_total", reason="limit") == 1
