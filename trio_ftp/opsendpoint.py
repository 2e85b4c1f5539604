"""The operator's HTTP endpoint (``--metrics-address HOST:PORT``): Prometheus metrics,
health and readiness checks, and the live sessions.

===========================  =============================================================
``GET /metrics``             the Prometheus text format (``prometheus_client``)
``GET /health``              ``200`` when the server speaks FTP: a connection to itself
                             gets the ``220`` greeting and an answer to ``NOOP``
                             (as unFTP's); ``503`` otherwise
``GET /ready``               ``200`` while accepting connections and not closing, else
                             ``503`` (a load balancer's readiness probe)
``GET /sessions``            the live sessions as JSON (:meth:`Server.sessions`)
``POST /sessions/<id>/end``  end one session (``404`` when there is none)
===========================  =============================================================

It runs in its own threads (prometheus_client's WSGI server), so a slow scraper never
touches the event loop; the few calls into the server go through ``trio.from_thread``.
Bind it to a private address: it has no authentication.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import trio

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .server import Server

__all__ = ["OpsEndpoint", "probe_ftp"]

#: Seconds the health check's FTP probe may take in all.
HEALTH_TIMEOUT = 5.0
_END = re.compile(r"/sessions/(\d{1,18})/end")


def probe_ftp(host: str, port: int, timeout: float = HEALTH_TIMEOUT) -> str | None:
    """Speak FTP to ``host:port`` (greeting, ``NOOP``, ``QUIT``); None when it answers
    right, else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            greeting = reader.readline(1024)
            if not greeting.startswith(b"220"):
                return f"greeting {greeting[:40]!r}"
            sock.sendall(b"NOOP\r\n")
            answer = reader.readline(1024)
            if not answer.startswith(b"200"):
                return f"NOOP answered {answer[:40]!r}"
            sock.sendall(b"QUIT\r\n")
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


class OpsEndpoint:
    """The endpoint of one server; :meth:`start` in the server's trio thread (it needs the
    trio token), :meth:`stop` to end it."""

    def __init__(self, server: Server, host: str, port: int) -> None:
        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        metrics = server.enable_metrics()
        self.server = server
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._token = trio.lowlevel.current_trio_token()

        class _QuietHandler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Scrapes are not worth a line each."""

        self._http = make_server(
            host, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.address: tuple[str, int] = self._http.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="trio_ftp-ops", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # the WSGI application --------------------------------------------------------------------
    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics" and method == "GET":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/health" and method == "GET":
            return self._health(start_response)
        if path == "/ready" and method == "GET":
            ready = bool(self.server.runtime.listeners) and not self.server.closing
            return _text(start_response, 200 if ready else 503, "ready" if ready else "not ready")
        if path == "/sessions" and method == "GET":
            sessions = self._in_trio(self.server.sessions)
            body = json.dumps([dataclasses.asdict(info) for info in sessions])
            return _reply(start_response, 200, body.encode(), "application/json")
        found = _END.fullmatch(path)
        if found is not None and method == "POST":
            ended = self._in_trio(lambda: self.server.end_session(int(found.group(1))))
            return _text(
                start_response, 200 if ended else 404, "ended" if ended else "no such session"
            )
        return _text(start_response, 404, "not found")

    def _in_trio(self, call: Callable[[], Any]) -> Any:
        return trio.from_thread.run_sync(call, trio_token=self._token)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        if not self.server.runtime.listeners or self.server.closing:
            return _text(start_response, 503, "FTP check failed: not listening")
        host, port = self.server.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        problem = probe_ftp(host, port)
        if problem is None:
            return _text(start_response, 200, "ok")
        return _text(start_response, 503, f"FTP check failed: {problem}")


def _reply(
    start_response: StartResponse, status: int, body: bytes, content_type: str
) -> list[bytes]:
    reasons = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}
    start_response(
        f"{status} {reasons[status]}",
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [body]


def _text(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    return _reply(start_response, status, text.encode() + b"\n", "text/plain; charset=utf-8")
