"""Collect samples, take medians and ratios to pyftpdlib, and render the Markdown table
(and the JSON file) the README gets."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.settings import Mode

__all__ = [
    "BASELINE",
    "Metric",
    "Results",
    "metrics",
    "render_json",
    "render_markdown",
    "session_notes",
]

BASELINE = "pyftpdlib"


@dataclass(frozen=True)
class Metric:
    """A table row: its key in the samples, its label, which way is better."""

    key: str
    label: str
    higher_is_better: bool
    ratio: bool = True  # client-side rows describe the client, not the server: no ratio


def _size(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


def metrics(mode: Mode) -> list[Metric]:
    """The rows, in table order, labelled with this mode's sizes."""
    size, top = _size(mode.transfer_size), max(mode.session_levels)
    files = f"{mode.listing_files:,}"
    small = f"{mode.small_files:,}"
    rows = [
        Metric("retr_mbps", f"RETR {size}, fast client, MB/s", True),
        Metric("stor_mbps", f"STOR {size}, MB/s", True),
        Metric("retr_cpu", "server CPU-s per GiB, RETR", False),
        Metric("stor_cpu", "server CPU-s per GiB, STOR", False),
    ]
    rows += [
        Metric(f"sessions_{level}", f"sessions/s, {level} concurrent clients", True)
        for level in mode.session_levels
    ]
    rows += [
        Metric(f"p50_{top}", f"p50 session latency at {top} clients, ms", False),
        Metric(f"p99_{top}", f"p99 session latency at {top} clients, ms", False),
        Metric("idle_kib", "memory per idle logged-in connection, KiB", False),
        Metric("list_ms", f"LIST of a {files}-file directory, ms", False),
        Metric("mlsd_ms", f"MLSD of a {files}-file directory, ms", False),
        Metric("ftps_mbps", f"FTPS RETR {size} (PROT P), MB/s", True),
        Metric("ftps_session_cpu_ms", "FTPS server CPU per session, ms", False),
        Metric("ftps_stor_mbps", f"FTPS STOR {size} (PROT P), MB/s", True),
        Metric("ftps_stor_cpu", "server CPU-s per GiB, FTPS STOR", False),
        Metric("small_download_1", f"mirror {small} files of 4 KiB, download, files/s", True),
        Metric("small_download_4", "the same, 4 parallel sessions, files/s", True),
        Metric("small_upload_1", f"mirror -R {small} files of 4 KiB, upload, files/s", True),
        Metric("small_upload_4", "the same, 4 parallel sessions, files/s", True),
        Metric("ftps_small_upload_1", f"FTPS mirror -R {small} files (PROT P), files/s", True),
        Metric("small_download_1_cpu_ms", "server CPU per file, mirror download, ms", False),
        Metric("small_upload_1_cpu_ms", "server CPU per file, mirror upload, ms", False),
        Metric("ftps_small_upload_1_cpu_ms", "server CPU per file, FTPS mirror upload, ms", False),
        Metric("retr_client_cpu", "client CPU-s per GiB, RETR", False, ratio=False),
        Metric("stor_client_cpu", "client CPU-s per GiB, STOR", False, ratio=False),
        Metric("ftps_stor_client_cpu", "client CPU-s per GiB, FTPS STOR", False, ratio=False),
        Metric("ftps_client_cpu", "client CPU-s per GiB, FTPS RETR", False, ratio=False),
        Metric(
            f"session_client_cores_{top}",
            f"session client CPU at {top} clients, cores",
            False,
            ratio=False,
        ),
        Metric(
            f"session_server_cores_{top}",
            f"server CPU at {top} clients, cores",
            False,
            ratio=False,
        ),
    ]
    return rows


