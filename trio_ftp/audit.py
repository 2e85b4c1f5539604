"""The audit trail: one record for each thing an operator must be able to find afterwards.

Every transfer that ends (whatever ended it), every file operation, every refusal and every
login is one :class:`~trio_ftp.events.ServerEvent`. :meth:`Audit.record` writes it to the
``trio_ftp.audit`` logger (one line, ``key=value`` fields, client strings escaped and
quoted), to the transfer log in xferlog format when one is open, and the server publishes it
to ``server.events()``: one call, so the three never disagree.

Failed logins are WARNING lines of a fixed shape that fail2ban reads (the filter ships as
``trio_ftp/fail2ban/trio-ftp.conf``)::

    2026-12-05 01:02:03,456 WARNING trio_ftp.audit: [7 203.0.113.9:50122] login_failed
    user="bob" failures=1

(one line in the log).

The client's address is in the session's ``[id host:port]`` prefix, which the server writes;
what a client chooses (a login, a file name) only ever follows the event name, quoted with
its quotes and control characters escaped, so no crafted name can look like the prefix.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TextIO

from .events import ServerEvent
from .logsafe import printable

__all__ = ["AUDIT_LOGGER", "Audit", "audit_fields", "audit_line", "quoted", "xferlog_line"]

#: The logger every audit record goes to.
AUDIT_LOGGER = logging.getLogger("trio_ftp.audit")

#: Kinds an operator (or fail2ban) acts on: WARNING; every other kind is INFO.
WARNING_KINDS = frozenset({"login_failed"})
#: Kinds the session's own lines already tell (written to the event stream only).
QUIET_KINDS = frozenset({"connect", "transfer_started"})
#: The order of the fields in a line (those not set are left out).
_FIELD_ORDER = (
    "outcome",
    "direction",
    "user",
    "path",
    "target",
    "offset",
    "bytes",
    "seconds",
    "mode",
    "reason",
    "failures",
)


def quoted(value: str) -> str:
    """``value`` in double quotes, with backslashes, quotes and every character that is not
    printable escaped: one line, and nothing in it can end the quoted field."""
    return '"' + printable(value).replace('"', '\\"') + '"'


def audit_fields(event: ServerEvent) -> dict[str, str | int | float]:
    """The fields of ``event`` a record shows, in :data:`_FIELD_ORDER` (None left out)."""
    found: dict[str, str | int | float] = {}
    for name in _FIELD_ORDER:
        value = getattr(event, name)
        if value is not None:
            found[name] = value
    return found


def audit_line(event: ServerEvent) -> str:
    """The text of a record, after the session prefix: ``kind key=value ...``."""
    parts: list[str] = [event.kind]
    for name, value in audit_fields(event).items():
        if isinstance(value, str) and name not in ("outcome", "direction"):
            parts.append(f"{name}={quoted(value)}")
        elif isinstance(value, float):
            parts.append(f"{name}={value:.3f}")
        elif name == "mode" and isinstance(value, int):
            parts.append(f"{name}={value:04o}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def xferlog_line(event: ServerEvent, host: str, now: float | None = None) -> str:
    """``event`` (a transfer's end) in the xferlog format of wu-ftpd, ProFTPD and vsftpd::

        Thu Dec  5 01:02:03 2026 1 203.0.113.9 5 /a_b.txt b _ o r alice ftp 0 * c

    current time, seconds (at least 1), client, bytes, file name (whitespace as ``_``,
    escaped), type (``b``; trio_ftp does not record ``a``), no special action, direction
    (``o`` out, ``i`` in), access mode (``a`` anonymous, ``r`` real), user, service,
    authentication method (``0``), authenticated user id (``*``), completion (``c``
    complete, ``i`` incomplete).
    """
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now or event.time))
    stamp = stamp[:8] + stamp[8:10].replace("0", " ", 1) + stamp[10:]  # "Dec  5", as ctime
    seconds = max(1, math.ceil(event.seconds or 0))
    name = "".join("_" if char.isspace() else char for char in printable(event.path or "-"))
    direction = "o" if event.direction == "download" else "i"
    anonymous = event.user in (None, "", "anonymous")
    user = "anonymous" if anonymous else printable(event.user or "").replace(" ", "_")
    status = "c" if event.outcome == "complete" else "i"
    mode = "a" if anonymous else "r"
    return (
        f"{stamp} {seconds} {host} {event.bytes or 0} {name} b _ {direction} {mode} {user} "
        f"ftp 0 * {status}"
    )


class Audit:
    """Where records go: the audit logger, and a transfer log (xferlog) when given."""

    def __init__(self, xferlog: TextIO | None = None) -> None:
        self.xferlog = xferlog

    def record(self, prefix: str, host: str, event: ServerEvent) -> None:
        """Write ``event`` (of the session whose log prefix is ``prefix``)."""
        if event.kind in QUIET_KINDS:
            return
        level = logging.WARNING if event.kind in WARNING_KINDS else logging.INFO
        if AUDIT_LOGGER.isEnabledFor(level):
            AUDIT_LOGGER.log(level, "%s%s", prefix, audit_line(event), extra={"ftp_event": event})
        if (
            self.xferlog is not None
            and event.kind in ("transfer_finished", "transfer_aborted")
            and event.direction in ("download", "upload")
        ):
            self.xferlog.write(xferlog_line(event, host) + "\n")
            self.xferlog.flush()

    def close(self) -> None:
        """Close the transfer log."""
        if self.xferlog is not None:
            self.xferlog.close()
            self.xferlog = None


def event_fields(event: ServerEvent) -> Mapping[str, object]:
    """Every field of ``event`` (for structured logs)."""
    return {
        "event": event.kind,
        "session": event.session,
        "client": event.peer,
        **audit_fields(event),
    }
