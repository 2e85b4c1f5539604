"""Prometheus metrics of a server, through ``prometheus_client``
(``pip install 'trio_ftp[metrics]'``).

``metrics = server.enable_metrics()`` (or ``enable_metrics(registry=my_registry)`` to mount
them in an application's own registry) counts from then on:

===========================================  ============================================
``trio_ftp_sessions_active``                  control connections being served
``trio_ftp_sessions_total``                   sessions started
``trio_ftp_logins_total{outcome}``            ``success`` / ``failure``
``trio_ftp_commands_total{verb}``             commands by verb (unknown verbs: ``other``)
``trio_ftp_replies_total{class}``             replies by class: ``1xx`` ... ``5xx``
``trio_ftp_transfers_total{direction,outcome}``  transfers ended (see ``TransferOutcome``)
``trio_ftp_transfer_bytes_total{direction}``  bytes moved by transfers, however they ended
``trio_ftp_transfer_duration_seconds{direction}``  histogram of transfer durations
``trio_ftp_data_ports_in_use``                passive ports held now
``trio_ftp_data_ports_exhausted_total``       PASV/EPSV refused for want of a free port
``trio_ftp_throttle_wait_seconds_total``      time transfers waited for a speed limit
``trio_ftp_refusals_total{reason}``           connections refused: ``limit`` / ``ban``
``trio_ftp_tls_handshakes_total{channel,result}``  ``control``/``data``, ``ok``/``failed``
===========================================  ============================================

Every hook is a counter increment; labels come from fixed sets (a client cannot grow the
number of series with made-up verbs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from .events import ServerEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Metrics"]

_REPLY_CLASSES = frozenset("12345")
_DIRECTIONS = frozenset({"download", "upload", "listing"})
#: Transfer durations the histogram tells apart, in seconds.
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, float("inf"))


class Metrics:
    """The metrics of one server; the server feeds them (see the module docstring).

    Args:
        verbs: the verbs counted by name (the server's commands).
        registry: where the metrics are registered (prometheus_client's default registry
            when None).
        active_sessions, ports_in_use, throttle_wait: read at each scrape.
    """

    def __init__(
        self,
        verbs: Iterable[str],
        *,
        registry: CollectorRegistry | None = None,
        active_sessions: Callable[[], int],
        ports_in_use: Callable[[], int],
        throttle_wait: Callable[[], float],
    ) -> None:
        try:
            import prometheus_client as prom
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError:
            raise ImportError(
                "metrics need prometheus_client: pip install 'trio_ftp[metrics]'"
            ) from None
        if registry is None:
            registry = prom.REGISTRY
        self.registry = registry
        self._verbs = frozenset(verb.upper() for verb in verbs)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> prom.Counter:
            return prom.Counter(name, doc, labels, registry=registry)

        self.sessions = counter("trio_ftp_sessions", "Sessions started.")
        self.logins = counter("trio_ftp_logins", "Logins by outcome.", ("outcome",))
        self.commands = counter("trio_ftp_commands", "Commands by verb.", ("verb",))
        self.replies = counter("trio_ftp_replies", "Replies by class.", ("class",))
        self.transfers = counter("trio_ftp_transfers", "Transfers ended.", ("direction", "outcome"))
        self.transfer_bytes = counter(
            "trio_ftp_transfer_bytes", "Bytes moved by transfers.", ("direction",)
        )
        self.transfer_duration = prom.Histogram(
            "trio_ftp_transfer_duration_seconds",
            "Durations of transfers.",
            ("direction",),
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.ports_exhausted = counter(
            "trio_ftp_data_ports_exhausted", "PASV/EPSV refused: no free data port."
        )
        self.refusals = counter(
            "trio_ftp_refusals", "Connections refused by a limit or a ban.", ("reason",)
        )
        self.tls_handshakes = counter(
            "trio_ftp_tls_handshakes", "TLS handshakes.", ("channel", "result")
        )
        for outcome in ("success", "failure"):
            self.logins.labels(outcome)

        class _Live:
            """Values read from the server at each scrape."""

            def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
                yield GaugeMetricFamily(
                    "trio_ftp_sessions_active", "Sessions being served.", value=active_sessions()
                )
                yield GaugeMetricFamily(
                    "trio_ftp_data_ports_in_use", "Passive ports held.", value=ports_in_use()
                )
                yield CounterMetricFamily(
                    "trio_ftp_throttle_wait_seconds",
                    "Time transfers waited for a speed limit.",
                    value=throttle_wait(),
                )

        registry.register(_Live())  # type: ignore[arg-type,unused-ignore]

    # hooks -----------------------------------------------------------------------------------
    def event(self, event: ServerEvent) -> None:
        """Count what an audit event says."""
        kind = event.kind
        if kind == "connect":
            self.sessions.inc()
        elif kind == "login":
            self.logins.labels("success").inc()
        elif kind == "login_failed":
            self.logins.labels("failure").inc()
        elif kind in ("transfer_finished", "transfer_aborted"):
            direction = event.direction if event.direction in _DIRECTIONS else "listing"
            self.transfers.labels(direction, event.outcome or "failed").inc()
            self.transfer_bytes.labels(direction).inc(event.bytes or 0)
            self.transfer_duration.labels(direction).observe(event.seconds or 0.0)
        elif kind == "passive_ports_exhausted":
            self.ports_exhausted.inc()
        elif kind == "connection_refused":
            reason = event.reason or ""
            banned = "banned" in reason or "failed logins" in reason
            self.refusals.labels("ban" if banned else "limit").inc()

    def command(self, verb: str) -> None:
        """Count a command (verbs the server does not know count as ``other``)."""
        self.commands.labels(verb if verb in self._verbs else "other").inc()

    def reply(self, code: str) -> None:
        """Count a reply by its class."""
        first = code[:1]
        self.replies.labels(f"{first}xx" if first in _REPLY_CLASSES else "other").inc()

    def tls_handshake(self, channel: str, ok: bool) -> None:
        """Count a TLS handshake on the ``control`` or ``data`` connection."""
        self.tls_handshakes.labels(channel, "ok" if ok else "failed").inc()