@dataclass
class Results:
    """Every sample of every metric of every server, and what failed or does not apply."""

    servers: list[str]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> server -> why
    unsupported: dict[str, set[str]] = field(default_factory=dict)  # key -> servers

    def add(self, server: str, sample: dict[str, float]) -> None:
        """Record one measurement's values."""
        for key, value in sample.items():
            self.samples.setdefault(key, {}).setdefault(server, []).append(value)

    def fail(self, server: str, keys: tuple[str, ...], why: str) -> None:
        """Record that a measurement of ``keys`` failed (the last reason is kept)."""
        for key in keys:
            self.failures.setdefault(key, {})[server] = why

    def not_applicable(self, server: str, keys: tuple[str, ...]) -> None:
        """Record that ``server`` cannot do this row at all."""
        for key in keys:
            self.unsupported.setdefault(key, set()).add(server)

    def median(self, key: str, server: str) -> float | None:
        """The median of the samples, or None without any."""
        values = self.samples.get(key, {}).get(server)
        return statistics.median(values) if values else None


def session_notes(results: Results, levels: tuple[int, ...]) -> list[str]:
    """A note naming the servers whose concurrent sessions failed or got stuck: those count
    neither in sessions/s nor in the latencies, so the reader must know."""
    parts = []
    for server in results.servers:
        for level in levels:
            lost = [
                results.median(f"session_{kind}_{level}", server) or 0.0
                for kind in ("errors", "unfinished")
            ]
            if any(lost):
                parts.append(
                    f"{server} at {level} clients: {lost[0]:.0f} failed, {lost[1]:.0f} stuck"
                )
    if not parts:
        return []
    return [
        "Sessions lost (median per run; failed, or still running 2 s after the window "
        "closed and abandoned; they count neither in sessions/s nor in the latencies): "
        + "; ".join(parts)
        + "."
    ]


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(results: Results, metric: Metric, server: str) -> str:
    value = results.median(metric.key, server)
    if value is None:
        if server in results.unsupported.get(metric.key, set()):
            return "n/a"
        return "failed" if server in results.failures.get(metric.key, {}) else "—"
    text = _number(value)
    baseline = results.median(metric.key, BASELINE)
    if metric.ratio and server != BASELINE and baseline:
        text += f" ({value / baseline:.2f}×)"  # noqa: RUF001 (the multiplication sign)
    return text


def render_markdown(
    results: Results, rows: list[Metric], headers: dict[str, str], notes: list[str]
) -> str:
    """The table: one column per server (``headers`` maps a server to its column title),
    medians with their ratio to pyftpdlib in parentheses, then the notes."""
    servers = [
        s
        for s in results.servers
        if any(
            s in results.samples.get(m.key, {}) or s in results.failures.get(m.key, {})
            for m in rows
        )
    ]
    lines = [
        "| metric | better | " + " | ".join(headers.get(s, s) for s in servers) + " |",
        "|---|:-:|" + "--:|" * len(servers),
    ]
    for metric in rows:
        if not any(
            server in results.samples.get(metric.key, {})
            or server in results.failures.get(metric.key, {})
            for server in servers
        ):
            continue
        cells = [_cell(results, metric, server) for server in servers]
        arrow = "↑" if metric.higher_is_better else "↓"
        lines.append(f"| {metric.label} | {arrow} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def render_json(
    path: Path, results: Results, rows: list[Metric], mode: Mode, meta: dict[str, Any]
) -> None:
    """Write every sample, median and ratio, with the run's settings and machine."""
    table: dict[str, Any] = {}
    for metric in rows:
        per_server: dict[str, Any] = {}
        baseline = results.median(metric.key, BASELINE)
        for server in results.servers:
            median = results.median(metric.key, server)
            per_server[server] = {
                "median": median,
                "samples": results.samples.get(metric.key, {}).get(server, []),
                "ratio_to_pyftpdlib": median / baseline
                if median is not None and baseline
                else None,
                "failure": results.failures.get(metric.key, {}).get(server),
                "applicable": server not in results.unsupported.get(metric.key, set()),
            }
        table[metric.key] = {
            "label": metric.label,
            "higher_is_better": metric.higher_is_better,
            "servers": per_server,
        }
    extra = {
        key: values
        for key, values in results.samples.items()
        if key not in {metric.key for metric in rows}
    }
    document = {
        "meta": meta,
        "mode": mode.__dict__,
        "servers": results.servers,
        "metrics": table,
        "other_samples": extra,
    }
    path.write_text(json.dumps(document, indent=2, default=list) + "\n")
